"""The event loop fa-sync's processes run on: uvloop by default, the standard library's on request.

uvloop (libuv underneath) spends less time per callback and per socket operation than the
standard loop, and a run is mostly that: one HTTP request and a few PostgreSQL statements per
record. It has no Windows build; there, or with FA_SYNC_EVENT_LOOP=asyncio, the standard loop
runs everything instead.

The cyclic garbage collector is tuned here too, once per process (see `tune_collector`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: The values of FA_SYNC_EVENT_LOOP.
EventLoop = Literal["uvloop", "asyncio"]

#: The collector's thresholds: a young collection every 10,000 net container allocations
#: (Python's default is 700), older ones after 10 of those each, as by default.
GC_THRESHOLD = (10_000, 10, 10)


@functools.cache
def tune_collector() -> None:
    """Collect reference cycles less often, and never walk what startup loaded again.

    An export allocates and frees a few container objects per request and statement (futures,
    closures, records); at Python's default threshold the collector ran 780 times over a
    10,000-customer export and took about a tenth of fa-sync's own CPU, to find little: nearly
    everything is freed by reference counting. At 10,000 it runs twice. Memory is unchanged
    (bench/run --only memory): what the collector would free sooner is a few thousand
    objects at most. Modules, settings and the like, loaded before the loop starts, are
    frozen (gc.freeze) so that full collections skip them. Once per process (cached)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run(coro: Coroutine[Any, Any, T], *, loop: EventLoop = "uvloop") -> T:
    """Run `coro` to completion on a new event loop, as asyncio.run does, and close the loop.
    uvloop's where it is asked for and importable, else the standard library's. The first
    call tunes the garbage collector (tune_collector)."""
    tune_collector()
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # not installed (Windows): the standard loop does the same work
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
