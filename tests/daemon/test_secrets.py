"""Secrets at rest: sealed with FA_SYNC_SECRET_KEY, opened only by the right key, never plain."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import ClientSession
from cryptography.fernet import Fernet
from yarl import URL

from daemon.db.queries import QUERIES
from daemon.secretbox import PREFIX, embedded_key
from simulators.stack import DEMO_CLIENT_SECRET, DEMO_MAGENTO_TOKEN, Stack
from tests.secretkeys import TEST_SECRET_KEY, sealing_box

#: The stored access token has expired: the next request refreshes the pair.
EXPIRE = "UPDATE freeagent_client SET access_token_expires_at = now() - interval '1 hour'"
SECRET_COLUMNS = {
    "freeagent_client": ("client_secret", "access_token", "refresh_token"),
    "magento_connection": ("access_token", "consumer_secret", "access_token_secret"),
}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def fa_sync(database_dsn: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `fa-sync ARGS` against this test's database with exactly the key variables given."""

    async def run(
        *args: str, key: str | None = TEST_SECRET_KEY, old: str = "", **env: str
    ) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith("FA_SYNC_")}
        base |= {"DATABASE_URL": database_dsn, "COLUMNS": "400", "FA_SYNC_LOG_FORMAT": "json"}
        base |= {"FA_SYNC_SECRET_KEY": key} if key is not None else {}
        base |= {"FA_SYNC_SECRET_KEYS_OLD": old} if old else {}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            *args,
            env={**base, **env},
            cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return Result(proc.returncode or 0, out.decode(), err.decode())

    return run


async def _stored(pool: asyncpg.Pool) -> list[str]:
    """Every non-null value of every secret column."""
    values: list[str] = []
    for table, columns in SECRET_COLUMNS.items():
        for row in await pool.fetch(f"SELECT {', '.join(columns)} FROM {table}"):
            values += [v for v in row.values() if v is not None]
    return values


async def _every_text(pool: asyncpg.Pool) -> str:
    """Every row of every table of the database, as text (what a dump would hold)."""
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    parts = []
    for t in tables:
        rows = await pool.fetch(f'SELECT t::text AS r FROM "{t["tablename"]}" t')
        parts += [r["r"] for r in rows]
    return "\n".join(parts)


def _one_line_error(result: Result, words: str) -> None:
    assert result.code == 1, result.out + result.err
    assert words in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


async def test_export_uses_opened_tokens_and_a_refresh_stores_the_new_pair_sealed(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """An export with an expired token refreshes it and sends the opened token; every
    secret column holds only sealed values, the new refresh token too."""
    before = await pool.fetchrow("SELECT refresh_token FROM freeagent_client")
    await pool.execute(
        "UPDATE freeagent_client SET access_token_expires_at = now() - interval '1 hour'"
    )
    outcome = await run_profile(stack.profile_id)
    assert outcome.status == "complete" and stack.freeagent.contacts_list()
    assert stack.freeagent.refresh_count == 1
    after = await pool.fetchrow("SELECT refresh_token FROM freeagent_client")
    assert after["refresh_token"].startswith(PREFIX) and after != before
    box = sealing_box()
    assert box.open(after["refresh_token"]) != box.open(before["refresh_token"])
    assert all(v.startswith(PREFIX) for v in await _stored(pool))


async def test_the_database_holds_no_plain_secret(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """After an export with a token refresh, no table holds any secret in plain text."""
    await pool.execute(
        "UPDATE freeagent_client SET access_token_expires_at = now() - interval '1 hour'"
    )
    await run_profile(stack.profile_id)
    fa = stack.freeagent
    # Every token the simulator ever issued: a refresh ends the access token issued with the
    # refresh token it spent, which that refresh token still names.
    issued = {*fa._access, *fa._refresh, *(r.access for r in fa._refresh.values())}
    assert len(issued) == 4
    text = await _every_text(pool)
    hits = [s for s in [*issued, DEMO_CLIENT_SECRET, DEMO_MAGENTO_TOKEN] if s in text]
    assert hits == []


async def test_client_add_and_authorize_store_sealed_values(
    pool: asyncpg.Pool, stack: Stack, fa_sync
) -> None:
    """`client add` (secret from the environment) and `authorize --code` store sealed values
    that open to the secret and the issued tokens."""
    added = await fa_sync(
        "client", "add", "fresh", "--client-id", "demo-client", "--environment", "custom",
        "--base-url", stack.freeagent_url, "--redirect-uri", "https://example.com/cb",
        FA_SYNC_CLIENT_SECRET=DEMO_CLIENT_SECRET,
    )  # fmt: skip
    assert added.code == 0, added.err
    prompt = await fa_sync("client", "authorize", "fresh")
    approve = next(w for w in prompt.out.split() if "approve_app" in w)
    async with ClientSession() as session, session.get(approve, allow_redirects=False) as r:
        code = URL(r.headers["Location"]).query["code"]
    done = await fa_sync("client", "authorize", "fresh", "--code", code)
    assert done.code == 0, done.err
    row = await pool.fetchrow("SELECT * FROM freeagent_client WHERE name = 'fresh'")
    box = sealing_box()
    assert box.open(row["client_secret"]) == DEMO_CLIENT_SECRET
    assert box.open(row["access_token"]) in stack.freeagent._access
    assert DEMO_CLIENT_SECRET not in await _every_text(pool)


async def test_a_wrong_key_is_refused_at_start_with_one_line(stack: Stack, fa_sync) -> None:
    """Sealed rows and a key that does not open them: one clear line, exit 1."""
    result = await fa_sync("client", "list", key=Fernet.generate_key().decode())
    _one_line_error(result, "FA_SYNC_SECRET_KEY does not open the secrets")


async def test_a_missing_key_is_refused_at_start_with_one_line(stack: Stack, fa_sync) -> None:
    """Sealed rows and no key at all: one clear line, exit 1 (the daemon too)."""
    _one_line_error(await fa_sync("client", "list", key=None), "FA_SYNC_SECRET_KEY is not set")
    _one_line_error(await fa_sync("run", key=None), "FA_SYNC_SECRET_KEY is not set")


async def test_without_a_key_no_secret_is_stored(pool: asyncpg.Pool, fa_sync) -> None:
    """An empty database and no key: `client add` refuses and stores nothing."""
    result = await fa_sync(
        "client", "add", "c", "--client-id", "i", key=None, FA_SYNC_CLIENT_SECRET="plain-secret"
    )
    _one_line_error(result, "FA_SYNC_SECRET_KEY is not set")
    assert await pool.fetchval("SELECT count(*) FROM freeagent_client") == 0


async def test_rotate_key_then_the_old_key_can_go(
    pool: asyncpg.Pool, stack: Stack, fa_sync
) -> None:
    """rotate-key with the old key in FA_SYNC_SECRET_KEYS_OLD re-seals every value; then
    the new key alone opens them and the old one no longer does."""
    new = Fernet.generate_key().decode()
    before = await _stored(pool)
    rotated = await fa_sync("secrets", "rotate-key", key=new, old=TEST_SECRET_KEY)
    assert rotated.code == 0, rotated.err
    after = await _stored(pool)
    assert not set(before) & set(after)
    assert (await fa_sync("client", "list", key=new)).code == 0
    _one_line_error(await fa_sync("client", "list"), "does not open")
    opened = sealing_box().open
    assert sorted(map(opened, before)) == sorted(Fernet(new).decrypt(v[len(PREFIX) :]).decode()
                                                 for v in after)  # fmt: skip


async def _plain_rows(pool: asyncpg.Pool) -> None:
    """A client (with tokens) and a connection as versions before sealing stored them."""
    client = await pool.fetchrow(
        QUERIES["client_insert"], "old", "sandbox", None, "id", "plain-client-secret",
        "urn:ietf:wg:oauth:2.0:oob", 120, 3600, False,
    )  # fmt: skip
    soon = datetime.now(UTC) + timedelta(hours=1)
    await pool.execute(
        QUERIES["client_save_tokens"], client["id"], "plain-access", soon, "plain-refresh", None
    )
    await pool.execute(
        QUERIES["connection_insert"], "old", "https://shop.example", None, "plain-magento",
        "ck", "plain-consumer-secret", "plain-token-secret",
    )  # fmt: skip


async def test_db_migrate_seals_plain_rows_once_a_key_is_set(pool: asyncpg.Pool, fa_sync) -> None:
    """Plain rows of an earlier version: refused without a key; `db migrate` with a key
    seals every one, keeping the values and the token version."""
    await _plain_rows(pool)
    version = await pool.fetchval("SELECT token_version FROM freeagent_client")
    _one_line_error(await fa_sync("client", "list", key=None), "plain text")
    migrated = await fa_sync("db", "migrate")
    assert migrated.code == 0, migrated.err
    assert "6 plain secrets sealed" in migrated.out
    stored = await _stored(pool)
    assert len(stored) == 6 and all(v.startswith(PREFIX) for v in stored)
    assert sorted(map(sealing_box().open, stored)) == sorted(
        ["plain-client-secret", "plain-access", "plain-refresh", "plain-magento",
         "plain-consumer-secret", "plain-token-secret"]
    )  # fmt: skip
    assert "plain-" not in await _every_text(pool)
    assert await pool.fetchval("SELECT token_version FROM freeagent_client") == version


def test_the_embedded_key_is_made_once_and_private(tmp_path: Path) -> None:
    """The embedded database's key file is created mode 0600 and reused afterwards."""
    key = embedded_key(tmp_path / "pgdata")
    (path,) = tmp_path.glob("*.secret-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert embedded_key(tmp_path / "pgdata") == key
    Fernet(key)  # a valid key
