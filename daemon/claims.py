"""The statements of a fire before its run starts, shared by fires that arrive together.

Hundreds of profiles on one schedule fire in the same second. Each fire reads its profile,
claims the fire and, if refused, asks why; sent one by one, the last claim would wait behind
every other fire's statements (and behind the first runs' own, in the pool's queue), which is
what made fires seconds late. Batched (daemon/db/batched.py) sends the fires queued at that
moment as one statement per step; each fire still gets its own answer, and the claim itself is
unchanged: profile_run's unique constraints decide, fire by fire, across replicas.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from daemon.db.batched import Batched
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger

#: A fire: (profile id, scheduled_for).
Fire = tuple[int, datetime]


class FireClaims:
    """Profile reads, claims and refusal look-ups of one replica, batched."""

    def __init__(self, *, pool: asyncpg.Pool, replica_id: str, lease_seconds: float) -> None:
        self._pool = pool
        self._replica_id = replica_id
        self._lease_seconds = lease_seconds
        self.profiles: Batched[int, asyncpg.Record | None] = Batched(self._read_profiles)
        self.claims: Batched[tuple[int, RunTrigger, datetime], asyncpg.Record | None] = Batched(
            self._claim_many
        )
        self.refusals: Batched[Fire, asyncpg.Record | None] = Batched(self._refusals)

    async def profile(self, profile_id: int) -> asyncpg.Record | None:
        """The profile with its breaker (profiles_for_fire), or None if it is gone."""
        return await self.profiles(profile_id)

    async def claim(
        self, profile_id: int, trigger: RunTrigger, scheduled_for: datetime
    ) -> asyncpg.Record | None:
        """The claimed run's row, or None when the fire was refused."""
        return await self.claims((profile_id, trigger, scheduled_for))

    async def refusal(self, profile_id: int, scheduled_for: datetime) -> asyncpg.Record | None:
        """Why a claim was refused (run_claim_refused), or None if nothing refuses it now."""
        return await self.refusals((profile_id, scheduled_for))

    async def _read_profiles(self, ids: list[int]) -> list[asyncpg.Record | None]:
        rows = await self._pool.fetch(QUERIES["profiles_for_fire"], sorted(set(ids)))
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(i) for i in ids]

    async def _claim_many(
        self, fires: list[tuple[int, RunTrigger, datetime]]
    ) -> list[asyncpg.Record | None]:
        rows = await self._pool.fetch(
            QUERIES["run_claim_many"],
            [profile_id for profile_id, _, _ in fires],
            [str(trigger) for _, trigger, _ in fires],
            [scheduled_for for _, _, scheduled_for in fires],
            self._replica_id,
            self._lease_seconds,
        )
        by_fire = {(row["profile_id"], row["scheduled_for"]): row for row in rows}
        # Two fires of one profile in a batch: the unique constraints let one in; the other
        # is refused as it would have been a moment later, and asks why like any refusal.
        # (pop: one row is one claim, even for two callers naming the very same fire.)
        return [by_fire.pop((profile_id, at), None) for profile_id, _, at in fires]

    async def _refusals(self, fires: list[Fire]) -> list[asyncpg.Record | None]:
        rows = await self._pool.fetch(
            QUERIES["run_claim_refused"], [f[0] for f in fires], [f[1] for f in fires]
        )
        by_fire = {(row["profile_id"], row["fire"]): row for row in rows}
        return [by_fire.get(fire) for fire in fires]
