"""What is worth an alert: pure functions from a finished run (or a refused token) to
conditions. No I/O here; the dispatcher raises what these return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from daemon.context import RunCounts


class Kind(StrEnum):
    """Matches the CHECK on alert.kind."""

    RUN_ERROR = "run_error"
    FAILURE_RATE = "failure_rate"
    REAUTH_NEEDED = "reauth_needed"
    DEAD_LETTER = "dead_letter"


class Severity(StrEnum):
    CRITICAL = "critical"  #: sent at once
    WARNING = "warning"  #: batched into the summary


SEVERITY = {
    Kind.RUN_ERROR: Severity.CRITICAL,
    Kind.REAUTH_NEEDED: Severity.CRITICAL,
    Kind.FAILURE_RATE: Severity.WARNING,
    Kind.DEAD_LETTER: Severity.WARNING,
}

#: A quiet period that never ends by itself: the key changes when the condition clears.
UNTIL_CLEARED = None


@dataclass(frozen=True)
class Condition:
    """One thing to tell, before deduplication."""

    kind: Kind
    #: Condition and subject: repeats of the same key within the quiet period are merged.
    dedup_key: str
    title: str
    profile: str | None = None
    client: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Records concerned (failed, dead-lettered); summed when repeats merge.
    records: int = 0
    #: False: quiet until the condition clears (its key changes), not for an interval.
    expires: bool = True

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    def quiet_until(self, now: datetime, interval: timedelta) -> datetime:
        return now + interval if self.expires else datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Thresholds:
    """When a run's failures are worth a warning."""

    #: Failed (or retrying) records / records handled, at or above which to warn.
    failure_share: float = 0.2
    #: Fewer records handled than this never warn (1 of 1 is no trend).
    min_records: int = 10


@dataclass(frozen=True)
class FinishedRun:
    """What the runner knows when a run ends."""

    profile_id: int
    profile: str
    run_id: int
    status: str
    error: str | None
    counts: RunCounts


@dataclass(frozen=True)
class DeadLetters:
    """Rows the run moved to failed: permanently rejected, or out of retry attempts."""

    count: int = 0
    exhausted: int = 0  #: of which used up retry_max_attempts
    sample: tuple[dict[str, Any], ...] = ()


def handled(counts: RunCounts) -> int:
    """Records the run did something with (collected-only rows are not counted)."""
    c = counts
    return c.created + c.updated + c.linked + c.unchanged + c.skipped + c.failed + c.retrying


def run_conditions(run: FinishedRun, dead: DeadLetters, thresholds: Thresholds) -> list[Condition]:
    """The conditions a finished run raises: error, failure share, dead letters."""
    out: list[Condition] = []
    where = f"profile:{run.profile_id}"
    if run.status == "error":
        out.append(Condition(
            Kind.RUN_ERROR, f"{Kind.RUN_ERROR}:{where}",
            f"profile {run.profile}: run {run.run_id} ended in error",
            profile=run.profile, details={"run_id": run.run_id, "error": run.error or "unknown"},
        ))  # fmt: skip
    total, failed = handled(run.counts), run.counts.failed + run.counts.retrying
    if total >= thresholds.min_records and failed / total >= thresholds.failure_share:
        out.append(Condition(
            Kind.FAILURE_RATE, f"{Kind.FAILURE_RATE}:{where}",
            f"profile {run.profile}: {failed} of {total} records failed "
            f"({failed / total:.0%}) in run {run.run_id}",
            profile=run.profile, records=failed,
            details={"run_id": run.run_id, "failed": run.counts.failed,
                     "retrying": run.counts.retrying, "handled": total,
                     "share": round(failed / total, 4),
                     "threshold": thresholds.failure_share},
        ))  # fmt: skip
    if dead.count:
        out.append(Condition(
            Kind.DEAD_LETTER, f"{Kind.DEAD_LETTER}:{where}",
            f"profile {run.profile}: {dead.count} record(s) reached the dead letter "
            f"(status failed; `fa-sync queue list --status failed`)",
            profile=run.profile, records=dead.count,
            details={"run_id": run.run_id, "exhausted_attempts": dead.exhausted,
                     "rejected": dead.count - dead.exhausted, "sample": list(dead.sample)},
        ))  # fmt: skip
    return out


def reauth_condition(
    *, dedup_key: str, client: str, reason: str, refused_at: datetime, profiles: list[str]
) -> Condition:
    """FreeAgent refused the client's refresh token: once per token pair, until it clears."""
    return Condition(
        Kind.REAUTH_NEEDED, dedup_key,
        f"FreeAgent client {client}: re-authorisation needed "
        f"(`fa-sync client authorize {client}`)",
        client=client, expires=False,
        details={"reason": reason, "refused_at": refused_at.isoformat(), "profiles": profiles},
    )  # fmt: skip


class RunAlerts(Protocol):
    """What the runner tells when a run ends (the dispatcher; None when alerts are off)."""

    async def run_finished(
        self, run: FinishedRun, *, retry_max_attempts: int, now: datetime
    ) -> None: ...
