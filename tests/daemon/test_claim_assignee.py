"""Replicas firing the same profiles split them: each fire has one assignee, which claims first.

Without one, the replica whose first round trip came back first took a whole wave of fires in
one statement and exported them through its own run slots while the others idled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import asyncpg

from daemon.claims import FireClaims, assignee, session_name

THREE = ("fa-sync/host-a:11", "fa-sync/host-b:12", "fa-sync/host-c:13")


def test_each_replica_is_assignee_of_an_equal_share() -> None:
    """20 profiles on three replicas: 7, 7 and 6 (a 2.5x scale-out needs no share above 8)."""
    shares = Counter(assignee(profile_id, THREE) for profile_id in range(1, 21))
    assert sorted(shares.values()) == [6, 7, 7]


def test_a_lone_replica_is_assignee_of_everything() -> None:
    """One daemon claims every fire at once (no waiting on replicas that do not exist)."""
    assert {assignee(p, THREE[:1]) for p in range(1, 101)} == {THREE[0]}


def test_session_name_fits_application_name() -> None:
    """PostgreSQL keeps 63 bytes of application_name: the name compared is the name kept."""
    assert len(session_name("x" * 100).encode()) == 63
    assert session_name("host:7").startswith("fa-sync/")


async def test_replicas_are_read_from_their_listen_sessions(
    pool: asyncpg.Pool, database_dsn: str
) -> None:
    """A session announcing another replica makes it the assignee of some profiles."""
    claims = FireClaims(pool=pool, replica_id="host-a:11", lease_seconds=30)
    assert claims.replicas == (session_name("host-a:11"),)
    other = await asyncpg.connect(
        database_dsn, server_settings={"application_name": session_name("host-b:12")}
    )
    try:
        seen = await claims.refresh_replicas()
        assert seen == (session_name("host-a:11"), session_name("host-b:12"))
        mine = [p for p in range(1, 101) if claims.claims_first(p)]
        assert 0 < len(mine) < 100
    finally:
        await other.close()


async def test_a_connected_assignee_is_live_and_a_gone_one_is_not(
    pool: asyncpg.Pool, database_dsn: str
) -> None:
    """Takeover waits longer for an assignee still connected (only slow to claim) than for
    one whose session is gone (dead: its fires are taken after the spread)."""
    claims = FireClaims(pool=pool, replica_id="host-a:11", lease_seconds=30)
    other = await asyncpg.connect(
        database_dsn, server_settings={"application_name": session_name("host-b:12")}
    )
    try:
        await claims.refresh_replicas()
        theirs = next(p for p in range(1, 100) if not claims.claims_first(p))
        mine = next(p for p in range(1, 100) if claims.claims_first(p))
        assert await claims.assignee_live(theirs)
        assert await claims.assignee_live(mine)
    finally:
        await other.close()
    while await pool.fetchval(  # noqa: ASYNC110 (a closed session leaves pg_stat_activity on its own)
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        session_name("host-b:12"),
    ):
        await asyncio.sleep(0.01)
    assert not await claims.assignee_live(theirs)  # the assignment still names it: gone


async def test_a_fire_claimed_by_another_replica_is_seen_as_taken(pool: asyncpg.Pool) -> None:
    """A replica that is not a fire's assignee asks whether the fire is taken before trying to
    take it over: a fire with a run (claimed or skipped) is, the next fire of the same profile
    and another profile's fire are not; fires asking together get their own answers."""
    profile = await pool.fetchval(
        "INSERT INTO profile (name, type) VALUES ('p', 'freeagent_contact_export') RETURNING id"
    )
    other = await pool.fetchval(
        "INSERT INTO profile (name, type) VALUES ('q', 'freeagent_contact_export') RETURNING id"
    )
    at = await pool.fetchval("SELECT date_trunc('minute', now())")
    await pool.execute(
        "INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, owner)"
        " VALUES ($1, 'schedule', $2, 'running', 'fa-sync/host-b:12')", profile, at,
    )  # fmt: skip
    claims = FireClaims(pool=pool, replica_id="host-a:11", lease_seconds=30)
    later = at + timedelta(minutes=1)
    answers = await asyncio.gather(
        claims.fire_taken(profile, at), claims.fire_taken(profile, later),
        claims.fire_taken(other, at),
    )  # fmt: skip
    assert answers == [True, False, False]
