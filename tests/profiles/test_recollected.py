"""A record Magento changes while its row is out for export is never buried by the outcome.

The ledger statements themselves: the upsert flags a row out for export `recollected`, a claim
clears the flag (it reads the newer record), and whatever outcome the older record gets, the
row goes back to the queue, first in line; a failure of the older record does not dead-letter
the newer one. (tests/daemon/test_webhook.py sends a second save during a held POST.)
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from daemon.db.queries import QUERIES

FENCE = 3


async def _claimed_row(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """A profile, a running run and a row that run has claimed; their ids."""
    profile = await conn.fetchval(
        "INSERT INTO profile (name, type) VALUES ('p', 'freeagent_contact_export') RETURNING id"
    )
    run = await conn.fetchval(
        "INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, fence)"
        " VALUES ($1, 'cli', now(), 'running', $2) RETURNING id",
        profile,
        FENCE,
    )
    await _upsert(conn, profile, {"lastname": "Old"})
    rows = await conn.fetch(
        QUERIES["entity_claim_batch"], profile, run, FENCE, None, 10, await _now(conn), 300.0
    )
    assert len(rows) == 1
    return profile, run, rows[0]["id"]


async def _now(conn: asyncpg.Connection) -> Any:
    return await conn.fetchval("SELECT now()")


async def _upsert(conn: asyncpg.Connection, profile: int, data: dict[str, Any]) -> None:
    await conn.execute(
        QUERIES["entity_upsert"], profile, ["customer:1"], [1], [1], ["ann@x.io"], [data], [{}]
    )


async def _row(conn: asyncpg.Connection, row_id: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT status::text, priority, metadata, source_data FROM contact_entity WHERE id = $1",
        row_id,
    )


@pytest.mark.parametrize("outcome", ["created", "updated", "unchanged", "skipped"])
async def test_an_outcome_of_the_older_record_requeues_the_newer(
    pool: asyncpg.Pool, outcome: str
) -> None:
    async with pool.acquire() as conn:
        profile, run, row_id = await _claimed_row(conn)
        await _upsert(conn, profile, {"lastname": "New"})
        row = await _row(conn, row_id)
        assert (row["status"], row["metadata"].get("recollected")) == ("processing", True)
        done = await conn.fetch(
            QUERIES["entity_finish_many"], run, FENCE,
            [{"id": row_id, "status": outcome, "url": "https://fa/contacts/1", "hash": "h",
              "error": None, "meta": {}, "entry": {"outcome": outcome}}],
            0, [],
        )  # fmt: skip
        assert [r["id"] for r in done] == [row_id]
        row = await _row(conn, row_id)
        assert (row["status"], row["priority"]) == ("pending", True)
        assert "recollected" not in row["metadata"]
        assert row["source_data"] == {"lastname": "New"}


async def test_a_failure_of_the_older_record_does_not_dead_letter_the_newer(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        profile, run, row_id = await _claimed_row(conn)
        await _upsert(conn, profile, {"lastname": "New"})
        await conn.fetchval(
            QUERIES["entity_fail"], row_id, run, FENCE, "failed", {"message": "422"}, None,
            {"outcome": "failed"},
        )  # fmt: skip
        row = await _row(conn, row_id)
        assert (row["status"], row["priority"]) == ("pending", True)


async def test_a_claim_reads_the_newer_record_and_clears_the_flag(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        profile, run, row_id = await _claimed_row(conn)
        await _upsert(conn, profile, {"lastname": "New"})
        await conn.execute(QUERIES["entity_release_run"], run)  # the run stopped meanwhile
        rows = await conn.fetch(
            QUERIES["entity_claim_batch"], profile, run, FENCE, None, 10, await _now(conn), 300.0
        )
        assert rows[0]["source_data"] == {"lastname": "New"}
        assert "recollected" not in rows[0]["metadata"]
        await conn.fetch(
            QUERIES["entity_finish_many"], run, FENCE,
            [{"id": row_id, "status": "created", "url": "https://fa/contacts/1", "hash": "h",
              "error": None, "meta": {}, "entry": {}}],
            0, [],
        )  # fmt: skip
        assert (await _row(conn, row_id))["status"] == "created"


async def test_an_unchanged_record_sets_no_flag(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        profile, _, row_id = await _claimed_row(conn)
        await _upsert(conn, profile, {"lastname": "Old"})
        assert "recollected" not in (await _row(conn, row_id))["metadata"]
