"""Group commit: the exporter's workers share ledger statements instead of each sending its own.

Each worker submits an item and awaits its own result, exactly as if it had run the statement
alone: nothing is acknowledged before it is committed. Whoever gets the lock first runs every
item queued so far in one go; the others find their result ready when they get the lock. With
eight workers a busy export thus pays one statement per several records; a lone worker pays what
it did before, with no added delay.

If a shared run fails with one of the `alone` errors (PostgreSQL refused one record's value),
each item is run again on its own, so a bad record fails only itself; any other error is every
item's error, as it would have been for each alone (a lost lease, a lock timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Runs items together: one result (or the exception for that item) per item, in order.
RunMany = Callable[[list[Item]], Awaitable[Sequence["Result | Exception"]]]


class GroupCommit(Generic[Item, Result]):
    """Runs submitted items in groups, one group at a time."""

    def __init__(
        self,
        run: RunMany[Item, Result],
        *,
        alone: tuple[type[Exception], ...] = (),
        lanes: int = 1,
    ) -> None:
        self._run = run
        self._alone = alone
        #: Groups run at once: a second lane keeps the database busy while one group's
        #: round trips are on the wire (each lane holds one pooled connection at a time).
        self._lock = asyncio.Semaphore(lanes)
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        #: Items run so far, and groups run: their ratio is the statements saved.
        self.items = 0
        self.groups = 0

    async def submit(self, item: Item) -> Result:
        """Run `item` (with whatever else is queued) and return its result or raise its error."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        async with self._lock:
            if not future.done():
                await asyncio.sleep(0)  # let workers already woken join this group
                group, self._queue = self._queue, []
                try:
                    await self._settle(group)
                finally:
                    # Cancelled mid-run: the others' items were not run; queue them again.
                    self._queue[:0] = [(i, f) for i, f in group if not f.done() and f is not future]
        return await future

    async def _settle(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in group])
        except Exception as exc:
            if len(group) == 1 or not isinstance(exc, self._alone):
                for _, future in group:
                    future.set_exception(exc)
                return
            for one in group:  # find the item at fault: each on its own
                await self._settle([one])
            return
        self.items += len(group)
        self.groups += 1
        for (_, future), result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class Slot:
    """One of `limit`'s slots, which its holder may take late and give back early: a worker
    takes it before its first request and frees it for another before it awaits its own
    group commit. Taken as a context manager, it is held from the start."""

    def __init__(self, limit: asyncio.Semaphore) -> None:
        self._limit = limit
        self._held = False

    async def __aenter__(self) -> Slot:
        await self.acquire()
        return self

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        """Take the slot unless already held (once released, it can be taken again)."""
        if not self._held:
            await self._limit.acquire()
            self._held = True

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limit.release()
