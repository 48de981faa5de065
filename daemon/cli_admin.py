"""CLI: FreeAgent clients, Magento connections and profiles (the rows the daemon runs from)."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from daemon.cli_support import console, run_async, settings, show
from daemon.clients.oauth import approve_url, record_identity
from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow, Profile
from daemon.errors import ConfigError
from daemon.process import Services, open_services
from profiles import profile_warnings

client_app = typer.Typer(help="FreeAgent OAuth clients.", no_args_is_help=True)
magento_app = typer.Typer(help="Magento connections.", no_args_is_help=True)
profile_app = typer.Typer(help="Profiles: what runs, when and how.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def secret_file_option(what: str) -> Any:
    return typer.Option(help=f"Read the {what} from this file (first line).", dir_okay=False)


def read_secret(what: str, envvar: str, path: Path | None) -> str:
    """A secret from a file, else the environment, else a hidden prompt: never from argv."""
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
        if not value:
            raise ConfigError(f"{what}: {path} is empty")
        return value
    if os.environ.get(envvar, "").strip():
        return os.environ[envvar].strip()
    value = str(typer.prompt(what, hide_input=True)).strip()
    if not value:
        raise ConfigError(f"{what}: empty")
    return value


async def client_by_name(services: Services, name: str) -> FreeAgentClientRow:
    row = await services.pool.fetchrow(QUERIES["client_get_by_name"], name)
    if row is None:
        raise ConfigError(f"FreeAgent client {name!r} does not exist (fa-sync client list)")
    return services.factory.secrets.opened(FreeAgentClientRow.from_row(row))


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
    secret_file: Annotated[Path | None, secret_file_option("client secret")] = None,
    environment: Annotated[str, typer.Option(help="production | sandbox | custom")] = "sandbox",
    base_url: Annotated[str | None, typer.Option(help="custom only: API root ending /v2/")] = None,
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob",
    per_minute: Annotated[int, typer.Option(help="Requests a minute FreeAgent allows.")] = 120,
    per_hour: Annotated[int, typer.Option(help="Requests an hour FreeAgent allows.")] = 3600,
    rate_limit_test: Annotated[
        bool,
        typer.Option(
            help="Send X-RateLimit-Test: true (sandbox): FreeAgent then allows 5 requests a "
            "minute, and fa-sync spends at most 5 a minute and 300 an hour."
        ),
    ] = False,
) -> None:
    """Register a FreeAgent app's credentials; the secret from --secret-file, else
    FA_SYNC_CLIENT_SECRET, else a hidden prompt."""
    client_secret = read_secret("client secret", "FA_SYNC_CLIENT_SECRET", secret_file)
    async with open_services(settings()) as s, translated(f"client {name}"):
        await s.pool.fetchrow(
            QUERIES["client_insert"],
            name,
            environment,
            base_url,
            client_id,
            s.factory.secrets.seal(client_secret),
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
        bool,
        typer.Option(
            "--refresh-token",
            help="Import an existing refresh token (headless servers): from "
            "--refresh-token-file, else FA_SYNC_REFRESH_TOKEN, else a hidden prompt.",
        ),
    ] = False,
    refresh_token_file: Annotated[Path | None, secret_file_option("refresh token")] = None,
) -> None:
    """Without options print the approve URL; then pass --code (or --refresh-token)."""
    imported = None
    if refresh_token or refresh_token_file is not None:
        imported = read_secret("refresh token", "FA_SYNC_REFRESH_TOKEN", refresh_token_file)
    async with open_services(settings()) as s:
        row = await client_by_name(s, name)
        if code is None and imported is None:
            console.print("Open this URL, approve, then run again with --code <code>:")
            console.print(approve_url(row, secrets.token_urlsafe(16)), soft_wrap=True)
            return
        user, company = await s.factory.authorize(row, code=code, refresh_token=imported)
    console.print(
        f"client [bold]{name}[/bold] authorised for {user.get('email')} at "
        f"{company.get('name')} (permission level {user.get('permission_level')})"
    )


@client_app.command("config")
@run_async
async def client_config(
    name: str,
    delete: Annotated[
        bool, typer.Option("--delete", "--clear", help="Delete the cached data instead.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch and cache the FreeAgent company and user (settings are checked against them)."""
    async with open_services(settings()) as s:
        row = await client_by_name(s, name)
        if delete:
            await s.pool.execute(QUERIES["client_clear_config"], row.id)
            console.print(f"configuration data of {name} deleted")
            return
        fa = await s.factory.freeagent(row.id, profile_name=name)
        data: dict[str, Any] = {"company": await fa.company(), "user": await fa.users_me()}
        await s.pool.execute(QUERIES["client_save_config"], row.id, data)
        await record_identity(s.pool, row.id, user=data["user"], company=data["company"])
        profiles = [
            Profile.from_row(p)
            for p in await s.pool.fetch(QUERIES["profile_list"])
            if p["client_id"] == row.id
        ]
    warnings = [w for p in profiles for w in profile_warnings(p, name, data)]
    if as_json:
        console.print_json(json.dumps({**data, "warnings": warnings}, default=str))
        return
    console.print(describe_config(data), highlight=False)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def describe_config(data: dict[str, Any]) -> str:
    """Company and user in a few short lines (fits 80 columns)."""
    c, u = data.get("company") or {}, data.get("user") or {}
    tax = c.get("sales_tax_name") or "sales tax"
    number = c.get("sales_tax_registration_number")
    lines = [
        f"company     {c.get('name', '?')} ({c.get('subdomain', '?')})",
        f"type        {c.get('type', '?')}",
        f"currency    {c.get('currency', '?')}",
        f"{tax:<11} {c.get('sales_tax_registration_status', '?')}"
        + (f", {number}" if number else ""),
        f"user        {u.get('first_name', '')} {u.get('last_name', '')} <{u.get('email', '?')}>",
        f"role        {u.get('role', '?')}, permission level {u.get('permission_level', '?')}",
    ]
    return "\n".join(lines)


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
    token_file: Annotated[Path | None, secret_file_option("integration access token")] = None,
    store_code: str | None = None,
    consumer_key: Annotated[
        str | None,
        typer.Option(
            help="OAuth 1.0a signing instead of Bearer; then the consumer secret and token "
            "secret are read too (files, FA_SYNC_MAGENTO_CONSUMER_SECRET and "
            "FA_SYNC_MAGENTO_TOKEN_SECRET, or prompts)."
        ),
    ] = None,
    consumer_secret_file: Annotated[Path | None, secret_file_option("consumer secret")] = None,
    token_secret_file: Annotated[Path | None, secret_file_option("token secret")] = None,
) -> None:
    """Register a Magento 2 integration; the access token from --token-file, else
    FA_SYNC_MAGENTO_TOKEN, else a hidden prompt."""
    token = read_secret("integration access token", "FA_SYNC_MAGENTO_TOKEN", token_file)
    consumer_secret = token_secret = None
    if consumer_key:
        consumer_secret = read_secret(
            "consumer secret", "FA_SYNC_MAGENTO_CONSUMER_SECRET", consumer_secret_file
        )
        token_secret = read_secret(
            "token secret", "FA_SYNC_MAGENTO_TOKEN_SECRET", token_secret_file
        )
    async with open_services(settings()) as s, translated(f"Magento connection {name}"):
        box = s.factory.secrets
        await s.pool.fetchrow(
            QUERIES["connection_insert"],
            name,
            url.rstrip("/"),
            store_code,
            box.seal(token),
            consumer_key,
            box.seal_optional(consumer_secret),
            box.seal_optional(token_secret),
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


@magento_app.command("webhook")
@run_async
async def magento_webhook(
    name: str,
    secret_file: Annotated[Path | None, secret_file_option("webhook secret")] = None,
    header: Annotated[
        str | None,
        typer.Option(help="Also accept deliveries carrying this header with the secret as value."),
    ] = None,
    basic: Annotated[
        str | None,
        typer.Option(help="Also accept HTTP Basic auth: this user, the secret as password."),
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Refuse this shop's webhooks.")] = False,
) -> None:
    """Accept POST /webhooks/magento from this shop, signed with a shared secret read from
    --secret-file, else FA_SYNC_WEBHOOK_SECRET, else a hidden prompt (stored sealed).
    --header / --basic: the secret is instead a fixed header's value or a Basic password,
    for senders that cannot sign each request (Mageplaza)."""
    auth = webhook_auth(header, basic)
    async with open_services(settings()) as s, translated(f"Magento connection {name}"):
        row = await s.pool.fetchrow(QUERIES["connection_get_by_name"], name)
        if row is None:
            raise ConfigError(f"Magento connection {name!r} does not exist")
        if off:
            await s.pool.execute(QUERIES["webhook_secret_clear"], row["id"])
            console.print(f"webhooks of Magento connection {name} refused")
            return
        secret = read_secret("webhook secret", "FA_SYNC_WEBHOOK_SECRET", secret_file)
        if len(secret) < 16:
            raise ConfigError("webhook secret: use at least 16 characters")
        sealed = s.factory.secrets.seal(secret)
        if auth is None:
            await s.pool.execute(QUERIES["webhook_secret_set"], row["id"], sealed)
        else:
            await s.pool.execute(QUERIES["webhook_auth_set"], row["id"], *auth, sealed)
    console.print(f"webhooks of Magento connection [bold]{name}[/bold] accepted")


#: Header names a fixed secret may not use: ours, and those HTTP itself gives a meaning.
RESERVED_HEADERS = {
    "authorization", "content-type", "content-length", "host", "transfer-encoding",
    "x-fa-sync-timestamp", "x-fa-sync-signature",
}  # fmt: skip


def webhook_auth(header: str | None, basic: str | None) -> tuple[str, str] | None:
    """(kind, name) of the opt-in credentials asked for, or None for the HMAC secret."""
    if header is not None and basic is not None:
        raise ConfigError("webhook: give --header or --basic, not both")
    if header is not None:
        token = header.strip()
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", token):
            raise ConfigError(f"webhook --header {header!r}: not an HTTP header name")
        if token.lower() in RESERVED_HEADERS:
            raise ConfigError(f"webhook --header {token}: reserved, choose another name")
        return "header", token
    if basic is not None:
        user = basic.strip()
        if not user or ":" in user or not user.isprintable():
            raise ConfigError(f"webhook --basic {basic!r}: a user name without ':'")
        return "basic", user
    return None
