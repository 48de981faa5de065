"""CLI: profile rows. The daemon picks up every change here without a restart."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from daemon.cli_admin import JsonOpt, client_by_name, profile_app
from daemon.cli_support import console, run_async, settings, show
from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import Profile
from daemon.describe import describe_cron
from daemon.errors import ConfigError
from daemon.logs import scrub
from daemon.numbers import whole_number
from daemon.process import Services, open_services
from daemon.profile_screen import FIRES_SHOWN, gather_profile, render_profile
from daemon.runner import utcnow
from daemon.screens import next_fires, profile_table
from profiles import profile_warnings, validate_profile

PROFILE_COLUMNS = [
    "id",
    "name",
    "type",
    "enabled",
    "schedule",
    "timezone",
    "batch_size",
    "api_behaviour",
    "collect_mode",
    "config_error",
]


async def profile_by_name(services: Services, name: str) -> Profile:
    """A profile by name or, when no profile has that name, by id (`--profile=1`)."""
    row = await services.pool.fetchrow(QUERIES["profile_get_by_name"], name)
    number = whole_number(name)
    if row is None and number is not None and number < 2**63:
        row = await services.pool.fetchrow(QUERIES["profile_get"], number)
    if row is None:
        raise ConfigError(f"profile {name!r} does not exist (fa-sync profile list)")
    return Profile.from_row(row)


async def _connection_id(services: Services, name: str | None) -> int | None:
    if name is None:
        return None
    row = await services.pool.fetchrow(QUERIES["connection_get_by_name"], name)
    if row is None:
        raise ConfigError(f"Magento connection {name!r} does not exist (fa-sync magento list)")
    return int(row["id"])


def _set_path(settings_obj: dict[str, Any], assignment: str) -> None:
    """Apply `a.b=value` (value parsed as JSON when it can be) to a settings dict."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    keys = path.split(".")
    node = settings_obj
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {key} is not an object")
    node[keys[-1]] = value


async def settings_warnings(services: Services, profile: Profile) -> tuple[list[str], str]:
    """Warnings from checking the settings against the client's cached configuration data,
    and what they were checked against."""
    if profile.client_id is None:
        return [], "no FreeAgent client"
    row = await services.pool.fetchrow(QUERIES["client_get"], profile.client_id)
    if row is None or not row["config_data"]:
        name = row["name"] if row is not None else "NAME"
        return [], f"not checked: no configuration data (fa-sync client config {name})"
    when = row["config_collected_at"]
    at = f"{when:%Y-%m-%d %H:%M %Z}" if when else "at an unknown time"
    checked = f"FreeAgent company data of {row['name']} collected {at}"
    return profile_warnings(profile, row["name"], row["config_data"]), checked


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def _check(profile: Profile) -> None:
    """Refuse what the daemon would refuse (validate_profile: schedule, type, settings),
    before it reaches the table."""
    problem = validate_profile(profile)
    if problem:
        raise ConfigError(problem)


@profile_app.command("create")
@run_async
async def profile_create(
    name: str,
    client: Annotated[str, typer.Option(help="FreeAgent client name.")],
    magento: Annotated[str, typer.Option(help="Magento connection name.")],
    schedule: Annotated[
        str, typer.Option(help="Cron: 5 fields, or 6 with seconds.")
    ] = "*/15 * * * *",
    profile_type: Annotated[str, typer.Option("--type")] = "freeagent_contact_export",
    settings_json: Annotated[str, typer.Option("--settings", help="JSON object.")] = "{}",
) -> None:
    """Create a profile (enabled, with defaults for every other column)."""
    async with open_services(settings()) as s:
        client_id = (await client_by_name(s, client)).id
        connection_id = await _connection_id(s, magento)
        try:
            settings_obj = json.loads(settings_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not JSON: {exc}") from exc
        async with translated(f"profile {name}"), s.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                QUERIES["profile_insert"],
                name,
                profile_type,
                client_id,
                connection_id,
                schedule,
                settings_obj,
            )
            _check(Profile.from_row(row))
        warnings, _ = await settings_warnings(s, Profile.from_row(row))
    console.print(f"profile [bold]{name}[/bold] created (schedule {schedule})")
    print_warnings(warnings)


@profile_app.command("list")
@run_async
async def profile_list(
    wide: Annotated[bool, typer.Option("--wide", help="Every column.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List profiles with any configuration error the daemon flagged."""
    async with open_services(settings()) as s:
        rows = [dict(r) for r in await s.pool.fetch(QUERIES["profile_list_named"], None)]
    if as_json:
        show(rows, list(rows[0]) if rows else [], title="profiles", as_json=True)
    elif wide:
        show(
            rows, [*PROFILE_COLUMNS, "client_name", "magento_name"], title="profiles", as_json=False
        )
    else:
        console.print(profile_table(rows))


@profile_app.command("show")
@run_async
async def profile_show(name: str, as_json: JsonOpt = False) -> None:
    """One profile: schedule in words, next 5 fires, connections, settings (and what they
    were checked against), queue, last runs."""
    now = utcnow()
    async with open_services(settings()) as s:
        detail = await gather_profile(s.pool, name)
        warnings, checked = await settings_warnings(s, detail.profile)
    if not as_json:
        console.print(render_profile(detail, now, checked=checked))
        print_warnings(warnings)
        return
    profile = detail.profile
    row = {
        **profile.__dict__,
        "settings": scrub(profile.settings),
        "client_name": detail.client,
        "magento_name": detail.magento,
        "schedule_words": describe_cron(profile.schedule),
        "next_fires": _next_fires(profile),
        "ledger": dict(detail.queue),
        "last_runs": list(detail.runs),
        "settings_checked": checked,
        "warnings": warnings,
    }
    show([row], row.keys(), title=f"profile {name}", as_json=True)


def _next_fires(profile: Profile, count: int = FIRES_SHOWN) -> list[str] | str:
    """The next fires in the profile's own zone (the daemon's own maths), or why there are none."""
    try:
        fires = next_fires(profile.schedule, profile.timezone, utcnow(), count)
    except ConfigError as exc:
        return str(exc)
    return [f.isoformat() for f in fires]


@profile_app.command("set")
@run_async
async def profile_set(
    name: str,
    schedule: str | None = None,
    timezone: str | None = None,
    batch_size: int | None = None,
    retry: Annotated[bool | None, typer.Option("--retry/--no-retry")] = None,
    retry_max_attempts: int | None = None,
    api_behaviour: Annotated[
        str | None, typer.Option(help="upsert | create | update | mirror")
    ] = None,
    collect_mode: Annotated[str | None, typer.Option(help="append | replace")] = None,
    collection_size: int | None = None,
    history: Annotated[bool | None, typer.Option("--history/--no-history")] = None,
    client: str | None = None,
    magento: str | None = None,
    settings_json: Annotated[
        str | None, typer.Option("--settings", help="Replace settings (JSON).")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="settings key.path=value")] = None,
) -> None:
    """Change any column, e.g. --schedule '*/5 * * * *' --batch-size 200."""
    async with open_services(settings()) as s:
        await _update(
            s,
            name,
            enabled=None,
            schedule=schedule,
            timezone=timezone,
            batch_size=batch_size,
            retry=retry,
            retry_max_attempts=retry_max_attempts,
            api_behaviour=api_behaviour,
            collect_mode=collect_mode,
            collection_size=collection_size,
            history=history,
            client=client,
            magento=magento,
            settings_json=settings_json,
            assignments=set_ or [],
        )
        warnings, _ = await settings_warnings(s, await profile_by_name(s, name))
    console.print(f"profile [bold]{name}[/bold] updated")
    print_warnings(warnings)


async def _update(
    s: Services,
    name: str,
    *,
    enabled: bool | None,
    client: str | None = None,
    magento: str | None = None,
    settings_json: str | None = None,
    assignments: list[str] | None = None,
    **cols: Any,
) -> None:
    profile = await profile_by_name(s, name)
    new_settings: dict[str, Any] | None = None
    if settings_json is not None:
        new_settings = json.loads(settings_json)
    if assignments:
        new_settings = new_settings if new_settings is not None else dict(profile.settings)
        for assignment in assignments:
            _set_path(new_settings, assignment)
    client_id = (await client_by_name(s, client)).id if client else None
    connection_id = await _connection_id(s, magento)
    async with translated(f"profile {name}"), s.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            QUERIES["profile_update"],
            name,
            enabled,
            cols.get("schedule"),
            cols.get("timezone"),
            cols.get("batch_size"),
            cols.get("retry"),
            cols.get("retry_max_attempts"),
            cols.get("api_behaviour"),
            cols.get("collect_mode"),
            cols.get("collection_size"),
            cols.get("history"),
            client_id,
            connection_id,
            new_settings,
        )
        _check(Profile.from_row(await conn.fetchrow(QUERIES["profile_get_by_name"], name)))


@profile_app.command("enable")
@run_async
async def profile_enable(name: str) -> None:
    """Schedule the profile."""
    async with open_services(settings()) as s:
        await _update(s, name, enabled=True)
    console.print(f"profile {name} enabled")


@profile_app.command("disable")
@run_async
async def profile_disable(name: str) -> None:
    """Stop scheduling the profile (CLI runs still work)."""
    async with open_services(settings()) as s:
        await _update(s, name, enabled=False)
    console.print(f"profile {name} disabled")


@profile_app.command("delete")
@run_async
async def profile_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Delete a profile with its history and ledger."""
    if not yes:
        typer.confirm(f"Delete profile {name}, its history and its ledger?", abort=True)
    async with open_services(settings()) as s:
        if await s.pool.fetchval(QUERIES["profile_delete"], name) is None:
            raise ConfigError(f"profile {name!r} does not exist")
    console.print(f"profile {name} deleted")
