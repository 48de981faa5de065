"""Batched: callers arriving together share one call, each with its own answer."""

from __future__ import annotations

import asyncio

import pytest

from daemon.db.batched import Batched


class _Doubler:
    """run(): doubles each item; holds each call until released, recording its items."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 2 for i in items]


async def test_callers_arriving_together_share_one_call() -> None:
    """Fifty callers at one moment: one call, and each caller gets its own item's result."""
    run = _Doubler()
    run.release.set()
    batched = Batched(run)
    results = await asyncio.gather(*(batched(i) for i in range(50)))
    assert results == [i * 2 for i in range(50)]
    assert run.calls == [list(range(50))]


async def test_callers_arriving_during_a_call_go_together_in_the_next() -> None:
    """Items queued while a call is in flight are sent together as soon as it ends."""
    run = _Doubler()
    batched = Batched(run)
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(run.started.wait(), 10)
    later = [asyncio.create_task(batched(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    run.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *later), 10) == [2, 4, 6, 8]
    assert run.calls == [[1], [2, 3, 4]]


async def test_an_error_reaches_every_caller_of_that_call_only() -> None:
    """A failed call raises its error in each of its callers; the next call is unaffected."""
    run = _Doubler()
    run.fail = RuntimeError("database away")
    run.release.set()
    batched = Batched(run)
    outcomes = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["database away", "database away"]
    run.fail = None
    assert await batched(3) == 6


async def test_a_caller_cancelled_before_its_call_is_left_out() -> None:
    """A caller that gave up while queued is not sent; the others still are."""
    run = _Doubler()
    batched = Batched(run)
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(run.started.wait(), 10)
    gone, kept = asyncio.create_task(batched(2)), asyncio.create_task(batched(3))
    await asyncio.sleep(0)
    gone.cancel()
    run.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, kept), 10) == [2, 6]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.calls == [[1], [3]]
