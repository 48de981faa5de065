"""entity_work_due: a run that finds nothing due ends early, so it must see every row the
export would claim (a row it missed would never be exported)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import asyncpg

from daemon.db.queries import QUERIES
from simulators.stack import Stack

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTLE = 300.0
STATUSES = ("pending", "processing", "creating", "created", "failed", "needs_review")
ATTEMPTS = (None, NOW - timedelta(minutes=1), NOW + timedelta(minutes=1))
INTENTS = (None, NOW - timedelta(hours=1), NOW - timedelta(seconds=10))


async def _claimable(conn: asyncpg.Connection, profile_id: int, run_id: int) -> bool:
    """Whether the export's own claims take anything now (undone by the caller)."""
    batch = await conn.fetch(
        QUERIES["entity_claim_batch"], profile_id, run_id, 1, None, 100, NOW, SETTLE
    )
    lane = await conn.fetch(QUERIES["entity_claim_priority"], profile_id, run_id, 1, NOW, 100)
    return bool(batch or lane)


async def test_work_due_sees_exactly_what_the_claims_take(pool: asyncpg.Pool, stack: Stack) -> None:
    """For one row in every status, priority, retry time, create intent and claim: the
    check says "due" exactly when entity_claim_batch or entity_claim_priority claims it."""
    run_id = 7
    cases = itertools.product(STATUSES, (False, True), ATTEMPTS, INTENTS, (None, run_id, 99))
    for status, priority, attempt_at, intent_at, claimed_by in cases:
        metadata = {"create_intent": {"at": intent_at.isoformat()}} if intent_at else {}
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(
                    """INSERT INTO contact_entity (profile_id, source_key, status, priority,
                                                   next_attempt_at, metadata, claimed_by_run)
                       VALUES ($1, 'customer:1', $2, $3, $4, $5::jsonb, $6)""",
                    stack.profile_id, status, priority, attempt_at, json.dumps(metadata),
                    claimed_by,
                )  # fmt: skip
                due = await conn.fetchval(
                    QUERIES["entity_work_due"], stack.profile_id, run_id, NOW, SETTLE
                )
                claimed = await _claimable(conn, stack.profile_id, run_id)
            finally:
                await tx.rollback()
        case = (status, priority, attempt_at, intent_at, claimed_by)
        assert due == claimed, case
