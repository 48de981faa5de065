"""Operator screens: `fa-sync status`, and the 80-column `history` and `profile list`.

Reading (`gather_status`) is apart from drawing (`render_status`, `history_table`,
`profile_table`): the drawing functions are pure, take `now`, and return rich renderables
that fit 80 columns. Tokens are never read: only whether they exist and when they expire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.clients.ratelimit import egress_key, provisional_key, user_key
from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import client_rate_limits
from daemon.describe import ago, describe_cron, span, until
from daemon.errors import ConfigError
from daemon.firetimes import fire_times
from daemon.scheduler import parse_cron

#: Run and ledger counts, in the order screens show them, with their short labels.
COUNT_LABELS = {
    "collected": "seen",
    "created": "new",
    "updated": "upd",
    "linked": "linked",
    "unchanged": "same",
    "skipped": "skip",
    "failed": "fail",
    "retrying": "retry",
    "removed": "gone",
    "drifted": "drift",
    "needs_review": "review",
}
_STATUS_STYLE = {
    "complete": "green",
    "warning": "yellow",
    "error": "red",
    "interrupted": "yellow",
    "running": "cyan",
    "skipped": "dim",
}


@dataclass(frozen=True)
class ClientStatus:
    """What `status` says of one FreeAgent client: tokens' expiry and the rate budget."""

    name: str
    authorised: bool
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    reauth_reason: str | None  #: set when FreeAgent refused the current refresh token
    per_minute: int  #: the budget's limits: X-RateLimit-Test lowers the configured ones
    per_hour: int
    used_minute: int = 0
    used_hour: int = 0
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class EgressStatus:
    """The budget every FreeAgent user sending from this address shares (settings
    rate_egress_*): FreeAgent's per-address limit, minute window only."""

    name: str  #: FA_SYNC_RATE_EGRESS_KEY
    per_minute: int  #: FA_SYNC_RATE_EGRESS_PER_MINUTE
    used_minute: int = 0
    blocked_until: datetime | None = None


async def gather_egress(
    pool: asyncpg.Pool, now: datetime, name: str, per_minute: int
) -> EgressStatus | None:
    """The egress budget's use in the last minute, None when it is off (per_minute 0)."""
    if per_minute <= 0:
        return None
    async with translated("status"):
        row = await pool.fetchrow(QUERIES["egress_used"], egress_key(name), now)
    return EgressStatus(
        name=name,
        per_minute=per_minute,
        used_minute=row["last_minute"] if row else 0,
        blocked_until=row["blocked_until"] if row else None,
    )


@dataclass(frozen=True)
class ProfileStatus:
    """One profile's block on the status screen."""

    name: str
    enabled: bool
    schedule: str
    timezone: str
    config_error: str | None
    client: ClientStatus | None
    magento: str | None
    last_run: Mapping[str, Any] | None  #: status_last_runs row, None before the first run
    breaker_open_until: datetime | None
    queue: Mapping[str, int] = field(default_factory=dict)


async def gather_status(pool: asyncpg.Pool, now: datetime) -> list[ProfileStatus]:
    """Everything `status` shows, read in one pass of five queries."""
    async with translated("status"):
        profiles = await pool.fetch(QUERIES["profile_list_named"], None)
        runs = {r["profile_id"]: r for r in await pool.fetch(QUERIES["status_last_runs"])}
        depth = await pool.fetch(QUERIES["metrics_queue_depth"])
        client_rows = await pool.fetch(QUERIES["status_clients"])
        keys = [_budget_key(c) for c in client_rows]
        used = {r["budget_key"]: r for r in await pool.fetch(QUERIES["rate_used"], keys, now)}
    clients = {c["id"]: _client_status(c, used.get(_budget_key(c))) for c in client_rows}
    queues: dict[str, dict[str, int]] = {}
    for row in depth:
        queues.setdefault(row["profile"], {})[row["status"]] = row["n"]
    result = []
    for p in profiles:
        run = runs.get(p["id"])
        result.append(
            ProfileStatus(
                name=p["name"],
                enabled=p["enabled"],
                schedule=p["schedule"],
                timezone=p["timezone"],
                config_error=p["config_error"],
                client=clients.get(p["client_id"]),
                magento=p["magento_name"],
                last_run=dict(run) if run is not None and run["run_id"] is not None else None,
                breaker_open_until=run["breaker_open_until"] if run is not None else None,
                queue=queues.get(p["name"], {}),
            )
        )
    return result


def _budget_key(row: Mapping[str, Any]) -> str:
    """The key FreeAgentClientRow.budget_key gives the same row."""
    return user_key(row["user_url"]) if row["user_url"] else provisional_key(row["id"])


def _client_status(row: Mapping[str, Any], used: Mapping[str, Any] | None) -> ClientStatus:
    per_minute, per_hour = client_rate_limits(
        row["rate_limit_per_minute"], row["rate_limit_per_hour"], row["rate_limit_test"]
    )
    return ClientStatus(
        name=row["name"],
        authorised=row["authorised"],
        access_expires_at=row["access_token_expires_at"],
        refresh_expires_at=row["refresh_token_expires_at"],
        reauth_reason=row["reauth_reason"],
        per_minute=per_minute,
        per_hour=per_hour,
        used_minute=used["last_minute"] if used else 0,
        used_hour=used["last_hour"] if used else 0,
        blocked_until=used["blocked_until"] if used else None,
    )


# ------------------------------------------------------------------------------- status


def render_status(
    profiles: Sequence[ProfileStatus], now: datetime, egress: EgressStatus | None = None
) -> RenderableType:
    """The status screen: a header line (and the address's egress budget, when there is
    one), then one block of labelled lines per profile."""
    header = Text.assemble(
        ("fa-sync status", "bold"),
        f"  {now:%Y-%m-%d %H:%M} UTC  ",
        f"{len(profiles)} profile{'' if len(profiles) == 1 else 's'}",
    )
    heading: list[RenderableType] = [header]
    if egress is not None:
        heading.append(_egress(egress, now))
    if not profiles:
        return Group(*heading, Text("no profiles yet: fa-sync profile create --help"))
    blocks: list[RenderableType] = heading
    for p in profiles:
        blocks += [Text(""), _profile_block(p, now)]
    return Group(*blocks)


def _profile_block(p: ProfileStatus, now: datetime) -> RenderableType:
    title = Text.assemble(
        (p.name, "bold"),
        "  ",
        ("enabled", "green") if p.enabled else ("disabled", "yellow"),
        f"  FreeAgent {p.client.name if p.client else '-'}, Magento {p.magento or '-'}",
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=9, style="dim")
    grid.add_column(overflow="fold")
    grid.add_row("schedule", f"{describe_cron(p.schedule)} ({p.timezone})")
    grid.add_row("next", _next_fire(p, now))
    grid.add_row("last run", _last_run(p.last_run, now))
    grid.add_row("queue", counts_text(p.queue, ENTITY_ORDER) or "empty")
    if p.client is not None:
        grid.add_row("rate", _rate(p.client, now))
        grid.add_row("token", _token(p.client, now))
    return Group(title, grid)


#: Ledger statuses in the order the queue line lists them.
ENTITY_ORDER = (
    "pending",
    "processing",
    "creating",
    "created",
    "updated",
    "linked",
    "unchanged",
    "skipped",
    "failed",
    "needs_review",
    "removed",
    "hidden",
    "deleted",
)


def next_fires(schedule: str, timezone: str, now: datetime, count: int) -> list[datetime]:
    """The next fires in the schedule's own zone (the daemon's own maths)."""
    parsed = parse_cron(schedule, timezone)
    return [f.astimezone(parsed.zone) for f in fire_times(parsed, now, count)]


def _next_fire(p: ProfileStatus, now: datetime) -> Text:
    if p.config_error:
        return Text(p.config_error, style="red")
    if not p.enabled:
        return Text("not scheduled (disabled)", style="dim")
    try:
        fire = next_fires(p.schedule, p.timezone, now, 1)[0]
    except ConfigError as exc:
        return Text(str(exc), style="red")
    text = Text(f"{fire:%a %d %b %H:%M %Z} ({until(fire, now)})")
    if p.breaker_open_until and p.breaker_open_until > now:
        held = span((p.breaker_open_until - now).total_seconds())
        text.append(f"; held back for {held} after errors", "yellow")
    return text


def _last_run(run: Mapping[str, Any] | None, now: datetime) -> Text:
    if run is None:
        return Text("never run", style="dim")
    status = str(run["status"])
    at = run["finished_at"] or run["started_at"]
    text = Text.assemble((status, _STATUS_STYLE.get(status, "")), f" {ago(at, now)}")
    counts = counts_text(run, COUNT_LABELS)
    if counts:
        text.append(f": {counts}")
    if run["error_summary"]:
        text.append(f" - {run['error_summary']}", "red" if status == "error" else "")
    return text


def counts_text(counts: Mapping[str, Any], order: Iterable[str]) -> str:
    """Non-zero counts only: "60 seen, 58 new, 2 fail" (labels from a dict, or the keys)."""
    labels = order if isinstance(order, Mapping) else {k: k for k in order}
    return ", ".join(f"{counts[k]} {label}" for k, label in labels.items() if counts.get(k))


def _egress(e: EgressStatus, now: datetime) -> Text:
    """One line: what every user sending from this address has used of its minute."""
    text = Text(f"egress {e.name}: {e.used_minute}/{e.per_minute} in the last minute, all users")
    if e.blocked_until and e.blocked_until > now:
        text.append(f"; paused by a 429 {until(e.blocked_until, now)}", "yellow")
    return text


def _rate(c: ClientStatus, now: datetime) -> Text:
    text = Text(
        f"{c.used_minute}/{c.per_minute} in the last minute, "
        f"{c.used_hour}/{c.per_hour} in the last hour"
    )
    if c.blocked_until and c.blocked_until > now:
        text.append(f"; paused by a 429 {until(c.blocked_until, now)}", "yellow")
    return text


def _token(c: ClientStatus, now: datetime) -> Text:
    if c.reauth_reason:
        return Text("needs re-authorisation (fa-sync client authorize)", style="bold red")
    if not c.authorised:
        return Text("not authorised (fa-sync client authorize)", style="red")
    if c.refresh_expires_at and c.refresh_expires_at <= now:
        return Text("needs re-authorisation (refresh token expired)", style="bold red")
    if c.access_expires_at is None:
        text = Text("access token expiry unknown")
    elif c.access_expires_at <= now:
        text = Text(f"access token expired {ago(c.access_expires_at, now)} (renewed on use)")
    else:
        text = Text(f"access token expires {until(c.access_expires_at, now)}")
    if c.refresh_expires_at:
        text.append(f", refresh token {until(c.refresh_expires_at, now)}")
    return text


# ------------------------------------------------------------------- history, profile list


def history_table(rows: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """Recent runs in five narrow columns: counts compacted, times relative."""
    table = Table(title="history", title_justify="left", pad_edge=False, expand=False)
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("profile", max_width=16, overflow="ellipsis", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("records / error", overflow="fold")
    for r in rows:
        status = str(r["status"])
        took = ""
        if r["started_at"] and r["finished_at"]:
            took = f" ({span((r['finished_at'] - r['started_at']).total_seconds())})"
        summary = "; ".join(x for x in (counts_text(r, COUNT_LABELS), r["error_summary"]) if x)
        table.add_row(
            str(r["id"]),
            str(r["profile_name"]),
            ago(r["started_at"] or r["scheduled_for"], now),
            Text(f"{status}{took}", style=_STATUS_STYLE.get(status, "")),
            summary or "-",
        )
    return table


def profile_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """Profiles in four columns: name and state, schedule in words, connections, problem."""
    table = Table(title="profiles", title_justify="left", pad_edge=False)
    table.add_column("profile", max_width=18, overflow="fold")
    table.add_column("on", no_wrap=True)
    table.add_column("schedule", overflow="fold")
    table.add_column("FreeAgent / Magento", max_width=20, overflow="fold")
    for r in rows:
        schedule = f"{describe_cron(r['schedule'])} ({r['timezone']})"
        if r["config_error"]:
            schedule += f"\n{r['config_error']}"
        table.add_row(
            str(r["name"]),
            Text("yes", "green") if r["enabled"] else Text("no", "yellow"),
            Text(schedule, style="red" if r["config_error"] else ""),
            f"{r['client_name'] or '-'} / {r['magento_name'] or '-'}",
        )
    return table
