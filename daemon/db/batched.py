"""One statement for callers that arrive together: the fires of many profiles at one instant.

A daemon serving hundreds of shops sees them all fire in the same second; read each profile
and claim each fire on its own and the last claim waits behind a thousand round trips (and
behind the first runs' own statements, in the pool's queue). Each caller here queues its item
and awaits its own result, as if it had sent the statement alone. One drain task sends what
is queued as one call, then what queued meanwhile, until nothing is left; so a lone caller
pays what it did before, and a crowd pays one round trip per wave instead of one each. Every
caller of a call is answered at once (no hand-over from one waiter to the next).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Runs items together: one result per item, in order.
RunMany = Callable[[list[Item]], Awaitable[Sequence[Result]]]


class Batched(Generic[Item, Result]):
    """Calls of `run`, each for the items queued since the previous one, one at a time."""

    def __init__(self, run: RunMany[Item, Result]) -> None:
        self._run = run
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.calls = 0  #: calls of `run` so far (tests compare it with the items)

    async def __call__(self, item: Item) -> Result:
        """`item`'s result, or the error of the call that carried it. A caller cancelled
        before its call is dropped from it; after, its item has been run regardless."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="batched-drain")
        return await future

    async def _drain(self) -> None:
        group: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            await asyncio.sleep(0)  # callers woken at the same moment join the first call
            while self._queue:
                group, self._queue = [(i, f) for i, f in self._queue if not f.done()], []
                if group:
                    await self._settle(group)
        finally:
            self._drainer = None
            # Only if the drain itself was cancelled (the loop is closing): nobody is left
            # to answer these callers.
            for _, future in group + self._queue:
                future.cancel()
            self._queue = []

    async def _settle(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self.calls += 1
        try:
            results = await self._run([item for item, _ in group])
            if len(results) != len(group):
                raise AssertionError(f"batched call answered {len(results)} of {len(group)}")
        except Exception as exc:  # every caller of this call gets its error, as alone
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
