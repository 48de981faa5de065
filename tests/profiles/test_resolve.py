"""The identity lock that keeps two workers from creating one person twice."""

from __future__ import annotations

import asyncpg
import pytest

from daemon.errors import TransientApiError
from profiles.freeagent_contact_export.identity import Identity, lock_key
from profiles.freeagent_contact_export.resolve import identity_lock


def identity_key(client_id: int, email: str) -> int:
    return lock_key(client_id, Identity(key=f"email:{email}", lock=email))


async def test_a_stuck_holder_makes_waiters_give_up_transiently(pool: asyncpg.Pool) -> None:
    """A waiter gives up after wait_seconds with a transient error, so its row retries later."""
    key = identity_key(1, "stuck@example.com")
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock($1)", key)
        with pytest.raises(TransientApiError, match="lock"):
            async with identity_lock(pool, key, wait_seconds=0.2):
                pass
