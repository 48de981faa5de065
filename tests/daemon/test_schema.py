"""The schema and the named queries."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from daemon.db.pool import migrate, translated
from daemon.db.queries import QUERIES, load_queries, parse_queries
from daemon.errors import ConfigError


def test_queries_file_parses_and_names_are_unique() -> None:
    """Every query has a name and a body."""
    queries = load_queries()
    assert "run_claim_many" in queries and "entity_claim_batch" in queries
    assert all(sql.strip() for sql in queries.values())


def test_duplicate_query_name_is_rejected() -> None:
    """A name defined twice is a bug, caught at load time."""
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


async def test_every_query_prepares_against_the_schema(pool: asyncpg.Pool) -> None:
    """Each named query is valid SQL for the current schema."""
    async with pool.acquire() as conn:
        for name, sql in load_queries().items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:  # pragma: no cover - shows which one
                pytest.fail(f"query {name}: {exc}")


async def test_migrate_is_idempotent(pool: asyncpg.Pool) -> None:
    """Applying schema.sql again changes nothing and raises nothing."""
    await migrate(pool)
    await migrate(pool)


async def test_migrate_brings_a_pre_mirror_database_up_to_date(pool: asyncpg.Pool) -> None:
    """A database made before mirror (old api_behaviour check, no removal statuses or run
    counts) accepts mirror after migrate, and migrating again keeps it so."""
    await pool.execute(
        """ALTER TABLE profile
               DROP CONSTRAINT "api_behaviour must be upsert, create, update or mirror",
               ADD CONSTRAINT "api_behaviour must be upsert, create or update"
                   CHECK (api_behaviour IN ('upsert', 'create', 'update'));
           ALTER TABLE profile_run DROP COLUMN removed, DROP COLUMN drifted;
           DELETE FROM fa_sync_schema;"""
    )
    with pytest.raises(ConfigError, match="upsert, create or update"):
        await _insert_profile(pool, api_behaviour="mirror")
    await migrate(pool)
    await pool.execute("DELETE FROM fa_sync_schema")
    await migrate(pool)
    await _insert_profile(pool, api_behaviour="mirror")
    assert await pool.fetchval("SELECT count(*) FROM profile_run WHERE removed + drifted > 0") == 0
    names = await pool.fetchval("SELECT enum_range(NULL::entity_status)::text")
    for status in ("removed", "hidden", "deleted", "needs_review"):
        assert status in names


async def test_migrating_an_up_to_date_schema_takes_no_table_lock(
    pool: asyncpg.Pool, database_dsn: str
) -> None:
    """A replica starting beside running ones leaves their tables alone when the schema is
    current: DDL locks there deadlocked with ledger writes and killed the starting daemon."""
    busy = await asyncpg.connect(database_dsn)
    try:
        async with busy.transaction():
            # A running replica mid-transaction: collect's upserts hold ledger and profile locks.
            await busy.execute(
                "LOCK TABLE profile, profile_run, contact_entity IN ROW EXCLUSIVE MODE"
            )
            await asyncio.wait_for(migrate(pool), 10)
    finally:
        await busy.close()


async def _insert_profile(pool: asyncpg.Pool, **cols: object) -> None:
    names = ", ".join(["name", "type", *cols])
    params = ", ".join(f"${i}" for i in range(1, len(cols) + 3))
    async with translated("profile p"):
        await pool.execute(
            f"INSERT INTO profile ({names}) VALUES ({params})",
            "p",
            "freeagent_contact_export",
            *cols.values(),
        )


@pytest.mark.parametrize(
    ("cols", "message"),
    [
        ({"schedule": "* * *"}, "schedule must be cron"),  # too few fields
        ({"schedule": "every day"}, "schedule must be cron"),  # not cron at all
        ({"batch_size": 0}, "batch_size must be between 1 and 1000"),
        ({"batch_size": 1001}, "batch_size must be between 1 and 1000"),
        ({"collection_size": 10}, "collection_size must be between 25 and 100"),
        ({"api_behaviour": "merge"}, "api_behaviour must be upsert, create, update or mirror"),
        ({"timezone": "Mars/Olympus"}, 'unknown timezone "Mars/Olympus"'),
    ],
)
async def test_bad_profile_values_are_rejected_with_a_readable_message(
    pool: asyncpg.Pool, cols: dict[str, object], message: str
) -> None:
    """CHECK constraints and the guard trigger explain what is wrong."""
    with pytest.raises(ConfigError, match=message):
        await _insert_profile(pool, **cols)


async def test_profile_type_cannot_change(pool: asyncpg.Pool) -> None:
    """The type is fixed at creation, as in the product we replace."""
    await _insert_profile(pool)
    with pytest.raises(ConfigError, match="type cannot be changed"):
        async with translated("profile p"):
            await pool.execute("UPDATE profile SET type = 'other' WHERE name = 'p'")


async def test_rate_acquire_grants_up_to_the_limit_then_asks_to_wait(pool: asyncpg.Pool) -> None:
    """The shared budget grants per_minute requests, then returns a wait."""
    waits = [
        await pool.fetchval(QUERIES["rate_acquire"], "k", 3, 100, 60.0, 3600.0) for _ in range(4)
    ]
    assert waits[:3] == [0, 0, 0]
    assert 0 < waits[3] <= 60
