"""Drift: a FreeAgent contact edited in FreeAgent since fa-sync last wrote it.

Every write records what was sent and when (`metadata.written = {at, fields}`). Before an
update, the contact as the index last saw it (refreshed at the start of each export, so edits
made in FreeAgent since are in it) is compared with that record:

    FreeAgent's updated_at not after our write (+ CLOCK_SLACK) .... no drift: only we wrote it
    a field we manage that FreeAgent now holds differently ........ drift on that field
    (empty and absent are the same: FreeAgent omits empty fields; case and spacing are not
    differences, so FreeAgent tidying a value is not an edit)

`on_drift` then decides (`decide_drift`, pure; the dry run uses it too):

    overwrite (default) ... PUT as today; FreeAgent's edits are replaced
    keep .................. PUT only the fields that did not drift; the drifted ones stay
                            FreeAgent's from then on (`metadata.kept_fields`) until a run
                            with overwrite; nothing left to send: no PUT
    review ................ no PUT; the row waits as `needs_review` until a person runs
                            `fa-sync queue resolve ROW --overwrite|--keep`

Drift is counted on the run (`drifted`) and noted on the row (`metadata.drift`: each field with
FreeAgent's value and ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from daemon.db.records import ContactEntity
from profiles.freeagent_contact_export.config import DriftPolicy
from profiles.freeagent_contact_export.resolve import parse_fa_time

#: FreeAgent's clock against ours: an updated_at this close after our write is our write.
CLOCK_SLACK = timedelta(minutes=2)


def written_record(now: datetime, fields: dict[str, Any]) -> dict[str, Any]:
    """What a write leaves on the row for the next drift check."""
    return {"at": now.isoformat(), "fields": dict(fields)}


def _both_empty(theirs: Any, ours: Any) -> bool:
    """Empty and absent are the same: FreeAgent omits empty fields."""
    return theirs in (None, "") and ours in (None, "")


def _same(theirs: Any, ours: Any) -> bool:
    if _both_empty(theirs, ours):
        return True
    if isinstance(theirs, str) and isinstance(ours, str):
        return " ".join(theirs.split()).casefold() == " ".join(ours.split()).casefold()
    return bool(theirs == ours)


def holds_exactly(theirs: dict[str, Any] | None, body: dict[str, Any]) -> bool:
    """Whether the contact as indexed already holds every field of `body`, value for value
    (empty and absent alike: FreeAgent omits empty fields). Exact, unlike drift's `_same`: a
    contact that differs in case or spacing alone is still sent ours. Linking the contacts a
    shop already has (moving from another connector, a second profile of the same shop)
    then costs no write for those that match, where each was a PUT of the same values."""
    if theirs is None:
        return False
    for key, ours in body.items():
        held = theirs.get(key)
        if _both_empty(held, ours):
            continue
        if type(held) is not type(ours) or held != ours:
            return False
    return True


@dataclass(frozen=True)
class Drift:
    """Fields FreeAgent holds differently from what fa-sync last wrote."""

    #: field -> (FreeAgent's value, the value fa-sync wrote)
    fields: dict[str, tuple[Any, Any]]
    freeagent_updated_at: datetime | None = None

    def message(self, source_key: str, policy: str) -> str:
        """The run's note about this drift."""
        names = ", ".join(sorted(self.fields))
        return f"{source_key}: edited in FreeAgent since fa-sync wrote it ({names}): {policy}"

    def as_json(self, policy: str, now: datetime) -> dict[str, Any]:
        """metadata.drift: what drifted, both values, and what the policy did."""
        return {
            "at": now.isoformat(),
            "policy": policy,
            "freeagent_updated_at": (
                self.freeagent_updated_at.isoformat() if self.freeagent_updated_at else None
            ),
            "fields": {k: {"freeagent": t, "ours": o} for k, (t, o) in sorted(self.fields.items())},
        }


def detect_drift(
    written: Any, contact: dict[str, Any] | None, *, slack: timedelta = CLOCK_SLACK
) -> Drift | None:
    """Drift between our last write and the contact as FreeAgent now has it; None when there
    is none or it cannot be told (no record of our write, contact not indexed)."""
    if not isinstance(written, dict) or not isinstance(contact, dict):
        return None
    fields = written.get("fields")
    at = parse_fa_time(written.get("at"))
    if not isinstance(fields, dict):
        return None
    updated = parse_fa_time(contact.get("updated_at"))
    if updated is not None and at is not None and updated <= at + slack:
        return None
    changed = {
        name: (contact.get(name), ours)
        for name, ours in fields.items()
        if not _same(contact.get(name), ours)
    }
    return Drift(changed, updated) if changed else None


@dataclass(frozen=True)
class DriftDecision:
    """What an update sends once drift is known."""

    action: Literal["send", "skip", "review"]  #: skip: nothing left to send
    body: dict[str, Any]  #: the PUT body (send only)
    kept: list[str] = field(default_factory=list)  #: fields left as FreeAgent has them
    #: our record of the contact after this write: sent values, FreeAgent's for kept fields
    written: dict[str, Any] = field(default_factory=dict)


def decide_drift(
    policy: DriftPolicy,
    drift: Drift | None,
    body: dict[str, Any],
    *,
    kept_before: list[str] | None = None,
    previous: dict[str, Any] | None = None,
) -> DriftDecision:
    """Apply on_drift to an update body. `kept_before`: fields an earlier keep left to
    FreeAgent; `previous`: the values recorded at our last write (FreeAgent's for kept ones)."""
    drifted = drift.fields if drift else {}
    if policy == "overwrite":
        return DriftDecision("send", body, [], dict(body))
    if policy == "review" and drifted:
        return DriftDecision("review", {}, sorted(kept_before or []), dict(previous or {}))
    kept = sorted(set(kept_before or ()) | set(drifted)) if policy == "keep" else []
    if policy == "review":
        kept = sorted(kept_before or [])
    send = {k: v for k, v in body.items() if k not in kept}
    record = {**send}
    for name in kept:
        if name in drifted:
            record[name] = drifted[name][0]
        elif previous and name in previous:
            record[name] = previous[name]
    return DriftDecision("send" if send else "skip", send, kept, record)


async def check_drift(
    index: Any,
    configured: DriftPolicy,
    row: ContactEntity,
    url: str,
    body: dict[str, Any],
    *,
    linked_now: bool = False,
) -> tuple[DriftPolicy, Drift | None, DriftDecision]:
    """The policy in force for this row (a person's review decision wins once), the drift
    against the indexed contact, and the decision for this update body. A contact linked
    just now was never written by us: there is nothing to drift from, and nothing to send
    when FreeAgent already holds exactly what we would (`holds_exactly`)."""
    if linked_now:
        if holds_exactly(await index.contact(url), body):
            return configured, None, DriftDecision("skip", {}, [], dict(body))
        return configured, None, DriftDecision("send", body, [], dict(body))
    meta = row.metadata
    resolution = meta.get("drift_resolution")
    policy: DriftPolicy = resolution if resolution in ("overwrite", "keep") else configured
    written = meta.get("written")
    drift = detect_drift(written, await index.contact(url))
    decision = decide_drift(
        policy, drift, body, kept_before=meta.get("kept_fields"),
        previous=written.get("fields") if isinstance(written, dict) else None,
    )  # fmt: skip
    return policy, drift, decision
