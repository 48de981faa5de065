"""CLI: FreeAgent clients, Magento connections and profiles (the rows the daemon runs from)."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

import typer

from daemon.cli_support import console, run_async, settings, show
from daemon.clients.oauth import approve_url, record_identity
from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow
from daemon.errors import ConfigError
from daemon.process import Services, open_services

client_app = typer.Typer(help="FreeAgent OAuth clients.", no_args_is_help=True)
magento_app = typer.Typer(help="Magento connections.", no_args_is_help=True)
profile_app = typer.Typer(help="Profiles: what runs, when and how.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


async def client_by_name(services: Services, name: str) -> FreeAgentClientRow:
    row = await services.pool.fetchrow(QUERIES["client_get_by_name"], name)
    if row is None:
        raise ConfigError(f"FreeAgent client {name!r} does not exist (fa-sync client list)")
    return FreeAgentClientRow.from_row(row)


def _client_view(row: Any) -> dict[str, Any]:
    """A client without its secrets: only whether they are set."""
    r = dict(row)
    for key in ("client_secret", "access_token", "refresh_token"):
        r[key] = "set" if r.get(key) else "not set"
    return r


@client_app.command("add")
@run_async
async def client_add(
    name: str,
    client_id: Annotated[str, typer.Option(help="OAuth identifier from dev.freeagent.com.")],
    client_secret: Annotated[
        str, typer.Option(prompt=True, hide_input=True, envvar="FA_SYNC_CLIENT_SECRET")
    ],
    environment: Annotated[str, typer.Option(help="production | sandbox | custom")] = "sandbox",
    base_url: Annotated[str | None, typer.Option(help="custom only: API root ending /v2/")] = None,
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob",
    per_minute: int = 120,
    per_hour: int = 3600,
    rate_limit_test: bool = False,
) -> None:
    """Register a FreeAgent app's credentials."""
    async with open_services(settings()) as s, translated(f"client {name}"):
        await s.pool.fetchrow(
            QUERIES["client_insert"],
            name,
            environment,
            base_url,
            client_id,
            client_secret,
            redirect_uri,
            per_minute,
            per_hour,
            rate_limit_test,
        )
    console.print(f"client [bold]{name}[/bold] added; next: fa-sync client authorize {name}")


@client_app.command("list")
@run_async
async def client_list(as_json: JsonOpt = False) -> None:
    """List FreeAgent clients (secrets are never shown)."""
    async with open_services(settings()) as s:
        rows = [_client_view(r) for r in await s.pool.fetch(QUERIES["client_list"])]
    show(
        rows,
        [
            "id",
            "name",
            "environment",
            "user_email",
            "company_name",
            "permission_level",
            "refresh_token",
            "access_token_expires_at",
        ],
        title="FreeAgent clients",
        as_json=as_json,
    )


@client_app.command("show")
@run_async
async def client_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one client (secrets are never shown)."""
    async with open_services(settings()) as s:
        row = _client_view((await client_by_name(s, name)).__dict__)
    row.pop("config_data", None)
    show([row], row.keys(), title=f"client {name}", as_json=as_json)


@client_app.command("authorize")
@run_async
async def client_authorize(
    name: str,
    code: Annotated[str | None, typer.Option(help="Code from the approve redirect.")] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option(
            help="Import an existing refresh token (headless servers).",
            envvar="FA_SYNC_REFRESH_TOKEN",
        ),
    ] = None,
) -> None:
    """Without options print the approve URL; then pass --code (or --refresh-token)."""
    async with open_services(settings()) as s:
        row = await client_by_name(s, name)
        if code is None and refresh_token is None:
            console.print("Open this URL, approve, then run again with --code <code>:")
            console.print(approve_url(row, secrets.token_urlsafe(16)), soft_wrap=True)
            return
        user, company = await s.factory.authorize(row, code=code, refresh_token=refresh_token)
    console.print(
        f"client [bold]{name}[/bold] authorised for {user.get('email')} at "
        f"{company.get('name')} (permission level {user.get('permission_level')})"
    )


@client_app.command("config")
@run_async
async def client_config(
    name: str,
    clear: Annotated[bool, typer.Option(help="Delete the collected data instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Collect configuration data (company, user, business categories) from FreeAgent."""
    async with open_services(settings()) as s:
        row = await client_by_name(s, name)
        if clear:
            await s.pool.execute(QUERIES["client_clear_config"], row.id)
            console.print(f"configuration data of {name} deleted")
            return
        fa = await s.factory.freeagent(row.id, profile_name=name)
        data: dict[str, Any] = {
            "company": await fa.company(),
            "user": await fa.users_me(),
            "business_categories": await fa.business_categories(),
        }
        await s.pool.execute(QUERIES["client_save_config"], row.id, data)
        await record_identity(s.pool, row.id, user=data["user"], company=data["company"])
    if as_json:
        console.print_json(json.dumps(data, default=str))
    else:
        c = data["company"]
        console.print(
            f"{c.get('name')}: {c.get('type')}, currency {c.get('currency')}, "
            f"sales tax {c.get('sales_tax_registration_status')}; "
            f"{len(data['business_categories'])} business categories stored"
        )


@client_app.command("remove")
@run_async
async def client_remove(name: str) -> None:
    """Remove a client (refused while a profile uses it)."""
    async with open_services(settings()) as s, translated(f"client {name}"):
        if await s.pool.fetchval(QUERIES["client_delete"], name) is None:
            raise ConfigError(f"FreeAgent client {name!r} does not exist")
    console.print(f"client {name} removed")


@magento_app.command("add")
@run_async
async def magento_add(
    name: str,
    url: Annotated[str, typer.Option(help="Shop root, e.g. https://shop.example.com")],
    token: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="FA_SYNC_MAGENTO_TOKEN",
            help="Integration access token.",
        ),
    ],
    store_code: str | None = None,
    consumer_key: Annotated[
        str | None, typer.Option(help="OAuth 1.0a signing instead of Bearer.")
    ] = None,
    consumer_secret: Annotated[
        str | None, typer.Option(envvar="FA_SYNC_MAGENTO_CONSUMER_SECRET")
    ] = None,
    token_secret: Annotated[str | None, typer.Option(envvar="FA_SYNC_MAGENTO_TOKEN_SECRET")] = None,
) -> None:
    """Register a Magento 2 integration."""
    async with open_services(settings()) as s, translated(f"Magento connection {name}"):
        await s.pool.fetchrow(
            QUERIES["connection_insert"],
            name,
            url.rstrip("/"),
            store_code,
            token,
            consumer_key,
            consumer_secret,
            token_secret,
        )
    console.print(f"Magento connection [bold]{name}[/bold] added")


@magento_app.command("list")
@run_async
async def magento_list(as_json: JsonOpt = False) -> None:
    """List Magento connections (tokens are never shown)."""
    async with open_services(settings()) as s:
        rows = [dict(r) for r in await s.pool.fetch(QUERIES["connection_list"])]
    for r in rows:
        r["auth"] = "oauth1" if r.get("consumer_key") else "bearer"
    show(
        rows,
        ["id", "name", "base_url", "store_code", "auth"],
        title="Magento connections",
        as_json=as_json,
    )


@magento_app.command("remove")
@run_async
async def magento_remove(name: str) -> None:
    """Remove a Magento connection (refused while a profile uses it)."""
    async with open_services(settings()) as s, translated(f"Magento connection {name}"):
        if await s.pool.fetchval(QUERIES["connection_delete"], name) is None:
            raise ConfigError(f"Magento connection {name!r} does not exist")
    console.print(f"Magento connection {name} removed")
