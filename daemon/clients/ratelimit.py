"""The FreeAgent request budget, shared through PostgreSQL by every replica and profile.

FreeAgent counts requests per authorising user (120/min, 3600/h; token refreshes also
15/min) and, across users, per IP address (1,000/min). Several profiles, several daemon
replicas and `fa-sync client authorize` may act for one user, and hundreds of shops may send
from one address; a per-process limiter would let each of them spend the whole budget. So the
count lives in the database (`fa_rate_take`, a log of grants under row locks) and a 429
blocks the key for everyone (`rate_block`).

One key per user. The key is `user:<users/me url>` once the client row knows whom its tokens
act for. Before that (the code exchange and the first users/me of `client authorize`) the
requests are counted under the provisional key `client:<id>`; `adopt_user()` then moves those
events into the user's key, so every request ever sent for the user sits in one log.

One more key per address: the egress. `egress:<name>` (settings rate_egress_key) stands for the
address the requests leave from; every grant of every user sending from it is counted under
its user's key and under the egress (one rate_event row carries both), and a grant must fit
both. The default name is one for every replica on the database (replicas behind one NAT share
an address, so this is the harsher assumption); replicas with public addresses of their own
each set a name of their own. Token refreshes count on the egress once, through the user's
grant (the `|refresh` sibling key does not carry it).

When a grant stops counting: FreeAgent counts at *receipt* in fixed windows [k*W, (k+1)*W)
whose alignment we do not know; we count at *grant*. A request granted at g is received at some
x >= g; once its answer arrives at a, x <= a. Two receipts x < y fall in one fixed window only
if y - x < W. So when granting at t (every new receipt is >= t), an earlier request whose
receipt is surely <= t - W can never share a window with the new one, and the grant is safe
if fewer than L earlier requests may have been received after t - W. Each grant is therefore
counted until:

    answered ........ a + W  (a: the answer's arrival, mapped onto the database clock as
                              granted_at + (answered - asked), an upper bound of x)
    not answered .... g + D + W  (D = rate_latency_allowance, 5 s, bounds grant to receipt:
                              the wait in the stock, at most STOCK_SECONDS, plus the
                              network; for a request whose answer never came or is still out)

and at most L = limit - rate_headroom grants count at any time, per window length (minute and
hour alike). This holds whatever the alignment of FreeAgent's windows (a sliding window too),
with any number of replicas (one log, one row lock), and uses each window almost fully: a
request is released one round trip after its window, not D after. Retry-After and the Date
header do not tell the alignment well enough to lean on (whole seconds; FreeAgent sends no
X-RateLimit-* headers), and need no trust here. The headroom (2/min, 20/h) covers senders we do
not see (another app using the same user's token) and a request received more than D after its
grant with no answer; the egress's (10/min) covers other programs on the address.

The egress is the same proof with a log and lock of its own: L_e = rate_egress_per_minute -
rate_egress_headroom_per_minute, minute window only. `fa_rate_take` locks the user's row, then
the egress's (always in that order; holding the egress row it waits for nothing more, so calls
of many users cannot deadlock) and grants k only if the user's counts plus k stay within L and
the egress's count plus k within L_e. The egress is counted at the grant's instant, after both
locks; the user's count, taken a moment before, can only have shrunk since (nobody grants or
records answers for the user while its row is locked, and a count loses rows as time passes).
Answers other users record meanwhile only trade one upper bound of a receipt for another. Every
request leaving the address is granted under its egress key, so no window of the address
receives more than L_e of ours. Like a user's key, an egress key needs every sender on it to
use the same windows, D and HTTP timeout (its count reads rows of the last window + `flight`).

A 429 always pauses the user's key for Retry-After (the header: the transport never reads the
body, which names whichever limit was hit). Whether it pauses the egress too: which limit
refused the request is unknown, and both mistakes cost. Pausing the egress for one user's 429
(another app spending that user's budget) stops every shop on the address, again each time that
user is refused; not pausing it when the address is full lets every other user send into a
window FreeAgent refuses. How full our egress count was tells little: it never passes L_e, so
an address 429 means senders we do not see filled the window, and a rule on the count would
blame the address for any user's 429 whenever many shops are busy. What an address 429 does
show is that FreeAgent refuses *every* user of the address until its window ends. So the egress
row remembers the last refused user and the end of its Retry-After (`fa_rate_block`); a 429 of
another user before then pauses the egress for its own Retry-After. One user refused again and
again never stops the others; a full address costs one 429 more than knowing the limit would,
besides those already in flight. A 429 of the token endpoint pauses the refresh key only.

Grants in batches: one `fa_rate_take` call grants up to k requests at once (as many as the
user's windows and the egress allow, never more) and records the answers of earlier grants, so
a busy export pays about one database round trip per k requests. Granted requests wait in the
process's stock for at most STOCK_SECONDS; k grows while the stock is used up and shrinks when
grants expire unused (an unused grant still counts until its window ends, so waste is kept
small). A batch is answered when all its requests are: its latest answer counts for all of
them. A 429 empties the stock at once; a 429 another replica received stops this one's stock
within STOCK_SECONDS.

Priority lane. A customer saved in Magento and announced by an event must not wait behind a
first sync's backlog. Requests sent inside `priority_lane()` (a context variable, so the
FreeAgent client and transport need no new argument) differ in three ways:
- they may spend a little of the headroom (1/min, 10/h by default, never past the configured
  limit): a backlog spends its whole budget in a burst at the start of each window, and
  without this an event would wait out the rest of the window (up to ~30 s at 120/min);
- ordinary requests leave them 60 of each hour (priority_reserve_per_hour): a first sync
  otherwise spends the hour's budget in its first ~33 minutes and events wait out the rest;
- each asks `fa_rate_take` for exactly one request, with p_priority, unless the process's
  stock holds a fresh grant (already counted, so taking it costs nobody anything); while it
  waits for a grant, every ordinary call for the same user is told to wait until a little
  after its turn, and the batches already stocked run out within STOCK_SECONDS.
On the egress the lane may spend rate_priority_per_minute of its headroom, and a lane call
waiting because the egress is full holds back the ordinary callers of every user on it (one
waiting for its own user's limit holds back nobody else).
The proof above still holds with two limits: a grant is made only if the requests counted
with it stay within the caller's L, and both L (backlog: limit - headroom - reserve; lane:
limit - headroom + its allowance) are at most the configured limit, so at most the larger,
L_lane, count at any time; likewise on the egress. What the lane may not spend (1/min, 10/h)
is the headroom left for unseen senders and late receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.logs import get_logger

log = get_logger(__name__)

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


#: Longest a granted request waits in the process's stock before it is dropped unused.
STOCK_SECONDS = 0.5
#: Most requests one fa_rate_take call asks for where the limit binds (FreeAgent's 120/min):
#: a bigger stock would hold grants an event's request may need in a full window.
BATCH = 16
#: Most requests per call at all. A budget asks for at most half of what its limit allows
#: within STOCK_SECONDS, kept between BATCH and MAX_BATCH: only a limit far above what one
#: process sends (128 or more per STOCK_SECONDS) gets 64, fewer calls and nobody waiting.
MAX_BATCH = 64
#: Bound on a statement's run time (the pool's command_timeout): part of the longest time
#: between a grant and its answer, which caps the answer time recorded for a grant.
STATEMENT_SECONDS = 60.0

Clock = Callable[[], float]


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


@dataclass(frozen=True)
class Egress:
    """The budget shared by every user whose requests leave from one address (FreeAgent's
    per-IP limit; settings rate_egress_*). Minute window only: the limit has no hour."""

    key: str  #: `egress:<name>`: every replica sending from the address must use the same
    per_minute: int  #: the address's limit as configured (FreeAgent: 1,000)
    headroom: int = 0  #: requests per minute window left unused
    priority: int = 0  #: of that headroom, what the priority lane may spend

    @property
    def backlog_limit(self) -> int:
        """Requests per minute window ordinary requests may have counted."""
        return max(1, self.per_minute - self.headroom)

    @property
    def priority_limit(self) -> int:
        """The lane's: a little of the headroom, never beyond the configured limit."""
        return min(self.per_minute, self.backlog_limit + self.priority)


def egress_key(name: str) -> str:
    """The budget key of one egress (an address, or every replica when they share one)."""
    return f"egress:{name}"


def provisional_key(client_id: int) -> str:
    """The budget key of a client whose user is not known yet."""
    return f"client:{client_id}"


def user_key(user_url: str) -> str:
    """The budget key of one FreeAgent user: every client row of that user shares it."""
    return f"user:{user_url}"


@dataclass
class _Batch:
    """Requests granted by one fa_rate_take call."""

    id: int  #: rate_event id
    granted_at: datetime  #: database clock
    asked: float  #: local clock just before the call (so answers map to an upper bound)
    expires: float  #: local clock: stocked grants are dropped after this
    left: int  #: requests not yet answered, failed or dropped
    answered: float  #: local clock of the latest answer
    unanswered: bool = False  #: one request got no answer: the batch counts as unanswered


@dataclass
class Grant:
    """One granted request; tell it when the answer came (or that none did)."""

    budget: RateBudget
    batch: _Batch | None = field(default=None, repr=False)

    def answered(self, ok: bool) -> None:
        """The request's answer arrived (ok) or never will (not ok: timeout, dropped)."""
        if self.batch is not None:
            self.budget._settle(self.batch, answered=ok, used=True)
            self.batch = None


class RateBudget:
    """One user's request budget: `take()` before each request, `block()` after a 429."""

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
        http_timeout: float = 30.0,
        clock: Clock = time.monotonic,
        egress: Egress | None = None,
    ) -> None:
        self.pool = pool
        self.key = key  #: `user:<url>`, or `client:<id>` until the user is known
        self.per_minute = per_minute  #: the client row's configured limit
        allowed = per_minute / minute_window * STOCK_SECONDS  #: requests per stock lifetime
        self._max_batch = max(BATCH, min(MAX_BATCH, int(allowed / 2)))
        self.per_hour = per_hour
        self.minute_window = minute_window  #: 60 s in production; tests shorten it
        self.hour_window = hour_window
        #: ClientFactory passes the settings' headroom; none when built bare (unit tests)
        self.headroom = headroom if headroom is not None else NO_HEADROOM
        #: The address's budget every grant also counts against (None: not governed)
        self.egress = egress
        self._sleep = sleep
        self._clock = clock
        self._http_timeout = http_timeout
        self._stock: deque[_Batch] = deque()  #: one entry per stocked grant
        self._lock = asyncio.Lock()  #: one fa_rate_take call at a time per process
        self._waiting = 0  #: callers of take() not served yet
        self._batch = 1  #: how many to ask for beyond the waiting callers (grows, shrinks)
        self._done: list[tuple[int, datetime]] = []  #: answered batches not yet recorded

    @property
    def effective_limits(self) -> tuple[int, int]:
        """(per minute, per hour) actually granted: the configured limits less the headroom."""
        room = self.headroom
        return max(1, self.per_minute - room.per_minute), max(1, self.per_hour - room.per_hour)

    @property
    def flight(self) -> float:
        """Longest time from a grant to its answer: caps the answer time recorded."""
        return max(self.headroom.latency, STOCK_SECONDS + STATEMENT_SECONDS + self._http_timeout)

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
        """The sibling budget of token refreshes (15/min per user), under the same rules.
        Without the egress: the refresh is counted there once, by the user's own grant."""
        return RateBudget(
            self.pool,
            self.key + REFRESH_SUFFIX,
            REFRESHES_PER_MINUTE,
            REFRESHES_PER_MINUTE * 60,
            self.minute_window,
            self.hour_window,
            headroom=self.headroom,
            sleep=self._sleep,
            http_timeout=self._http_timeout,
            clock=self._clock,
        )

    async def _call(self, want: int, priority: bool) -> tuple[int, float, _Batch | None]:
        """One fa_rate_take: record answers, ask for `want` (in the priority lane or not);
        (granted, wait, batch)."""
        per_minute, per_hour = self.priority_limits if priority else self.backlog_limits
        egress = self.egress
        egress_limit = None
        if egress is not None:
            egress_limit = egress.priority_limit if priority else egress.backlog_limit
        done, self._done = self._done, []
        ids = [i for i, _ in done] or None
        times = [t for _, t in done] or None
        async with translated(f"rate budget {self.key}"), self.pool.acquire() as conn:
            asked = self._clock()
            row = await conn.fetchrow(
                QUERIES["rate_take"], self.key, want, per_minute, per_hour,
                float(self.minute_window), float(self.hour_window),
                float(self.headroom.latency), float(self.flight), ids, times, priority,
                egress.key if egress is not None else None, egress_limit,
            )  # fmt: skip
        granted = int(row["granted"])
        if not granted:
            return 0, float(row["wait"] or 0.0), None
        batch = _Batch(
            row["grant_id"], row["granted_at"], asked, self._clock() + STOCK_SECONDS,
            granted, asked,
        )  # fmt: skip
        return granted, 0.0, batch

    async def try_acquire(self) -> float:
        """Take one request if the budget allows: 0.0 when granted, else seconds to wait.
        The grant is never answered: it counts for window + latency allowance. Inside
        priority_lane() it is the lane's."""
        _, wait, _ = await self._call(1, _PRIORITY.get())
        return wait

    async def take(self) -> Grant:
        """Wait until the shared budget grants one request (this wait is the throttle).

        Served from the stock when a recent batch left some; else one call asks for every
        caller waiting now, plus the batch size learnt so far. Inside priority_lane() the
        request queues behind no ordinary caller of this process (_take_priority).
        """
        if _PRIORITY.get():
            return await self._take_priority()
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    batch = self._from_stock()
                    if batch is not None:
                        return Grant(self, batch)
                    granted, wait, batch = await self._call(
                        min(self._max_batch, max(self._waiting, self._batch)), False
                    )
                    if batch is None:
                        await self._sleep(wait)
                        continue
                    self._stock.extend([batch] * granted)
        finally:
            self._waiting -= 1

    async def _take_priority(self) -> Grant:
        """The lane's request: a fresh stocked grant if there is one (already counted), else
        exactly one from fa_rate_take in the priority lane, which holds ordinary callers back
        while this one waits. Not under the ordinary callers' lock: one of them may be
        sleeping out a wait there."""
        while True:
            batch = self._from_stock()
            if batch is not None:
                return Grant(self, batch)
            _, wait, batch = await self._call(1, True)
            if batch is not None:
                return Grant(self, batch)
            await self._sleep(wait)

    def _from_stock(self) -> _Batch | None:
        """A stocked grant still fresh; stale ones are dropped (they stay counted)."""
        now = self._clock()
        while self._stock:
            batch = self._stock.popleft()
            if batch.expires > now:
                if not self._stock or self._stock[0] is not batch:
                    self._batch = min(self._max_batch, self._batch * 2)  # used up: ask more
                return batch
            self._batch = max(1, self._batch // 2)  # grants went unused: ask fewer
            self._settle(batch, answered=True, used=False)
        return None

    def _drop_stock(self) -> None:
        """Drop every stocked grant unused (they stay counted, as unanswered)."""
        while self._stock:
            self._settle(self._stock.popleft(), answered=True, used=False)

    def _settle(self, batch: _Batch, *, answered: bool, used: bool) -> None:
        """One request of a batch is done; when all are, the batch's answer is recorded."""
        batch.left -= 1
        if used and answered:
            batch.answered = max(batch.answered, self._clock())
        elif used:
            batch.unanswered = True
        if batch.left == 0 and not batch.unanswered:
            seconds = min(batch.answered - batch.asked, self.flight)
            self._done.append((batch.id, batch.granted_at + timedelta(seconds=seconds)))

    async def acquire(self) -> None:
        """Wait for one request of its own, never answered (counts for window + latency
        allowance): for senders that do not report answers (token refreshes)."""
        while (wait := await self.try_acquire()) > 0:
            await self._sleep(wait)

    async def acquire_refresh(self) -> None:
        """A token refresh spends one request of the user and one of the refresh cap."""
        await self.refreshes().acquire()
        await self.acquire()

    async def block(self, seconds: float) -> None:
        """FreeAgent answered 429: pause every sender of this user for Retry-After seconds,
        and of the egress too when another user of it was refused in the meantime."""
        self._drop_stock()  # FreeAgent said stop: nothing granted earlier goes out now
        egress = self.egress.key if self.egress is not None else None
        async with translated(f"rate budget {self.key}"):
            pause = min(max(0.0, float(seconds)), MAX_BLOCK_SECONDS)
            paused = await self.pool.fetchval(QUERIES["rate_block"], self.key, pause, egress)
        if paused:
            log.warning("rate_egress_paused", egress=egress, seconds=pause, key=self.key)

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
