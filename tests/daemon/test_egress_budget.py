"""The egress budget: every FreeAgent user sending from one address shares its minute limit.

FreeAgent limits requests per IP address across users (reference addendum). fa_rate_take is
called at explicit instants (p_now), so minutes pass without waiting; grants are never answered
and, with no latency allowance, count for exactly one window.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from daemon.clients.ratelimit import REFRESH_SUFFIX, Egress, RateBudget, egress_key
from daemon.db.pool import migrate
from daemon.resources import ClientFactory
from daemon.settings import Settings
from simulators.stack import Stack

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EGRESS = "egress:shared"
MINUTE = 60.0


async def _take(
    pool: asyncpg.Pool,
    user: str,
    seconds: float,
    *,
    want: int = 1,
    per_minute: int = 120,
    egress_limit: int = 1000,
    priority: bool = False,
) -> tuple[int, float]:
    """One fa_rate_take for `user` on EGRESS at T0 + seconds: (granted, wait)."""
    row = await pool.fetchrow(
        "SELECT granted, wait FROM fa_rate_take($1, $2, $3, 3600, 60, 3600, 0, 0,"
        " p_priority => $4, p_egress => $5, p_egress_per_minute => $6, p_now => $7)",
        user, want, per_minute, priority, EGRESS, egress_limit,
        T0 + timedelta(seconds=seconds),
    )  # fmt: skip
    return int(row["granted"]), float(row["wait"])


def _busiest(grants: list[tuple[float, int]]) -> int:
    """Most requests granted inside any one minute: windows starting at a grant are the
    fullest (a grant counts for exactly one window here)."""
    return max(sum(n for at, n in grants if start <= at < start + MINUTE) for start, _ in grants)


async def test_many_users_on_one_egress_never_pass_its_limit_and_resume_after_waits(
    pool: asyncpg.Pool,
) -> None:
    """Eight users allowed 30 a minute each share an egress of 50: no minute, however
    aligned, gets more than 50 or a user more than 30, and callers told to wait get grants
    when they come back, so five minutes carry five minutes' worth."""
    users, egress_limit, per_user, span = 8, 50, 30, 5 * MINUTE
    grants: dict[str, list[tuple[float, int]]] = {f"user:{u}": [] for u in range(users)}
    due = [(0.0, user) for user in grants]
    calls = 0
    while due:
        now, user = heapq.heappop(due)
        if now >= span:
            continue
        granted, wait = await _take(
            pool, user, now, want=4, per_minute=per_user, egress_limit=egress_limit
        )
        calls += 1
        if granted:
            grants[user].append((now, granted))
        heapq.heappush(due, (now + (wait if not granted else 0.5), user))
    every = sorted(g for user_grants in grants.values() for g in user_grants)
    assert _busiest(every) == egress_limit  # used to the last request, never beyond
    assert max(_busiest(g) for g in grants.values() if g) <= per_user
    assert sum(n for _, n in every) == 5 * egress_limit  # no minute lost to waiting
    assert calls < 10 * len(every)  # waits are told, not polled for


async def test_a_user_refused_by_the_egress_is_told_when_a_request_frees(
    pool: asyncpg.Pool,
) -> None:
    """Egress full with a user's own budget free: the wait ends when the oldest grant leaves
    the window, and a call then is granted."""
    for second, user in enumerate(("user:a", "user:b", "user:c")):
        assert await _take(pool, user, second, egress_limit=3) == (1, 0.0)
    granted, wait = await _take(pool, "user:d", 10, egress_limit=3)
    assert granted == 0
    assert wait == pytest.approx(50, abs=0.01)  # the grant at 0 leaves the window at 60
    assert await _take(pool, "user:d", 10 + wait, egress_limit=3) == (1, 0.0)


async def test_a_batch_is_cut_to_what_both_budgets_allow(pool: asyncpg.Pool) -> None:
    """One call asking for ten gets the seven the egress has left, as one counted batch."""
    assert await _take(pool, "user:a", 0, want=3, egress_limit=10) == (3, 0.0)
    assert await _take(pool, "user:b", 1, want=10, egress_limit=10) == (7, 0.0)
    rows = await pool.fetch("SELECT budget_key, egress_key, n FROM rate_event ORDER BY id")
    assert [tuple(r) for r in rows] == [("user:a", EGRESS, 3), ("user:b", EGRESS, 7)]


async def test_the_users_own_limit_still_applies(pool: asyncpg.Pool) -> None:
    """An egress with room grants a user no more than its own limit."""
    assert await _take(pool, "user:a", 0, want=5, per_minute=2) == (2, 0.0)
    granted, wait = await _take(pool, "user:a", 1, per_minute=2)
    assert granted == 0 and wait == pytest.approx(59, abs=0.01)


async def test_a_priority_request_waiting_on_the_egress_holds_other_users_back(
    pool: asyncpg.Pool,
) -> None:
    """Egress full: the lane's request waits, and when a request frees, an ordinary request
    of another user that asks first is told to wait; the lane's takes it."""
    assert await _take(pool, "user:a", 0, egress_limit=2) == (1, 0.0)
    assert await _take(pool, "user:b", 1, egress_limit=2) == (1, 0.0)
    granted, wait = await _take(pool, "user:c", 2, egress_limit=2, priority=True)
    assert granted == 0 and wait == pytest.approx(58, abs=0.01)
    granted, _ = await _take(pool, "user:d", 60.5, egress_limit=2)
    assert granted == 0  # free by the counts, but the lane's request waits
    assert await _take(pool, "user:c", 60.6, egress_limit=2, priority=True) == (1, 0.0)
    assert await _take(pool, "user:d", 61.5, egress_limit=2) == (1, 0.0)  # hold lifted


async def test_a_priority_request_waiting_on_its_own_user_holds_no_other_user(
    pool: asyncpg.Pool,
) -> None:
    """The lane waits for its user's limit alone: other users of the egress go on."""
    assert await _take(pool, "user:a", 0, per_minute=1) == (1, 0.0)
    granted, _ = await _take(pool, "user:a", 1, per_minute=1, priority=True)
    assert granted == 0
    assert await _take(pool, "user:b", 2, per_minute=1) == (1, 0.0)


async def test_one_users_429s_pause_that_user_only(pool: asyncpg.Pool) -> None:
    """A user refused again and again (another app spending its budget) stops no one else."""
    one = RateBudget(pool, "user:1", 100, 1000, egress=Egress(EGRESS, 1000))
    two = RateBudget(pool, "user:2", 100, 1000, egress=Egress(EGRESS, 1000))
    await one.block(30)
    await one.block(30)
    assert await one.try_acquire() > 29
    assert await two.try_acquire() == 0


async def test_a_second_users_429_within_the_first_ones_wait_pauses_the_egress(
    pool: asyncpg.Pool,
) -> None:
    """Two users refused within one Retry-After: the address's limit; every user waits."""
    one, two, three = (
        RateBudget(pool, f"user:{n}", 100, 1000, egress=Egress(EGRESS, 1000)) for n in (1, 2, 3)
    )
    await one.block(30)
    assert await three.try_acquire() == 0
    await two.block(20)
    assert 19 < await three.try_acquire() <= 20
    outside = RateBudget(pool, "user:4", 100, 1000, egress=Egress("egress:other", 1000))
    assert await outside.try_acquire() == 0  # another address is not paused


@pytest.mark.parametrize(
    ("egress", "expected"),
    [
        # Defaults: 10 of 1,000 left unused; the lane may spend one of them.
        (Egress(EGRESS, 1000, 10, 1), (990, 991)),
        # No headroom: the lane never passes the configured limit.
        (Egress(EGRESS, 1000, 0, 1), (1000, 1000)),
        # Headroom above the limit still leaves one request.
        (Egress(EGRESS, 5, 10, 0), (1, 1)),
    ],
)
def test_egress_limits_keep_the_headroom(egress: Egress, expected: tuple[int, int]) -> None:
    """Ordinary requests stay below the limit by the headroom; the lane by a little less."""
    assert (egress.backlog_limit, egress.priority_limit) == expected


async def test_every_freeagent_request_is_counted_on_the_egress(
    pool: asyncpg.Pool, stack: Stack, factory: ClientFactory
) -> None:
    """`client authorize` (code exchange, users/me, company), a token refresh and an API call
    all draw from the egress; the refresh is counted there once, not again by its cap's key."""
    row = await factory.client_row(stack.client_id)
    code = stack.freeagent.new_code("demo-client", "urn:ietf:wg:oauth:2.0:oob")
    await factory.authorize(row, code=code)
    client = await factory.freeagent(stack.client_id)
    tokens = factory.tokens(stack.client_id)
    await tokens.force_refresh(await tokens.access_token())
    await client.company()
    rows = await pool.fetch("SELECT budget_key, egress_key, n FROM rate_event")
    refreshes = [r for r in rows if r["budget_key"].endswith(REFRESH_SUFFIX)]
    requests = [r for r in rows if not r["budget_key"].endswith(REFRESH_SUFFIX)]
    assert len(refreshes) == 2  # the code exchange and the refresh
    assert {r["egress_key"] for r in refreshes} == {None}
    assert {r["egress_key"] for r in requests} == {egress_key("shared")}
    counted = sum(r["n"] for r in requests)
    assert counted >= len(stack.freeagent.requests) == 5


async def test_an_existing_database_upgrades_in_place(pool: asyncpg.Pool) -> None:
    """A database from before the egress (old functions, no egress column) migrates: one
    fa_rate_take is left, and grants counted before still count for their user."""
    await pool.execute(
        """DROP FUNCTION fa_rate_take(text, integer, integer, integer, float8, float8, float8,
                                      float8, bigint[], timestamptz[], boolean, text, integer,
                                      timestamptz);
           DROP FUNCTION fa_rate_free_at(text, interval, integer, timestamptz, interval,
                                         timestamptz, boolean);
           DROP FUNCTION fa_rate_block(text, float8, text);
           CREATE FUNCTION fa_rate_take(
               p_key text, p_want integer, p_per_minute integer, p_per_hour integer,
               p_minute_window float8, p_hour_window float8, p_latency float8, p_flight float8,
               p_done bigint[] DEFAULT NULL, p_done_at timestamptz[] DEFAULT NULL,
               p_priority boolean DEFAULT false, p_now timestamptz DEFAULT NULL
           ) RETURNS TABLE (granted integer, wait float8, grant_id bigint, granted_at timestamptz)
           LANGUAGE sql AS $$ SELECT 0, 1.0::float8, NULL::bigint, NULL::timestamptz $$;
           CREATE FUNCTION fa_rate_free_at(
               p_key text, p_window interval, p_excess integer, p_horizon timestamptz,
               p_lat interval, p_now timestamptz
           ) RETURNS timestamptz LANGUAGE sql AS $$ SELECT NULL::timestamptz $$;
           ALTER TABLE rate_event DROP COLUMN egress_key;
           ALTER TABLE rate_budget DROP COLUMN refused_key, DROP COLUMN refused_until;
           INSERT INTO rate_event (budget_key, at, n) VALUES ('user:1', clock_timestamp(), 2);
           DELETE FROM fa_sync_schema;"""
    )
    await migrate(pool)
    overloads = await pool.fetch(
        "SELECT proname, count(*) AS n FROM pg_proc"
        " WHERE proname IN ('fa_rate_take', 'fa_rate_free_at') GROUP BY proname"
    )
    assert {r["proname"]: r["n"] for r in overloads} == {"fa_rate_take": 1, "fa_rate_free_at": 1}
    budget = RateBudget(pool, "user:1", 3, 100, egress=Egress(EGRESS, 1000))
    assert await budget.try_acquire() == 0
    assert await budget.try_acquire() > 0  # 2 from before the upgrade + 1 = the limit of 3
    await budget.block(30)  # the 429 path works on the upgraded schema too


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # Default: every replica on the database shares one egress (one NAT, the harsher case).
        ({}, Egress("egress:shared", 1000, 10, 1)),
        # A replica with a public address of its own names it.
        ({"FA_SYNC_RATE_EGRESS_KEY": "host-a"}, Egress("egress:host-a", 1000, 10, 1)),
        # 0 turns the egress budget off: users' budgets alone.
        ({"FA_SYNC_RATE_EGRESS_PER_MINUTE": "0"}, None),
    ],
)
def test_settings_name_the_egress_or_turn_it_off(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: Egress | None
) -> None:
    """Every budget ClientFactory builds draws from the egress the settings name."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    factory = ClientFactory(pool=None, settings=settings, transport=None, secrets=None)  # type: ignore[arg-type]
    assert factory.egress() == expected
