"""fa_decide_creates, the one-statement decision of a first sync, decides as the long way does.

- For any ledger, contact index and unsettled creates, the rows it commits a create intent for
  are exactly those the long way (identity locks, then match.py, then the in-flight check)
  would create; every other row comes back 'slow', untouched.
- It reads after taking the locks: a create committed by whoever held a lock it waited for
  stops it (the second row comes back 'slow', not a second intent for the same person).
- A run that lost its lease gets 'lost' and writes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity
from profiles.freeagent_contact_export.config import load_settings
from profiles.freeagent_contact_export.identity import identity_of, lock_key
from profiles.freeagent_contact_export.match import MatchInputs, match_rows, party_of

EMAILS = ["ann@x.io", "ANN@x.io", "bob@x.io", "cy@x.io", ""]
URL = "https://api.example/v2/contacts/{}"


async def _world(conn: asyncpg.Connection) -> tuple[int, int, list[int], int]:
    """Client A with profiles 0 and 1, client B with profile 2; a running run of profile 0."""
    clients = [
        int(await conn.fetchval(
            "INSERT INTO freeagent_client (name, client_id, client_secret)"
            " VALUES ($1, 'c', 's') RETURNING id", name,
        ))
        for name in ("a", "b")
    ]  # fmt: skip
    profiles = [
        int(await conn.fetchval(
            "INSERT INTO profile (name, type, client_id)"
            " VALUES ($1, 'freeagent_contact_export', $2) RETURNING id", f"p{n}", client,
        ))
        for n, client in enumerate([clients[0], clients[0], clients[1]])
    ]  # fmt: skip
    run = int(await conn.fetchval(
        "INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, fence)"
        " VALUES ($1, 'cli', now(), 'running', 7) RETURNING id", profiles[0],
    ))  # fmt: skip
    return clients[0], clients[1], profiles, run


async def _row(
    conn: asyncpg.Connection, profile: int, n: int, email: str, **extra: Any
) -> ContactEntity:
    columns = {"profile_id": profile, "source_key": f"customer:{n}", "email": email, **extra}
    names = ", ".join(columns)
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    record = await conn.fetchrow(
        f"INSERT INTO contact_entity ({names}) VALUES ({marks}) RETURNING *", *columns.values()
    )
    return ContactEntity.from_row(record)


def _key(client: int, row: ContactEntity) -> int:
    cfg = load_settings("p", {})
    return lock_key(client, identity_of(party_of(row, {"email": row.email}), cfg.identity))


async def _decide(
    conn: asyncpg.Connection, client: int, run: int, fence: int, rows: list[ContactEntity],
) -> dict[int, str]:  # fmt: skip
    marks = [
        {"id": r.id, "intent": {"identity": str(_key(client, r)), "at": "2026-01-01T00:00Z"},
         "next_at": "2026-01-01T00:10:00Z"}
        for r in rows
    ]  # fmt: skip
    answered = await conn.fetch(
        QUERIES["decide_creates"], client, run, fence, "2000ms", [r.id for r in rows],
        [_key(client, r) for r in rows], [r.profile_id for r in rows], [r.email for r in rows],
        [party_of(r, {"email": r.email}).email for r in rows], marks,
    )  # fmt: skip
    return {r["id"]: r["outcome"] for r in answered}


world = st.fixed_dictionaries({
    # (profile 0-2, e-mail, linked to contact n or not, creating with an intent)
    "rows": st.lists(st.tuples(st.integers(0, 2), st.sampled_from(EMAILS),
                               st.sampled_from([None, 0, 1]), st.booleans()), max_size=6),
    # (contact n, e-mail, client A or B)
    "contacts": st.lists(st.tuples(st.integers(0, 2), st.sampled_from(EMAILS),
                                   st.integers(0, 1)), max_size=4),
    # the asked rows: profile 0 or 1 of client A, one e-mail each
    "asked": st.lists(st.tuples(st.integers(0, 1), st.sampled_from(EMAILS[:4])),
                      min_size=1, max_size=4),
})  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(world=world)
async def test_marks_exactly_what_the_long_way_would_create(
    pool: asyncpg.Pool, world: dict[str, list[Any]]
) -> None:
    cfg = load_settings("p", {})
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            client, other, profiles, run = await _world(conn)
            for n, email, which in world["contacts"]:
                await conn.execute(
                    "INSERT INTO freeagent_contact (client_id, url, email, data)"
                    " VALUES ($1, $2, $3, '{}') ON CONFLICT DO NOTHING",
                    [client, other][which], URL.format(n), email,
                )  # fmt: skip
            n = 0
            for profile, email, linked, creating in world["rows"]:
                row = await _row(
                    conn, profiles[profile], n, email,
                    freeagent_url=None if linked is None else URL.format(linked),
                )  # fmt: skip
                if creating:
                    intent = {"create_intent": {"identity": str(_key(client, row))}}
                    await conn.execute(
                        "UPDATE contact_entity SET status = 'creating', metadata = $2"
                        " WHERE id = $1", row.id, intent,
                    )  # fmt: skip
                n += 1
            asked, keys = [], set()
            for profile, email in world["asked"]:
                row = await _row(
                    conn, profiles[profile], n, email, status="processing",
                    claimed_by_run=run, claim_fence=7,
                )  # fmt: skip
                n += 1
                if _key(client, row) not in keys:  # one ask per lock key, as the exporter asks
                    keys.add(_key(client, row))
                    asked.append(row)
            # The long way, before anything is marked: in flight, then match.py.
            creating = {
                r["identity"]: r["id"]
                for r in await conn.fetch(
                    "SELECT e.id, e.metadata -> 'create_intent' ->> 'identity' AS identity"
                    " FROM contact_entity e JOIN profile p ON p.id = e.profile_id"
                    " WHERE p.client_id = $1 AND e.status = 'creating'", client,
                )
            }  # fmt: skip
            gathered = await MatchInputs.gather_many(
                conn, client_id=client, asked=[(r, {"email": r.email}) for r in asked],
                by_name=False,
            )  # fmt: skip
            decisions = await match_rows(
                conn, client_id=client, cfg=cfg, asked=[(r, {"email": r.email}) for r in asked]
            )
            # Sound: a row is marked only if the long way creates it. Complete where nothing
            # is there to weigh (no peer row, no contact with the e-mail, nothing in flight);
            # with something there, the long way decides ('slow').
            expected = {}
            for r, inputs, d in zip(asked, gathered, decisions, strict=True):
                in_flight = str(_key(client, r)) in creating
                plain = not (inputs.peers or inputs.candidates or in_flight)
                assert not plain or d.action == "create"
                expected[r.id] = "marked" if plain else "slow"
            got = await _decide(conn, client, run, 7, asked)
            assert got == expected
            marked = {
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM contact_entity WHERE metadata ? 'create_intent'"
                    " AND id = ANY($1::bigint[])", [r.id for r in asked],
                )
            }  # fmt: skip
            assert marked == {i for i, o in got.items() if o == "marked"}
        finally:
            await tx.rollback()


async def test_a_create_committed_while_it_waited_for_the_lock_stops_it(
    pool: asyncpg.Pool,
) -> None:
    """Two profiles of one client create the same person at once: the second waits for the
    first's lock and must then see its intent (a read taken before the lock would not)."""
    async with pool.acquire() as setup:
        client, _, profiles, run = await _world(setup)
        run2 = int(await setup.fetchval(
            "INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, fence)"
            " VALUES ($1, 'cli', now(), 'running', 7) RETURNING id", profiles[1],
        ))  # fmt: skip
        first = await _row(setup, profiles[0], 1, "ann@x.io", status="processing",
                           claimed_by_run=run, claim_fence=7)  # fmt: skip
        second = await _row(setup, profiles[1], 2, "ann@x.io", status="processing",
                            claimed_by_run=run2, claim_fence=7)  # fmt: skip
    async with pool.acquire() as a, pool.acquire() as b:
        tx = a.transaction()
        await tx.start()
        assert await _decide(a, client, run, 7, [first]) == {first.id: "marked"}
        waiting = asyncio.create_task(_decide(b, client, run2, 7, [second]))
        # b is blocked on the advisory lock a holds until it commits
        while not await pool.fetchval(  # noqa: ASYNC110 (a lock wait is not an awaitable)
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ):
            await asyncio.sleep(0.01)
        assert not waiting.done()
        await tx.commit()
        assert await waiting == {second.id: "slow"}
    status = await pool.fetchval("SELECT status::text FROM contact_entity WHERE id = $1", second.id)
    assert status == "processing"


async def test_a_run_that_lost_its_lease_marks_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        client, _, profiles, run = await _world(conn)
        row = await _row(conn, profiles[0], 1, "ann@x.io", status="processing",
                         claimed_by_run=run, claim_fence=7)  # fmt: skip
        assert await _decide(conn, client, run, 8, [row]) == {row.id: "lost"}
        intent = await conn.fetchval(
            "SELECT metadata ? 'create_intent' FROM contact_entity WHERE id = $1", row.id
        )
        assert intent is False


async def test_a_lock_held_too_long_is_an_error_not_a_guess(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, pool.acquire() as holder:
        client, _, profiles, run = await _world(conn)
        row = await _row(conn, profiles[0], 1, "ann@x.io", status="processing",
                         claimed_by_run=run, claim_fence=7)  # fmt: skip
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", _key(client, row))
            with pytest.raises(asyncpg.LockNotAvailableError):
                await _decide(conn, client, run, 7, [row])
        status = await conn.fetchval(
            "SELECT status::text FROM contact_entity WHERE id = $1", row.id
        )
        assert status == "processing"
