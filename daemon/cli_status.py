"""CLI: the operator screens, `fa-sync status` and `fa-sync history` (80 columns; --wide,
--json for everything)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from daemon.cli_admin import JsonOpt
from daemon.cli_contacts import COUNT_KEYS
from daemon.cli_profiles import profile_by_name
from daemon.cli_support import console, run_async, settings, show
from daemon.db.queries import QUERIES
from daemon.process import open_services
from daemon.runner import utcnow
from daemon.screens import gather_egress, gather_status, history_table, render_status

WideOpt = Annotated[bool, typer.Option("--wide", help="Every column, untruncated.")]


@run_async
async def status(as_json: JsonOpt = False) -> None:
    """Every profile on one screen: schedule, next fire, last run, queue, rate, token."""
    now = utcnow()
    config = settings()
    async with open_services(config) as s:
        profiles = await gather_status(s.pool, now)
        egress = await gather_egress(
            s.pool, now, config.rate_egress_key, config.rate_egress_per_minute
        )
    if as_json:
        doc = {
            "now": now,
            "egress": asdict(egress) if egress else None,
            "profiles": [asdict(p) for p in profiles],
        }
        sys.stdout.write(json.dumps(doc, default=str, indent=2) + "\n")
        return
    console.print(render_status(profiles, now, egress))


@run_async
async def history(
    profile: Annotated[str | None, typer.Option("--profile", "-p")] = None,
    limit: int = 20,
    wide: WideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Schedule history: recent runs, newest first."""
    async with open_services(settings()) as s:
        profile_id = (await profile_by_name(s, profile)).id if profile else None
        records = await s.pool.fetch(QUERIES["run_history"], profile_id, limit)
    rows = [dict(r) for r in records]
    if wide or as_json:
        columns = ["id", "profile_name", "trigger", "scheduled_for", "started_at"]
        columns += ["finished_at", "status", *COUNT_KEYS, "error_summary"]
        show(rows, list(rows[0]) if as_json and rows else columns, title="history", as_json=as_json)
        return
    console.print(history_table(rows, utcnow()))
