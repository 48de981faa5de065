"""CLI: run the contact export once (collect, export, import, dry run), history, the queue."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from daemon.alerts.dispatcher import configured_dispatcher
from daemon.cli_admin import JsonOpt
from daemon.cli_profiles import profile_by_name
from daemon.cli_support import console, run_async, settings, show
from daemon.context import RunOptions
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger
from daemon.db.rehearsal import unrehearsed
from daemon.errors import ConfigError
from daemon.process import Services, open_services
from daemon.runner import Runner, RunOutcome, utcnow
from profiles.freeagent_contact_export import dryrun
from profiles.freeagent_contact_export.resolve import ContactIndex

contact_app = typer.Typer(help="Contacts: collect, export, import.", no_args_is_help=True)
queue_app = typer.Typer(help="The contact ledger (export queue).", no_args_is_help=True)

#: Records a dry run lists on the terminal (--json lists every one).
SHOWN_RECORDS = 200
ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Profile name or id.")]
COUNT_KEYS = [
    "collected",
    "created",
    "updated",
    "linked",
    "unchanged",
    "skipped",
    "failed",
    "retrying",
    "removed",
    "drifted",
    "needs_review",
]


async def run_once(
    s: Services,
    profile_name: str,
    options: RunOptions,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> RunOutcome:
    """One run of a profile now, with a progress display; the same path the daemon uses."""
    profile = await profile_by_name(s, profile_name)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def report(stage: str, done: int, total: int | None) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        # alerts as in the daemon; critical ones go out before the command returns
        alerts = configured_dispatcher(s.pool, s.session, s.settings, s.metrics)
        runner = Runner(
            pool=s.pool, settings=s.settings, resources=s.factory, clock=clock, alerts=alerts
        )
        opts = RunOptions(**{**options.__dict__, "progress": report})
        outcome = await runner.fire(profile.id, trigger=RunTrigger.CLI, options=opts)
        if alerts is not None:
            progress.update(task, description="sending alerts")
            await alerts.flush(clock())
    return outcome


def _outcome_row(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "run": outcome.run_id,
        "status": outcome.status,
        **outcome.counts.as_dict(),
        "error": outcome.error,
    }


def _failed(outcome: RunOutcome) -> bool:
    return outcome.status in ("error", "skipped")


def print_outcome(outcome: RunOutcome, as_json: bool) -> None:
    row = _outcome_row(outcome)
    show([row], ["run", "status", *COUNT_KEYS, "error"], title="run result", as_json=as_json)
    if _failed(outcome) and not as_json:
        raise typer.Exit(1)


@contact_app.command("collect")
@run_async
async def contact_collect(
    profile: ProfileOpt,
    full: Annotated[bool, typer.Option(help="Every customer, not only recent changes.")] = False,
    freeagent: Annotated[
        bool, typer.Option(help="Also refresh the FreeAgent contact index.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Collect Magento customers (and guests) into the queue; refresh the FreeAgent contacts."""
    async with open_services(settings()) as s:
        outcome = await run_once(s, profile, RunOptions(collect=True, export=False, full=full))
        if freeagent and outcome.status not in ("error", "skipped"):
            p = await profile_by_name(s, profile)
            fa = await s.factory.freeagent(p.client_id, profile_name=p.name)
            seen = await ContactIndex(
                pool=s.pool, client_id=p.client_id or 0, freeagent=fa
            ).refresh(full=full)
            console.print(f"FreeAgent contacts read: {seen}")
    print_outcome(outcome, as_json)


@contact_app.command("export")
@run_async
async def contact_export(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Profile name or id. Left out: every enabled profile, or the profiles of --id.",
        ),
    ] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these ledger rows.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(help="Rehearse the export: totals and per-record changes; send nothing."),
    ] = False,
    collect: Annotated[bool, typer.Option(help="Collect from Magento first.")] = True,
    full: Annotated[bool, typer.Option(help="Full collect.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export queued customers to FreeAgent now (run-once mode of the daemon's own path)."""
    async with open_services(settings()) as s:
        if profile is not None:
            options = RunOptions(
                collect=collect and not ids, full=full, ids=tuple(ids) if ids else None
            )
            if dry_run:
                await _dry_run(s, profile, options, as_json)
                return
            outcome = await run_once(s, profile, options)
            print_outcome(outcome, as_json)
            return
        await _export_each(s, ids, dry_run=dry_run, collect=collect, full=full, as_json=as_json)


async def _export_each(
    s: Services, ids: list[int] | None, *, dry_run: bool, collect: bool, full: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """`contact export` without --profile: every enabled profile (or the profiles of the
    ledger rows --id names), one after the other; exit 1 if any run failed or was skipped."""
    targets = await s.pool.fetch(QUERIES["profiles_to_export"], ids)
    unknown = [t for t in targets if t["profile_id"] is None]
    if unknown:
        missing = ", ".join(str(i) for i in unknown[0]["ids"])
        raise ConfigError(f"ledger rows {missing} do not exist (fa-sync queue list)")
    if not targets:
        raise ConfigError("no enabled profile to export (fa-sync profile list)")
    rows, plans, failed = [], [], False
    for target in targets:
        mine = tuple(target["ids"]) if target["ids"] else None
        options = RunOptions(collect=collect and not mine, full=full, ids=mine)
        if dry_run:
            report = await _dry_report(s, target["name"], options)
            plans.append({"profile": target["name"], "dry_run": True, **asdict(report)})
            if not as_json:
                print_dry_run(target["name"], report, as_json=False, exit_on_failure=False)
            failed |= report.status in ("error", "skipped")
            continue
        outcome = await run_once(s, target["name"], options)
        rows.append({"profile": target["name"], **_outcome_row(outcome)})
        failed |= _failed(outcome)
    if dry_run and as_json:
        sys.stdout.write(json.dumps(plans, default=str, indent=2, ensure_ascii=False) + "\n")
    elif not dry_run:
        columns = ["profile", "run", "status", *COUNT_KEYS, "error"]
        show(rows, columns, title="run results", as_json=as_json)
    if failed:
        raise typer.Exit(1)


async def _dry_report(s: Services, profile_name: str, options: RunOptions) -> dryrun.DryRunReport:
    profile = await profile_by_name(s, profile_name)
    return await dryrun.dry_run(
        pool=s.pool,
        settings=s.settings,
        resources=s.factory,
        profile_id=profile.id,
        options=options,
        clock=utcnow,
    )


async def _dry_run(s: Services, profile_name: str, options: RunOptions, as_json: bool) -> None:
    print_dry_run(profile_name, await _dry_report(s, profile_name, options), as_json)


def print_dry_run(
    profile_name: str, report: dryrun.DryRunReport, as_json: bool, *, exit_on_failure: bool = True
) -> None:
    """Totals, then one line per record (field changes for updates); --json the same."""
    if as_json:
        body = {"profile": profile_name, "dry_run": True, **asdict(report)}
        sys.stdout.write(json.dumps(body, default=str, indent=2, ensure_ascii=False) + "\n")
    else:
        t = report.totals
        hides = f" (hide {t['hidden']} of them)" if t.get("hidden") else ""
        console.print(
            f"dry run of {profile_name}: nothing was sent to FreeAgent, nothing was kept\n"
            f"would create {t.get('created', 0)}, update {t.get('updated', 0)}{hides}, "
            f"link {t.get('linked', 0)}, leave unchanged {t.get('unchanged', 0)},\n"
            f"skip {t.get('skipped', 0)}, fail {t.get('failed', 0)}, "
            f"retry later {t.get('retrying', 0)}; needs review {t.get('needs_review', 0)}",
            highlight=False,
        )
        rows = [
            {**r.__dict__, "detail": r.detail} for r in report.records if r.action != "unchanged"
        ]
        show(rows, ["entity_id", "source_key", "action", "detail"], title="", as_json=False)
        for message in report.messages:
            console.print(message, highlight=False)
        console.print("a dry run cannot predict: " + "; ".join(report.cannot_predict))
    if report.status in ("error", "skipped"):
        if not as_json:
            console.print(f"[red]run {report.status}:[/red] {report.error}")
        if exit_on_failure:
            raise typer.Exit(1)


@contact_app.command("import")
@run_async
async def contact_import(
    profile: ProfileOpt,
    collect: Annotated[bool, typer.Option(help="Collect from Magento first.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Link existing FreeAgent contacts to Magento customers by e-mail; creates none."""
    async with open_services(settings()) as s:
        outcome = await run_once(s, profile, RunOptions(collect=collect, import_only=True))
    if outcome.counts.needs_review and not as_json:
        for note in outcome.counts.messages:
            if note.get("entity_id"):
                console.print(f"[yellow]{note['message']}[/yellow]")
        console.print(
            f"{outcome.counts.needs_review} ambiguous: not linked; see fa-sync match list"
        )
    print_outcome(outcome, as_json)


async def _profile_id(s: Services, name: str | None) -> int | None:
    return (await profile_by_name(s, name)).id if name else None


@queue_app.command("list")
@run_async
async def queue_list(
    profile: Annotated[str | None, typer.Option("--profile", "-p")] = None,
    status: Annotated[str | None, typer.Option(help="pending, failed, created...")] = None,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Ledger rows, e.g. the dead letters: --status failed."""
    async with open_services(settings()) as s:
        rows = [
            dict(r)
            for r in await s.pool.fetch(
                QUERIES["entity_list"], await _profile_id(s, profile), status, limit
            )
        ]
    for r in rows:
        r["error"] = (r.get("last_error") or {}).get("message") or (r.get("last_error") or {}).get(
            "reason"
        )
    cols = [
        "id",
        "profile_name",
        "source_key",
        "email",
        "status",
        "attempts",
        "next_attempt_at",
        "freeagent_url",
        "error",
    ]
    if as_json:
        cols += ["last_error", "attempt_history"]
    show(rows, cols, title="contact queue", as_json=as_json)


@queue_app.command("retry")
@run_async
async def queue_retry(
    profile: Annotated[str | None, typer.Option("--profile", "-p")] = None,
    status: Annotated[str, typer.Option(help="Re-queue rows with this status.")] = "failed",
    ids: Annotated[list[int] | None, typer.Option("--id")] = None,
) -> None:
    """Put failed rows back in the queue for the next run."""
    async with open_services(settings()) as s:
        profile_id = await _profile_id(s, profile)
        rows = await s.pool.fetch(QUERIES["entity_retry"], profile_id, status, ids)
        held = await s.pool.fetch(QUERIES["entity_retry_held"], profile_id, status, ids)
    console.print(f"{len(rows)} row(s) re-queued")
    for h in held:
        console.print(
            f"[yellow]profile {h['name']}: {h['n']} row(s) left as they were: a dry run of it "
            "is in progress; retry when it has finished[/yellow]"
        )
    if held:
        raise typer.Exit(1)


@queue_app.command("resolve")
@run_async
async def queue_resolve(
    row: Annotated[int, typer.Argument(help="Ledger row id waiting as needs_review.")],
    keep: Annotated[
        bool,
        typer.Option(
            "--keep/--overwrite",
            help="Keep FreeAgent's edits of the drifted fields, or overwrite them.",
        ),
    ],
) -> None:
    """Decide a contact edited in FreeAgent (on_drift: review); the next run applies it once."""
    decision = "keep" if keep else "overwrite"
    async with open_services(settings()) as s:
        found = await s.pool.fetchrow(QUERIES["entity_review_get"], row)
        done = None
        if found is not None:
            refused = (
                f"profile {found['profile_name']}: a dry run of it is in progress; "
                "decide again when it has finished"
            )
            async with unrehearsed(s.pool, found["profile_id"], refused) as conn:
                done = await conn.fetchval(QUERIES["entity_resolve_review"], row, decision)
    if done is None:
        console.print(f"[red]row {row} is not waiting for review[/red]")
        raise typer.Exit(1)
    console.print(f"row {row} queued: {decision} on the next run")
