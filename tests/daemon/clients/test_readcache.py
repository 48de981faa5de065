"""ReadCache: rarely changing reads kept across runs, by key and for a limited time."""

from __future__ import annotations

import asyncio

import pytest

from daemon.clients.readcache import ReadCache


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Reads:
    """A read that counts itself and answers {"n": count}."""

    def __init__(self) -> None:
        self.count = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> dict[str, int]:
        self.count += 1
        self.started.set()
        await self.release.wait()
        return {"n": self.count}


async def test_an_answer_is_reused_within_its_age_and_read_again_after() -> None:
    """Within ttl the kept answer is given; at ttl the next get reads again."""
    clock, read = _Clock(), _Reads()
    cache = ReadCache(60, clock=clock)
    assert await cache.get("k", read) == {"n": 1}
    clock.now = 59.9
    assert await cache.get("k", read) == {"n": 1}
    clock.now = 60.0
    assert await cache.get("k", read) == {"n": 2}


async def test_another_key_is_read_afresh() -> None:
    """A key names what the answer depends on: another key (new tokens) is read."""
    read = _Reads()
    cache = ReadCache(60, clock=_Clock())
    await cache.get(("users/me", 1, 5), read)
    assert await cache.get(("users/me", 1, 6), read) == {"n": 2}


async def test_errors_are_not_kept() -> None:
    """A failed read is tried again by the next get."""
    cache = ReadCache(60, clock=_Clock())

    async def broken() -> dict[str, int]:
        raise RuntimeError("503")

    with pytest.raises(RuntimeError):
        await cache.get("k", broken)
    assert await cache.get("k", _Reads()) == {"n": 1}


async def test_callers_asking_at_once_share_one_read() -> None:
    """Runs asking for one key together send one request between them."""
    read = _Reads()
    read.release.clear()
    cache = ReadCache(60, clock=_Clock())
    waiting = [asyncio.create_task(cache.get("k", read)) for _ in range(5)]
    await asyncio.wait_for(read.started.wait(), 10)
    read.release.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [{"n": 1}] * 5
    assert read.count == 1


async def test_each_caller_gets_its_own_copy() -> None:
    """One run changing its answer does not change the next run's."""
    cache = ReadCache(60, clock=_Clock())
    first = await cache.get("k", _Reads())
    first["n"] = 99
    assert await cache.get("k", _Reads()) == {"n": 1}


async def test_a_zero_age_reads_every_time() -> None:
    """FA_SYNC_CONFIG_CACHE_SECONDS=0 turns keeping off."""
    read = _Reads()
    cache = ReadCache(0, clock=_Clock())
    await cache.get("k", read)
    await cache.get("k", read)
    assert read.count == 2
    assert cache.peek("k") is None
