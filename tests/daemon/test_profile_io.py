"""Profiles as code: `profile export` and `profile import`."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.db.pool import create_pool, drop_database, recreate_database
from tests.clirun import fa_sync

Cli = Callable[..., Awaitable[tuple[int, str, str]]]
SECRETS = ["client-secret-1", "access-1", "refresh-1", "magento-token-1"]
IGNORED = {"id", "created_at", "updated_at", "client_id", "connection_id"}


async def seed_connections(pool: asyncpg.Pool) -> None:
    """The client and the shop every profile names (secrets that must never be exported)."""
    await pool.execute(
        """INSERT INTO freeagent_client (name, client_id, client_secret, access_token,
               refresh_token) VALUES ('acme', 'id-1', $1, $2, $3);
           INSERT INTO magento_connection (name, base_url, access_token)
           VALUES ('shop', 'https://shop.example.com', $4);""".replace("$1", f"'{SECRETS[0]}'")
        .replace("$2", f"'{SECRETS[1]}'")
        .replace("$3", f"'{SECRETS[2]}'")
        .replace("$4", f"'{SECRETS[3]}'")
    )


async def seed_profiles(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """INSERT INTO profile (name, type, enabled, schedule, timezone, batch_size,
               retry_enabled, retry_max_attempts, api_behaviour, collect_mode, collection_size,
               history_enabled, client_id, connection_id, settings)
           SELECT v.*, c.id, m.id, v2.settings
             FROM (VALUES ('uk', 'freeagent_contact_export', true, '*/5 * * * *',
                           'Europe/London', 200, false, 7, 'create', 'replace', 50, false),
                          ('us', 'freeagent_contact_export', false, '0 9 * * 1-5',
                           'America/New_York', 100, true, 3, 'upsert', 'append', 100, true))
                  AS v(name, type, enabled, schedule, timezone, batch_size, retry_enabled,
                       retry_max_attempts, api_behaviour, collect_mode, collection_size,
                       history_enabled),
                  (VALUES ('{"contact": {"default_payment_terms_in_days": 14}}'::jsonb))
                  AS v2(settings),
                  freeagent_client c, magento_connection m"""
    )


async def profile_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM profile ORDER BY name")
    return [{k: v for k, v in dict(r).items() if k not in IGNORED} for r in rows]


@pytest.fixture
async def empty_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A second database with the same client and shop but no profiles."""
    name = f"fa_sync_t_{uuid.uuid4().hex[:12]}"
    dsn = await recreate_database(pg_server_dsn, name, template=template_db)
    pool = await create_pool(dsn, max_size=2)
    try:
        await seed_connections(pool)
    finally:
        await pool.close()
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[[str], Cli]:
    """`run_cli(dsn)(ARGS...)` runs fa-sync against that database."""

    def bound(dsn: str) -> Cli:
        async def run(*args: str) -> tuple[int, str, str]:
            # The seeded rows hold plain secrets, as an earlier version stored them: with the
            # tests' key, the CLI seals them at start (without one it would refuse to run).
            return await fa_sync(*args, dsn=dsn, cwd=tmp_path)

        return run

    return bound


@pytest.fixture
async def exported(pool: asyncpg.Pool, database_dsn: str, run_cli, tmp_path: Path) -> Path:
    """The source database's profiles, exported to a file."""
    await seed_connections(pool)
    await seed_profiles(pool)
    path = tmp_path / "profiles.json"
    code, _out, err = await run_cli(database_dsn)("profile", "export", "--output", str(path))
    assert code == 0, err
    return path


async def test_export_import_round_trip(
    pool: asyncpg.Pool, exported: Path, empty_dsn: str, run_cli
) -> None:
    """Export then import into an empty database gives the same rows, ids and times aside."""
    code, out, err = await run_cli(empty_dsn)("profile", "import", str(exported))
    assert code == 0, err
    assert "uk: created" in out and "us: created" in out
    target = await create_pool(empty_dsn, max_size=1)
    try:
        assert await profile_rows(target) == await profile_rows(pool)
    finally:
        await target.close()


def test_export_leaves_secrets_out(exported: Path) -> None:
    """The file names the client and the shop; no token or secret is in it."""
    text = exported.read_text()
    assert not [s for s in SECRETS if s in text]
    doc = json.loads(text)
    assert {(p["client"], p["magento"]) for p in doc["profiles"]} == {("acme", "shop")}
    assert "id" not in doc["profiles"][0] and "client_id" not in doc["profiles"][0]


async def test_export_to_stdout_of_named_profiles(pool, database_dsn, exported, run_cli) -> None:
    """`profile export NAME` writes only that profile, to stdout."""
    code, out, err = await run_cli(database_dsn)("profile", "export", "us")
    assert code == 0, err
    assert [p["name"] for p in json.loads(out)["profiles"]] == ["us"]


async def test_dry_run_changes_nothing(exported: Path, empty_dsn: str, run_cli) -> None:
    """`--dry-run` reports what would happen and leaves the database as it was."""
    code, out, err = await run_cli(empty_dsn)("profile", "import", str(exported), "--dry-run")
    assert code == 0, err
    assert "uk: would be created" in out
    target = await asyncpg.connect(empty_dsn)
    try:
        assert await target.fetchval("SELECT count(*) FROM profile") == 0
    finally:
        await target.close()


def rewrite(path: Path, change: dict[str, Any]) -> None:
    """A valid change to the first profile, and a new profile with `change` after it."""
    doc = json.loads(path.read_text())
    doc["profiles"][0]["batch_size"] = 999  # valid: must not land either
    doc["profiles"].append({**doc["profiles"][1], "name": "new", **change})
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 2000}, "batch_size must be between 1 and 1000"),
        ({"schedule": "0 0 31 2 *"}, "never fires"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"settings": {"contcat": {}}}, "contcat"),
        ({"client": "nobody"}, "FreeAgent client 'nobody' does not exist"),
        ({"batch_size": "200"}, "batch_size"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_a_bad_file_is_refused_whole(
    pool: asyncpg.Pool,
    database_dsn: str,
    exported: Path,
    run_cli,
    change: dict[str, Any],
    message: str,
) -> None:
    """One bad value in the last profile: one clear line, exit 1, no profile changed."""
    rewrite(exported, change)
    before = await profile_rows(pool)
    code, out, err = await run_cli(database_dsn)("profile", "import", str(exported))
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert await profile_rows(pool) == before


async def test_import_updates_by_name(pool, database_dsn, exported, run_cli) -> None:
    """Importing over existing profiles updates the changed ones and leaves the rest."""
    doc = json.loads(exported.read_text())
    doc["profiles"][0]["schedule"] = "*/30 * * * *"
    exported.write_text(json.dumps(doc))
    code, out, err = await run_cli(database_dsn)("profile", "import", str(exported))
    assert code == 0, err
    assert "uk: updated" in out and "us: unchanged" in out
    assert await pool.fetchval("SELECT schedule FROM profile WHERE name = 'uk'") == "*/30 * * * *"
