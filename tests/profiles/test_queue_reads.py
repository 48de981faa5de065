"""The export's per-batch statements read about a batch of the queue, never all of it.

A first sync claims a batch at a time and decides each batch's creates in one statement. Were
either to read every queued row or every FreeAgent contact of the client per batch, the first
sync would be quadratic in the shop's size. The statistics PostgreSQL plans with lag the
ledger during a first sync; here the tables are never analysed, as then. Reads are counted by
PostgreSQL itself (index entries read, pg_stat_user_indexes).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity
from tests.profiles.test_decide_creates import _decide, _world

QUEUED = 3000
BATCH = 100
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _entries_read(conn: asyncpg.Connection, table: str) -> int:
    """Index entries read from every index of `table` so far, this connection's included."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed as the statement ends
    return int(
        await conn.fetchval(
            "SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = $1", table
        )
    )


async def _queue(
    conn: asyncpg.Connection, profile: int, count: int, status: str, first: int = 1
) -> None:
    await conn.execute(
        """INSERT INTO contact_entity (profile_id, source_key, email, status)
           SELECT $1, 'customer:' || n, 'c' || n || '@x.io', $3::entity_status
             FROM generate_series($4::int, $4::int + $2 - 1) AS n""",
        profile, count, status, first,
    )  # fmt: skip


async def test_a_claim_reads_its_batch_not_the_queue(pool: asyncpg.Pool) -> None:
    """100 pending rows claimed from a ledger of 3,020, half of them already exported: the
    lowest pending ids, read off the queue index in order. The statistics say every row is
    pending (taken at the start of a first sync), which makes walking the primary key in id
    order look cheap: that walk reads every exported row before the first pending one."""
    async with pool.acquire() as conn:
        await conn.execute("SET stats_fetch_consistency = none")
        _client, _other, profiles, run = await _world(conn)
        await _queue(conn, profiles[0], 20, "pending")
        await conn.execute("ANALYZE contact_entity")
        await _queue(conn, profiles[0], QUEUED, "pending", first=21)
        await conn.execute(
            "UPDATE contact_entity SET status = 'created' WHERE id <= $1", QUEUED // 2
        )
        await conn.execute("VACUUM contact_entity")  # no dead entries; statistics unchanged
        before = await _entries_read(conn, "contact_entity")
        rows = await conn.fetch(
            QUERIES["entity_claim_batch"], profiles[0], run, 7, None, BATCH, NOW, 300.0
        )
        read = await _entries_read(conn, "contact_entity") - before
        lowest = await conn.fetch(
            "SELECT id FROM contact_entity WHERE profile_id = $1 AND status <> 'created'"
            " ORDER BY id LIMIT $2",
            profiles[0], BATCH,
        )  # fmt: skip
    assert sorted(r["id"] for r in rows) == [r["id"] for r in lowest]
    # the batch off the queue index, then one primary-key lookup per row for the UPDATE
    assert read < 3 * BATCH, f"{read} index entries read to claim {BATCH} of {QUEUED}"


async def test_a_claim_reads_its_batch_with_no_statistics_at_all(pool: asyncpg.Pool) -> None:
    """The ledger never analysed (autovacuum off, or not yet round to it) and half of it
    exported through processing and creating, as a first sync leaves it between batches:
    each claim reads about a batch. With no statistics the planner may walk another index of
    the profile's rows and sort them on the way (an incremental sort), every row per claim."""
    async with pool.acquire() as conn:
        await conn.execute("SET stats_fetch_consistency = none")
        _client, _other, profiles, run = await _world(conn)
        await _queue(conn, profiles[0], QUEUED, "pending")
        for status in ("processing", "creating", "created"):
            await conn.execute(
                "UPDATE contact_entity SET status = $2::entity_status WHERE id <= $1",
                QUEUED // 2, status,
            )  # fmt: skip
        claimed: list[int] = []
        reads: list[int] = []
        for _ in range(3):
            before = await _entries_read(conn, "contact_entity")
            rows = await conn.fetch(
                QUERIES["entity_claim_batch"], profiles[0], run, 7, None, BATCH, NOW, 300.0
            )
            reads.append(await _entries_read(conn, "contact_entity") - before)
            claimed += [r["id"] for r in rows]
    assert sorted(claimed) == list(range(QUEUED // 2 + 1, QUEUED // 2 + 1 + 3 * BATCH))
    # the first claim may step over the dead entries the exported rows left (and marks them
    # dead); the next ones read the batch and the rows already claimed
    assert max(reads[1:]) < 6 * BATCH, f"{reads} index entries read per claim of {BATCH}"


async def test_rows_another_run_held_are_claimed_first(pool: asyncpg.Pool) -> None:
    """A row a stopped run left in processing comes back before the pending queue."""
    async with pool.acquire() as conn:
        _client, _other, profiles, run = await _world(conn)
        await _queue(conn, profiles[0], 5, "pending")
        held = await conn.fetchval(
            """INSERT INTO contact_entity (profile_id, source_key, status, claimed_by_run)
               VALUES ($1, 'customer:held', 'processing', 99) RETURNING id""",
            profiles[0],
        )  # fmt: skip
        rows = await conn.fetch(
            QUERIES["entity_claim_batch"], profiles[0], run, 7, None, 2, NOW, 300.0
        )
    claimed = [r["id"] for r in rows]
    assert held in claimed and len(claimed) == 2


async def test_deciding_creates_probes_the_contacts_per_row(pool: asyncpg.Pool) -> None:
    """50 creates against 3,000 FreeAgent contacts of the client: one index probe per row,
    not a read of every contact (an anti-join hashing them all, once per batch)."""
    async with pool.acquire() as conn:
        await conn.execute("SET stats_fetch_consistency = none")
        client, _other, profiles, run = await _world(conn)
        await conn.execute(
            """INSERT INTO freeagent_contact (client_id, url, email, data)
               SELECT $1, 'https://api.example/v2/contacts/' || n, 'fa' || n || '@x.io', '{}'
                 FROM generate_series(1, $2) AS n""",
            client, QUEUED,
        )  # fmt: skip
        await _queue(conn, profiles[0], 50, "processing")
        await conn.execute("UPDATE contact_entity SET claimed_by_run = $1, claim_fence = 7", run)
        rows = [
            ContactEntity.from_row(r)
            for r in await conn.fetch("SELECT * FROM contact_entity ORDER BY id")
        ]
        before = await _entries_read(conn, "freeagent_contact")
        outcomes = await _decide(conn, client, run, 7, rows)
        read = await _entries_read(conn, "freeagent_contact") - before
    assert set(outcomes.values()) == {"marked"}
    assert read < 3 * len(rows), f"{read} contact index entries read to decide {len(rows)}"
