"""The event loop fa-sync's processes run on: uvloop by default, the standard library's on request.

uvloop (libuv underneath) spends less time per callback and per socket operation than the
standard loop, and a run is mostly that: one HTTP request and a few PostgreSQL statements per
record. It has no Windows build; there, or with FA_SYNC_EVENT_LOOP=asyncio, the standard loop
runs everything instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: The values of FA_SYNC_EVENT_LOOP.
EventLoop = Literal["uvloop", "asyncio"]


def run(coro: Coroutine[Any, Any, T], *, loop: EventLoop = "uvloop") -> T:
    """Run `coro` to completion on a new event loop, as asyncio.run does, and close the loop.
    uvloop's where it is asked for and importable, else the standard library's."""
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
