"""Reads that change rarely, kept across runs: the FreeAgent user (users/me), Magento's store
views and store configs.

Every run used to read them again: three requests per run that tell nothing new, which for
a daemon serving hundreds of shops every minute is most of what an idle shop costs (and a
FreeAgent read spends the user's request budget). One ReadCache per process (built by
ClientFactory) keeps each answer for FA_SYNC_CONFIG_CACHE_SECONDS. Keys name what the answer
depends on (the client's token version, the connection and its URL), so a re-authorised
client or another connection is read afresh at once; the age limit covers changes made on the
other side (a store's locale, the user's permission level). Errors are never kept, and runs
asking for one key at once share a single read.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ReadCache:
    """Answers by key, each kept for `ttl` seconds of `clock` (0: nothing is kept)."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._reading: dict[Hashable, asyncio.Future[Any]] = {}

    def peek(self, key: Hashable) -> Any | None:
        """The kept answer for `key` if it is still fresh (a copy), else None; reads nothing."""
        entry = self._kept.get(key)
        if entry is None or self._clock() - entry[0] >= self._ttl:
            return None
        return copy.deepcopy(entry[1])

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The kept answer for `key`, or `read()`'s (kept if it did not raise). Callers get
        their own copy: one run cannot change what the next is given."""
        if self._ttl <= 0:
            return await read()
        kept = self.peek(key)
        if kept is not None:
            return kept  # type: ignore[no-any-return]
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key, read))
            pending.add_done_callback(_observed)
            self._reading[key] = pending
        # Shielded: one caller cancelled (its run stopped) does not fail the others' read.
        return copy.deepcopy(await asyncio.shield(pending))  # type: ignore[no-any-return]

    def forget(self, key: Hashable) -> None:
        """Drop the answer for `key`: the next get reads again."""
        self._kept.pop(key, None)

    async def _read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await read()
            now = self._clock()
            self._kept = {k: v for k, v in self._kept.items() if now - v[0] < self._ttl}
            self._kept[key] = (now, value)
            return value
        finally:
            self._reading.pop(key, None)


def _observed(future: asyncio.Future[Any]) -> None:
    """A read whose callers were all cancelled still has its error looked at (no warning)."""
    if not future.cancelled():
        future.exception()
