"""Profiles as code: export profile rows to JSON and import them back, by name.

A document names each profile's FreeAgent client and Magento connection; it never holds a
token, a client secret or an id. Import creates or updates every profile of a file in one
transaction, checking each as `profile create/set` does; one bad value refuses the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, ValidationError

from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import Profile
from daemon.errors import ConfigError
from profiles import validate_profile

FORMAT = "fa-sync-profiles"
VERSION = 1
#: Profile columns a document carries, besides name, client and magento.
COLUMNS = (
    "type",
    "enabled",
    "schedule",
    "timezone",
    "batch_size",
    "retry_enabled",
    "retry_max_attempts",
    "api_behaviour",
    "collect_mode",
    "collection_size",
    "history_enabled",
    "settings",
)


class ProfileSpec(BaseModel):
    """One profile in a document; a column left out keeps its current (or default) value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    client: str  #: FreeAgent client name
    magento: str  #: Magento connection name
    type: str = "freeagent_contact_export"
    enabled: bool | None = None
    schedule: str | None = None
    timezone: str | None = None
    batch_size: int | None = None
    retry_enabled: bool | None = None
    retry_max_attempts: int | None = None
    api_behaviour: str | None = None
    collect_mode: str | None = None
    collection_size: int | None = None
    history_enabled: bool | None = None
    settings: dict[str, Any] | None = None


class ProfileDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["fa-sync-profiles"]
    version: Literal[1]
    profiles: list[ProfileSpec]


@dataclass(frozen=True)
class ImportResult:
    name: str
    action: Literal["created", "updated", "unchanged"]


def export_document(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON document of profile_list_named rows (names, never ids or secrets)."""
    profiles = []
    for row in rows:
        spec: dict[str, Any] = {"name": row["name"]}
        spec["client"] = row["client_name"]
        spec["magento"] = row["magento_name"]
        spec.update({c: row[c] for c in COLUMNS})
        profiles.append(spec)
    return {"format": FORMAT, "version": VERSION, "profiles": profiles}


async def export_profiles(pool: asyncpg.Pool, names: Sequence[str]) -> dict[str, Any]:
    """Export the named profiles (all when none are named); an unknown name is refused."""
    async with translated("profile export"):
        rows = await pool.fetch(QUERIES["profile_list_named"], list(names) or None)
    missing = sorted(set(names) - {r["name"] for r in rows})
    if missing:
        raise ConfigError(f"profile export: no profile named {', '.join(map(repr, missing))}")
    return export_document(rows)


def parse_document(doc: Any, source: str) -> ProfileDocument:
    """Validate a document's shape; the first problem becomes one line naming where it is."""
    try:
        parsed = ProfileDocument.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {where}: {err['msg']}") from None
    names = [p.name for p in parsed.profiles]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{source}: profile {twice[0]!r} appears twice")
    return parsed


async def import_profiles(
    pool: asyncpg.Pool, document: ProfileDocument, *, dry_run: bool
) -> list[ImportResult]:
    """Create or update every profile of the document in one transaction (rolled back on
    any refusal, and always for a dry run)."""
    results = []
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for spec in document.profiles:
                async with translated(f"profile {spec.name}"):
                    results.append(await _apply(conn, spec))
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()
    return results


async def _apply(conn: asyncpg.Connection, spec: ProfileSpec) -> ImportResult:
    client_id = await _id_of(conn, "client_get_by_name", spec.client, "FreeAgent client")
    connection_id = await _id_of(conn, "connection_get_by_name", spec.magento, "Magento connection")
    before = await conn.fetchrow(QUERIES["profile_list_named"], [spec.name])
    if before is not None and _unchanged(before, spec):
        return ImportResult(spec.name, "unchanged")
    if before is None:
        await conn.fetchrow(
            QUERIES["profile_insert"],
            spec.name,
            spec.type,
            client_id,
            connection_id,
            spec.schedule,
            spec.settings,
        )
    elif before["type"] != spec.type:
        raise ConfigError(
            f"profile {spec.name}: type cannot be changed from {before['type']!r} "
            f"to {spec.type!r} (delete the profile and import it again)"
        )
    await conn.execute(
        QUERIES["profile_update"],
        spec.name,
        spec.enabled,
        spec.schedule,
        spec.timezone,
        spec.batch_size,
        spec.retry_enabled,
        spec.retry_max_attempts,
        spec.api_behaviour,
        spec.collect_mode,
        spec.collection_size,
        spec.history_enabled,
        client_id,
        connection_id,
        spec.settings,
    )
    problem = validate_profile(
        Profile.from_row(await conn.fetchrow(QUERIES["profile_get_by_name"], spec.name))
    )
    if problem:
        raise ConfigError(problem)
    return ImportResult(spec.name, "created" if before is None else "updated")


async def _id_of(conn: asyncpg.Connection, query: str, name: str, what: str) -> int:
    row = await conn.fetchrow(QUERIES[query], name)
    if row is None:
        raise ConfigError(f"{what} {name!r} does not exist (create it before importing)")
    return int(row["id"])


def _unchanged(row: Mapping[str, Any], spec: ProfileSpec) -> bool:
    """True when every column the spec gives already has that value (no write, no reload)."""
    given = spec.model_dump(exclude_none=True)
    current = export_document([row])["profiles"][0]
    return all(current.get(k) == v for k, v in given.items())
