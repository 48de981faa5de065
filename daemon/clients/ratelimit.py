"""The FreeAgent request budget, shared through PostgreSQL by every replica and profile.

FreeAgent counts requests per authorising user (120/min, 3600/h; token refreshes also
15/min). Several profiles, several daemon replicas and `fa-sync client authorize` may act
for one user; a per-process limiter would let each of them spend the whole budget. So the
count lives in the database (`fa_rate_acquire`, a sliding log under a row lock) and a 429
blocks the key for everyone (`rate_block`).

One key per user. The key is `user:<users/me url>` once the client row knows whom its tokens
act for. Before that (the code exchange and the first users/me of `client authorize`) the
requests are counted under the provisional key `client:<id>`; `adopt_user()` then moves those
events into the user's key, so every request ever sent for the user sits in one log.

Headroom: why a sliding log at grant time is not enough for FreeAgent's fixed windows.
FreeAgent counts at *receipt* in fixed windows [k*W, (k+1)*W); we count at *grant*, before the
token is read and the request crosses the network. Let d be the delay from grant to receipt,
0 <= d <= D. The receipts inside one fixed window were granted inside (k*W - D, (k+1)*W), an
interval of length W + D. A sliding log that keeps each grant for W + D seconds admits at most
L grants in any interval of that length, so at most L receipts fall in any fixed window,
whatever the alignment of FreeAgent's windows to ours. Hence:

    span  = window + rate_latency_allowance (D, default 5 s; requests are sent right after
            the grant, the token is fetched before it, so D is network latency plus jitter)
    limit = configured limit - rate_headroom (2/min, 20/h by default, never below 1)

The headroom covers what D cannot: a request whose grant-to-receipt delay exceeded D (a
stalled connection), and senders we do not see (another app using the same user's token).
At the defaults a user gets 118 requests per 65 s (about 109/min), 3580 per 3605 s.

Priority lane. A customer saved in Magento and announced by an event must not wait behind a
first sync's backlog. Requests sent inside `priority_lane()` (a context variable, so the
FreeAgent client and transport need no new argument) differ in two ways:
- they may spend a little of the headroom (1/min, 10/h by default, never past the configured
  limit): a backlog spends its whole budget in a burst at the start of each sliding window,
  and without this an event would wait out the rest of the window (up to ~30 s at 120/min);
- ordinary requests leave them 60 of each hour (priority_reserve_per_hour): a first sync
  otherwise spends the hour's budget in its first ~33 minutes and events wait out the rest;
- they ask `fa_rate_acquire_priority`: while one of them still waits for a grant, every
  ordinary sender of the same user is told to wait until a little after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import asyncpg

from daemon.db.pool import translated
from daemon.db.queries import QUERIES

#: Longest pause a 429 may put on a budget (FreeAgent's longest window is an hour).
MAX_BLOCK_SECONDS = 3600.0

Sleep = Callable[[float], Awaitable[None]]

#: True inside priority_lane(): this task's requests are served before ordinary ones.
_PRIORITY: ContextVar[bool] = ContextVar("fa_sync_rate_priority", default=False)


@contextlib.contextmanager
def priority_lane() -> Iterator[None]:
    """Requests acquired in this block (this task and tasks it starts) go first."""
    token = _PRIORITY.set(True)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


#: FreeAgent's token-endpoint limit per user (reference §0).
REFRESHES_PER_MINUTE = 15
#: Suffix of the sibling key counting token refreshes.
REFRESH_SUFFIX = "|refresh"


@dataclass(frozen=True)
class Headroom:
    """How far below FreeAgent's limits the budget stays (settings rate_*)."""

    latency: float = 5.0  #: seconds a grant stays counted after its window (D above)
    per_minute: int = 2  #: requests per minute window left unused
    per_hour: int = 20  #: requests per hour window left unused
    #: Of that headroom, what the priority lane may spend (never beyond the configured limit)
    priority_per_minute: int = 1
    priority_per_hour: int = 10
    #: Requests per hour window the backlog leaves to the priority lane (its hourly budget
    #: is otherwise spent in the sync's first ~33 minutes, and events would wait the rest
    #: out). Settings give 60; none when built bare.
    priority_reserve_per_hour: int = 0


#: Exact limits and windows, for budgets built outside ClientFactory.
NO_HEADROOM = Headroom(0.0, 0, 0)


def provisional_key(client_id: int) -> str:
    """The budget key of a client whose user is not known yet."""
    return f"client:{client_id}"


def user_key(user_url: str) -> str:
    """The budget key of one FreeAgent user: every client row of that user shares it."""
    return f"user:{user_url}"


class RateBudget:
    """One user's request budget: `acquire()` before each request, `block()` after a 429."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        key: str,
        per_minute: int,
        per_hour: int,
        minute_window: float = 60.0,
        hour_window: float = 3600.0,
        *,
        headroom: Headroom | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.pool = pool
        self.key = key  #: `user:<url>`, or `client:<id>` until the user is known
        self.per_minute = per_minute  #: the client row's configured limit
        self.per_hour = per_hour
        self.minute_window = minute_window  #: 60 s in production; tests shorten it
        self.hour_window = hour_window
        #: ClientFactory passes the settings' headroom; none when built bare (unit tests)
        self.headroom = headroom if headroom is not None else NO_HEADROOM
        self._sleep = sleep

    @property
    def effective_limits(self) -> tuple[int, int]:
        """(per minute, per hour) actually granted: the configured limits less the headroom."""
        room = self.headroom
        return max(1, self.per_minute - room.per_minute), max(1, self.per_hour - room.per_hour)

    @property
    def backlog_limits(self) -> tuple[int, int]:
        """(per minute, per hour) for ordinary requests: the effective limits, less the hourly
        reserve of the priority lane."""
        per_minute, per_hour = self.effective_limits
        return per_minute, max(1, per_hour - self.headroom.priority_reserve_per_hour)

    @property
    def priority_limits(self) -> tuple[int, int]:
        """(per minute, per hour) for the priority lane: a little of the headroom, so a backlog
        that spends the whole budget in bursts still leaves an event's request a slot now."""
        room = self.headroom
        per_minute, per_hour = self.effective_limits
        return (
            min(self.per_minute, per_minute + room.priority_per_minute),
            min(self.per_hour, per_hour + room.priority_per_hour),
        )

    def refreshes(self) -> RateBudget:
        """The sibling budget of token refreshes (15/min per user), under the same rules."""
        return RateBudget(
            self.pool,
            self.key + REFRESH_SUFFIX,
            REFRESHES_PER_MINUTE,
            REFRESHES_PER_MINUTE * 60,
            self.minute_window,
            self.hour_window,
            headroom=self.headroom,
            sleep=self._sleep,
        )

    async def try_acquire(self) -> float:
        """Take one request if the budget allows: 0.0 when granted, else seconds to wait."""
        priority = _PRIORITY.get()
        per_minute, per_hour = self.priority_limits if priority else self.backlog_limits
        query = "rate_acquire_priority" if priority else "rate_acquire"
        async with translated(f"rate budget {self.key}"):
            wait = await self.pool.fetchval(
                QUERIES[query],
                self.key,
                per_minute,
                per_hour,
                float(self.minute_window + self.headroom.latency),
                float(self.hour_window + self.headroom.latency),
            )
        return float(wait or 0.0)

    async def acquire(self) -> None:
        """Wait until the shared budget grants one request (this sleep is the throttle)."""
        while (wait := await self.try_acquire()) > 0:
            await self._sleep(wait)

    async def acquire_refresh(self) -> None:
        """A token refresh spends one request of the user and one of the refresh cap."""
        await self.refreshes().acquire()
        await self.acquire()

    async def block(self, seconds: float) -> None:
        """FreeAgent answered 429: pause every sender of this user for Retry-After seconds."""
        async with translated(f"rate budget {self.key}"):
            pause = min(max(0.0, float(seconds)), MAX_BLOCK_SECONDS)
            await self.pool.execute(QUERIES["rate_block"], self.key, pause)

    async def adopt_user(self, user_url: str) -> None:
        """The tokens turned out to act for user_url: count under that user's key from now on.

        Requests counted under the provisional `client:<id>` key move into the user's log
        (they reached FreeAgent as that user's); a key of another user is simply left.
        """
        target = user_key(user_url)
        if target == self.key:
            return
        if self.key.startswith("client:"):
            async with translated(f"rate budget {self.key}"):
                for suffix in ("", REFRESH_SUFFIX):
                    await self.pool.execute(
                        QUERIES["rate_budget_merge"], self.key + suffix, target + suffix
                    )
        self.key = target
