"""The hot path's shortcuts give exactly what the long way gives.

- `MatchInputs.gather_many` reads a group's match inputs in one statement; for any ledger and
  contact index it must return, row by row, what the one-row queries (entity_same_email,
  fa_contact_by_email, entity_url_owners) return, in their order.
- `entity_finish_many` indexes created contacts and records outcomes in one statement:
  the index ends as fa_contact_upsert leaves it.
- The text fast paths (clean.clean_text, payload.contact_email, payload._clean) skip the
  per-character walk only when the walk would change nothing: checked on every code point.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.db.pool import create_pool
from daemon.db.queries import QUERIES
from daemon.db.records import ContactEntity
from daemon.settings import Settings
from profiles.freeagent_contact_export import clean, payload
from profiles.freeagent_contact_export.match import MatchInputs, party_of

EMAILS = ["ann@x.io", "ANN@x.io", " ann@x.io", "bob@x.io", "", None]
URLS = [f"https://api.example/v2/contacts/{n}" for n in range(4)]


async def _world(conn: asyncpg.Connection) -> tuple[int, int, list[int]]:
    """Two FreeAgent clients; profiles 1 and 2 on client A, profile 3 on client B."""
    clients = [
        int(
            await conn.fetchval(
                "INSERT INTO freeagent_client (name, client_id, client_secret)"
                " VALUES ($1, 'c', 's') RETURNING id",
                name,
            )
        )
        for name in ("a", "b")
    ]
    profiles = [
        int(
            await conn.fetchval(
                "INSERT INTO profile (name, type, client_id)"
                " VALUES ($1, 'freeagent_contact_export', $2) RETURNING id",
                f"p{n}",
                client,
            )
        )
        for n, client in enumerate([clients[0], clients[0], clients[1]])
    ]
    return clients[0], clients[1], profiles


rows_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(EMAILS), st.sampled_from([None, *URLS])),
    min_size=1, max_size=8,
)  # fmt: skip
contacts_strategy = st.lists(
    st.tuples(st.sampled_from(URLS), st.sampled_from(EMAILS), st.integers(0, 1),
              st.sampled_from([None, datetime(2026, 1, 1, tzinfo=UTC),
                               datetime(2026, 2, 1, tzinfo=UTC)])),
    max_size=6,
)  # fmt: skip


async def _one_row(conn: asyncpg.Connection, client: int, row: ContactEntity) -> tuple[Any, ...]:
    """The one-row reads, as match.py made them before they were batched."""
    me = party_of(row, {"email": row.email})
    if not me.email:
        return ((), ())
    peers = await conn.fetch(QUERIES["entity_same_email"], row.profile_id, row.email, row.id) \
        if row.email else []  # fmt: skip
    found = await conn.fetch(QUERIES["fa_contact_by_email"], client, me.email)
    urls = [f["url"] for f in found]
    owners = await conn.fetch(QUERIES["entity_url_owners"], client, urls) if urls else []
    return (
        tuple(r["id"] for r in peers),
        tuple(
            (
                f["url"],
                tuple(
                    o["id"] for o in owners if o["freeagent_url"] == f["url"] and o["id"] != row.id
                ),
            )
            for f in found
        ),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, contacts=contacts_strategy)
# A row of the other client's profile uses the contact too: not an owner here.
@example(
    rows=[(0, "ann@x.io", None), (2, "ann@x.io", URLS[0]), (1, "ANN@x.io", URLS[0])],
    contacts=[(URLS[0], "Ann@x.io", 0, None), (URLS[1], "ann@x.io", 0, None)],
)
async def test_gather_many_reads_what_the_one_row_queries_read(
    pool: asyncpg.Pool, rows: list[tuple[int, str | None, str | None]],
    contacts: list[tuple[str, str | None, int, datetime | None]],
) -> None:  # fmt: skip
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            client, other, profiles = await _world(conn)
            for url, email, which, updated in contacts:
                await conn.execute(
                    "INSERT INTO freeagent_contact (client_id, url, email, data, fa_updated_at)"
                    " VALUES ($1, $2, $3, '{}', $4) ON CONFLICT DO NOTHING",
                    [client, other][which],
                    url,
                    email,
                    updated,
                )
            entities = []
            for n, (profile, email, url) in enumerate(rows):
                record = await conn.fetchrow(
                    "INSERT INTO contact_entity (profile_id, source_key, email, freeagent_url)"
                    " VALUES ($1, $2, $3, $4) RETURNING *",
                    profiles[profile],
                    f"customer:{n}",
                    email,
                    url,
                )
                entities.append(ContactEntity.from_row(record))
            asked = [e for e in entities if e.profile_id != profiles[2]]
            gathered = await MatchInputs.gather_many(
                conn,
                client_id=client,
                asked=[(e, {"email": e.email}) for e in asked],
                by_name=False,
            )
            looked = 0
            for entity, inputs in zip(asked, gathered, strict=True):
                peers, found = await _one_row(conn, client, entity)
                assert tuple(p.row_id for p in inputs.peers) == peers
                assert (
                    tuple((c.url, tuple(o.row_id for o in c.owners)) for c in inputs.candidates)
                    == found
                )
                looked += inputs.me.email is not None
            assert looked == sum(bool(e.email and e.email.strip()) for e in asked)
        finally:
            await tx.rollback()


async def test_finish_and_index_in_one_statement_indexes_like_the_upsert(
    pool: asyncpg.Pool,
) -> None:
    """A contact created twice in one group (last one wins) and one already indexed."""
    async with pool.acquire() as conn, conn.transaction():
        client, _, _ = await _world(conn)
        url = URLS[0]
        await conn.execute(
            QUERIES["fa_contact_upsert"], client, url, "old@x.io", None, "Old", "Name",
            "Active", {"url": url}, None,
        )  # fmt: skip
        created = [
            {
                "url": url,
                "email": "new@x.io",
                "organisation_name": None,
                "first_name": "Ann",
                "last_name": "Lee",
                "status": "Active",
                "data": {"url": url, "v": 1},
                "fa_updated_at": "2026-03-01T10:00:00+00:00",
            },
            {
                "url": URLS[1],
                "email": "b@x.io",
                "organisation_name": "B Ltd",
                "first_name": None,
                "last_name": None,
                "status": "Active",
                "data": {"url": URLS[1]},
                "fa_updated_at": None,
            },
        ]
        done = await conn.fetch(QUERIES["entity_finish_many"], 0, 0, [], client, created)
        assert done == []  # no outcome rows: the fence matches nothing, the index still fills
        got = {
            r["url"]: (r["email"], r["first_name"], r["data"], r["fa_updated_at"] is not None)
            for r in await conn.fetch(
                "SELECT * FROM freeagent_contact WHERE client_id = $1", client
            )
        }
        assert got == {
            url: ("new@x.io", "Ann", {"url": url, "v": 1}, True),
            URLS[1]: ("b@x.io", None, {"url": URLS[1]}, False),
        }


def _every_character() -> list[str]:
    return [chr(c) for c in range(sys.maxunicode + 1)]


def test_clean_text_fast_path_matches_the_walk_on_every_code_point() -> None:
    """`_UNSTORABLE` finds exactly the characters `_kind` objects to."""
    wrong = [
        hex(ord(ch)) for ch in _every_character()
        if (clean._UNSTORABLE.search(ch) is None) != (clean._kind(ch) is None)
    ]  # fmt: skip
    assert wrong == []
    assert clean.clean_text("a\x00b") == ("ab", ["removed 1 NUL"])
    assert clean.clean_text("x" * (clean.MAX_STORED_TEXT + 1))[0] == "x" * clean.MAX_STORED_TEXT


def test_email_fast_path_only_skips_what_the_walk_would_keep() -> None:
    """A printable string has nothing contact_email or _clean would remove."""
    wrong = [
        hex(ord(ch)) for ch in _every_character()
        if ch.isprintable() and (not payload._visible(ch) or payload._control(ch))
    ]  # fmt: skip
    assert wrong == []
    assert payload.contact_email(" a\u200bb@x.io ") == "ab@x.io"
    assert payload.contact_email("ann@x.io ") == "ann@x.io"


@pytest.mark.parametrize("text", ["Ann\u00a0Lee", "Zoë", "\u200dx", "a\tb", "日本"])
def test_clean_is_unchanged_by_the_fast_path(text: str) -> None:
    walked = " ".join("".join(filter(payload._visible, text)).split())
    assert payload._clean(text) == (walked if any(c.isalnum() for c in walked) else None)


@pytest.mark.parametrize("cache", [0, 100])
async def test_statement_cache_setting_decides_prepares(database_dsn: str, cache: int) -> None:
    """FA_SYNC_DB_STATEMENT_CACHE: with a cache a repeated statement is not prepared again
    (one round trip); with 0 (PgBouncer in transaction mode) nothing is kept."""
    pool = await create_pool(database_dsn, max_size=1, statement_cache=cache)
    try:
        async with pool.acquire() as conn:
            for _ in range(3):
                await conn.fetchval(QUERIES["db_now"])
            assert len(conn._stmt_cache) == min(cache, 1)
    finally:
        await pool.close()
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as m:
        m.setenv("FA_SYNC_DB_STATEMENT_CACHE", str(cache))
        assert Settings.load(_env_file=None).db_statement_cache == cache


async def test_outcome_commits_relax_only_their_own_statement(pool: asyncpg.Pool) -> None:
    """Outcome writes commit without waiting for the WAL flush; the pooled connection goes
    back to flushed commits at once, so the create intent written next on it is durable."""
    query = "entity_finish_many"
    args: list[Any] = [0, 0, [], 1, []]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await conn.fetch(QUERIES[query], *args)
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with conn.transaction():
            await conn.fetch(QUERIES[query], *args)
            # inside a transaction it would relax that transaction's commit: never do that
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
    assert "set_config('synchronous_commit', 'off', true)" in QUERIES[query]


async def test_cached_statements_are_planned_for_their_arguments(database_dsn: str) -> None:
    """A statement kept prepared is never switched to a generic plan: one made while the ledger
    was nearly empty scanned every contact of the client at each match read (10x slower at
    10,000 customers)."""
    pool = await create_pool(database_dsn, max_size=1, statement_cache=100)
    try:
        async with pool.acquire() as conn:
            client, _, profiles = await _world(conn)
            args = (client, [1, 2], [profiles[0]] * 2, ["a@x.io", "b@x.io"], ["a@x.io", "b@x.io"])
            for _ in range(12):
                await conn.fetch(QUERIES["match_inputs_many"], *args)
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                QUERIES["match_inputs_many"],
            )
            assert plans is not None and plans["generic_plans"] == 0, plans
            assert plans["custom_plans"] >= 12
    finally:
        await pool.close()
