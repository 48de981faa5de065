"""`fa-sync profile show NAME`: one profile as labelled lines that read well at 80 columns.

Reading (`gather_profile`) is apart from drawing (`render_profile`, pure, takes `now`), as on
the status screen. Secrets are never read: the client and the Magento connection appear by
name only, and settings keys that look secret (daemon/logs.py's rule) are shown redacted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import Profile
from daemon.describe import ago, describe_cron, span, until
from daemon.errors import ConfigError
from daemon.logs import scrub
from daemon.screens import COUNT_LABELS, ENTITY_ORDER, counts_text, next_fires

#: Fire times listed, and runs.
FIRES_SHOWN = 5
RUNS_SHOWN = 5
_RUN_STYLE = {"complete": "green", "warning": "yellow", "error": "red", "interrupted": "yellow"}


@dataclass(frozen=True)
class ProfileDetail:
    """Everything `profile show` draws for one profile."""

    profile: Profile
    client: str | None  #: FreeAgent client name
    magento: str | None  #: Magento connection name
    queue: Mapping[str, int] = field(default_factory=dict)  #: ledger rows by status
    runs: Sequence[Mapping[str, Any]] = ()  #: run_history rows, newest first


async def gather_profile(pool: asyncpg.Pool, name: str) -> ProfileDetail:
    """Read one profile, its names, queue and last runs; ConfigError if there is none."""
    async with translated(f"profile {name}"):
        row = await pool.fetchrow(QUERIES["profile_get_by_name"], name)
        if row is None:
            raise ConfigError(f"profile {name!r} does not exist (fa-sync profile list)")
        profile = Profile.from_row(row)
        (named,) = await pool.fetch(QUERIES["profile_list_named"], [name])
        counts = await pool.fetch(QUERIES["entity_counts"], profile.id)
        runs = await pool.fetch(QUERIES["run_history"], profile.id, RUNS_SHOWN)
    return ProfileDetail(
        profile=profile,
        client=named["client_name"],
        magento=named["magento_name"],
        queue={r["status"]: r["n"] for r in counts},
        runs=[dict(r) for r in runs],
    )


def render_profile(
    detail: ProfileDetail, now: datetime, *, checked: str | None = None
) -> RenderableType:
    """A title line, then label / value lines; long values fold under their label.
    checked: what the settings were checked against (`profile show` prints the warnings)."""
    p = detail.profile
    title = Text.assemble(
        (p.name, "bold"),
        "  ",
        ("enabled", "green") if p.enabled else ("disabled", "yellow"),
        f"  {p.type}",
    )
    grid = _Grid()
    if p.config_error:
        grid.add_row("problem", Text(p.config_error, style="red"))
    grid.add_row("schedule", f"{describe_cron(p.schedule)} ({p.schedule}, {p.timezone})")
    for label, line in _labelled("next", _fires(p, now)):
        grid.add_row(label, line)
    grid.add_row("FreeAgent", detail.client or Text("none (profile set --client)", "red"))
    grid.add_row("Magento", detail.magento or Text("none (profile set --magento)", "red"))
    grid.add_row("export", f"{p.api_behaviour}, batches of {p.batch_size}")
    grid.add_row("collect", f"{p.collect_mode}, pages of {p.collection_size}")
    retry = f"up to {p.retry_max_attempts} attempts" if p.retry_enabled else "off"
    grid.add_row("retry", f"{retry}; history {'kept' if p.history_enabled else 'last run only'}")
    for label, line in _labelled("settings", settings_lines(p.settings) or ["(defaults)"]):
        grid.add_row(label, line)
    if checked:
        grid.add_row("checked", Text(checked, style="dim"))
    grid.add_row("queue", counts_text(detail.queue, ENTITY_ORDER) or "empty")
    for label, text in _labelled("runs", [_run(r, now) for r in detail.runs] or ["never run"]):
        grid.add_row(label, text)
    return Group(title, grid.table)


class _Grid:
    """Label / value lines; values are plain text, never rich markup (names and settings
    are free text: `[bold]` in one must print as written)."""

    def __init__(self) -> None:
        self.table = Table.grid(padding=(0, 1))
        self.table.add_column(width=10, style="dim")
        self.table.add_column(overflow="fold")

    def add_row(self, label: str, value: str | Text) -> None:
        self.table.add_row(label, Text(value) if isinstance(value, str) else value)


def _labelled(label: str, lines: Sequence[str | Text]) -> Iterator[tuple[str, str | Text]]:
    """The label on the first line only."""
    for n, line in enumerate(lines):
        yield (label if n == 0 else "", line)


def _fires(p: Profile, now: datetime) -> list[str | Text]:
    if p.config_error:
        return [Text("none while the problem above stands", style="red")]
    try:
        fires = next_fires(p.schedule, p.timezone, now, FIRES_SHOWN)
    except ConfigError as exc:
        return [Text(str(exc), style="red")]
    lines: list[str | Text] = [f"{f:%a %d %b %Y %H:%M %Z} ({until(f, now)})" for f in fires]
    if not p.enabled:
        lines.insert(0, Text("not scheduled while disabled; would fire:", style="yellow"))
    return lines


def settings_lines(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`contact.default_payment_terms_in_days = 30`, one line per leaf, secrets redacted."""
    lines = []
    for key, value in sorted(scrub(dict(settings)).items()):
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            lines += settings_lines(value, f"{path}.")
        else:
            lines.append(f"{path} = {_value(value)}")
    return lines


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{}"
    return str(value)


def _run(run: Mapping[str, Any], now: datetime) -> Text:
    """`#12 complete 12m ago (1m): 60 seen, 58 new - error`"""
    status = str(run["status"])
    text = Text.assemble(f"#{run['id']} ", (status, _RUN_STYLE.get(status, "")))
    text.append(f" {ago(run['started_at'] or run['scheduled_for'], now)}")
    if run["started_at"] and run["finished_at"]:
        text.append(f" ({span((run['finished_at'] - run['started_at']).total_seconds())})")
    counts = counts_text(run, COUNT_LABELS)
    if counts:
        text.append(f": {counts}")
    if run["error_summary"]:
        text.append(f" - {run['error_summary']}", "red" if status == "error" else "")
    return text
