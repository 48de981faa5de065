"""The statements of a fire before its run starts, shared by fires that arrive together.

Hundreds of profiles on one schedule fire in the same second. Each fire reads its profile,
claims the fire and, if refused, asks why; sent one by one, the last claim would wait behind
every other fire's statements (and behind the first runs' own, in the pool's queue), which is
what made fires seconds late. Batched (daemon/db/batched.py) sends the fires queued at that
moment as one statement per step; each fire still gets its own answer, and the claim itself is
unchanged: profile_run's unique constraints decide, fire by fire, across replicas.

Who claims first. Every replica fires every profile; had each simply claimed at once (or
after a random moment), the replica whose first round trip came back first would take a
whole wave of fires in one statement, and then export them through its own few run slots
while the others idle: three replicas did the work of one. So each scheduled fire has an
assignee among the live replicas, profiles dealt out to them in turn: it claims at once,
the others only after FA_SYNC_CLAIM_SPREAD_SECONDS, if the fire is still free and its
assignee's session is gone, or after TAKEOVER_GRACE times longer if it is connected but has
not claimed (a wave of hundreds of fires takes a busy replica longer than the spread to
claim its share; taken from it, the shares end up uneven). Replicas see each other through
the application_name of their LISTEN sessions in pg_stat_activity, read at every profile
reload; a profile keeps its assignee as long as the set of replicas stays the same.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from daemon.db.batched import Batched
from daemon.db.queries import QUERIES
from daemon.db.records import RunTrigger

#: A fire: (profile id, scheduled_for).
Fire = tuple[int, datetime]
#: A fire whose assignee is still connected is taken over after this many spreads.
TAKEOVER_GRACE = 10
#: Start of the application_name of each daemon's LISTEN session (pg_stat_activity).
SESSION_PREFIX = "fa-sync/"


def session_name(replica_id: str) -> str:
    """The application_name a replica's LISTEN session announces it by (PostgreSQL keeps
    63 bytes of it)."""
    return (SESSION_PREFIX + replica_id).encode()[:63].decode(errors="ignore")


def assignee(profile_id: int, replicas: tuple[str, ...]) -> str:
    """The replica (session name, of the sorted live ones) that claims the profile's
    scheduled fires first: profile ids are dealt out in turn, so N replicas get shares that
    differ by at most one profile of any run of consecutive ids, which a hash would not
    (20 profiles hashed over 3 replicas often give one of them 9 or more)."""
    return replicas[profile_id % len(replicas)]


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
        self._me = session_name(replica_id)
        #: Session names of the live replicas, this one always among them.
        self.replicas: tuple[str, ...] = (self._me,)
        self.assignees_live: Batched[int, bool] = Batched(self._assignees_live)
        self.taken: Batched[Fire, bool] = Batched(self._taken)

    async def _sessions(self) -> set[str]:
        """Session names of the replicas connected now (their LISTEN sessions), this one's
        included."""
        rows = await self._pool.fetch(QUERIES["replica_sessions"], SESSION_PREFIX + "%")
        return {self._me, *(r["application_name"] for r in rows)}

    async def refresh_replicas(self) -> tuple[str, ...]:
        """Read which replicas are connected now: the assignments follow them."""
        self.replicas = tuple(sorted(await self._sessions()))
        return self.replicas

    def claims_first(self, profile_id: int) -> bool:
        """Whether this replica is the one to claim the profile's scheduled fires at once."""
        return assignee(profile_id, self.replicas) == self._me

    async def assignee_live(self, profile_id: int) -> bool:
        """Whether the profile's assignee is still connected now (fires waking together share
        one read): a live one is only slow to claim and gets longer; a gone one does not."""
        return await self.assignees_live(profile_id)

    async def _assignees_live(self, ids: list[int]) -> list[bool]:
        live = await self._sessions()
        return [assignee(i, self.replicas) in live for i in ids]

    async def fire_taken(self, profile_id: int, scheduled_for: datetime) -> bool:
        """Whether a replica (the assignee, as a rule) has claimed or skipped this fire: then
        there is nothing to take over (fires checking together share one read), and the
        profile read, the claim and the refusal look-up a takeover costs are saved."""
        return await self.taken((profile_id, scheduled_for))

    async def _taken(self, fires: list[Fire]) -> list[bool]:
        rows = await self._pool.fetch(
            QUERIES["fires_taken"], [f[0] for f in fires], [f[1] for f in fires]
        )
        taken = {(row["profile_id"], row["scheduled_for"]) for row in rows}
        return [fire in taken for fire in fires]

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
