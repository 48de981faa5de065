"""Faults of the FreeAgent simulator that the reference allows and a client must survive.

Switches on `FreeAgentState.faults`; counts are one-shot (each fault used decrements it):

- `commit_delay`: POST /v2/contacts is held; the contact is stored this many seconds after
  arrival and only then answered. A client whose timeout is shorter gives up first, and the
  contact appears anyway (the slow create of issue 7).
- `gateway_504`: the next N creates are answered 504 at once (an HTML gateway page) while
  the backend stores the contact `commit_delay` seconds later.
- `lost_creates`: the next N creates are answered 504 and never stored.
- `write_latency`: seconds added to every POST/PUT/DELETE (a slow FreeAgent for writes).
- `nested_responses` / `nested_depth`: the next N API answers are JSON arrays nested that deep.
- `oversized_responses` / `oversized_bytes`: the next N API answers carry a padding field of
  that many bytes.
- `endless_pages`: the contacts listing always links to a next page; pages past the data are
  empty (a paging bug a client must not follow for ever).
- `xml_responses`: the next N API answers are the handler's answer rendered as XML, despite
  `Accept: application/json` (reported in [F579]); the handler has acted (a create is stored).
  `xml_methods` narrows it to some methods (e.g. only POST).

- `write_gate`: an asyncio.Event; while it is unset, POST/PUT/DELETE wait for it after
  being counted (the test opens it). `wait_gated(n)`: n writes have reached the gate.

Tests await `faults.wait_held(n)` (n creates are being held) and `faults.settled()` (every held
create has been stored) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

_GATEWAY_PAGE = (
    "<html><head><title>504 Gateway Time-out</title></head>"
    "<body><h1>504 Gateway Time-out</h1></body></html>"
)


@dataclass
class Faults:
    """Switchable misbehaviour; all off by default."""

    commit_delay: float = 0.0  #: seconds between a create's arrival and its commit
    gateway_504: int = 0  #: creates answered 504 at once, committed commit_delay later
    lost_creates: int = 0  #: creates answered 504 and never committed
    write_latency: float = 0.0  #: seconds added to POST/PUT/DELETE
    nested_responses: int = 0  #: API answers replaced by deeply nested JSON
    nested_depth: int = 100_000  #: nesting depth of those answers
    oversized_responses: int = 0  #: API answers padded to oversized_bytes
    oversized_bytes: int = 20_000_000  #: size of the padding field
    endless_pages: bool = False  #: every contacts page links to a next one
    xml_responses: int = 0  #: API answers rendered as XML after the handler ran
    xml_methods: frozenset[str] = frozenset()  #: only these methods' answers (all when empty)
    write_gate: asyncio.Event | None = None  #: writes wait while it is unset
    gated_total: int = 0  #: writes that reached a closed gate so far
    held_total: int = 0  #: creates held so far (commit_delay or behind a 504)
    _held: set[asyncio.Task[int | None]] = field(default_factory=set)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    _gate_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def commit_later(self, commit: Callable[[], int]) -> asyncio.Task[int | None]:
        """Store a contact commit_delay seconds from now, whatever happens to the request."""

        async def later() -> int | None:
            await asyncio.sleep(self.commit_delay)
            try:
                return commit()
            except Exception:  # a validation failure (ContactError): nothing is stored
                return None

        task = asyncio.get_running_loop().create_task(later())
        self._held.add(task)
        self.held_total += 1
        for n, waiter in self._waiters:
            if n <= self.held_total and not waiter.done():
                waiter.set_result(None)
        return task

    async def wait_held(self, count: int) -> None:
        """Wait until `count` creates have arrived and are being held."""
        if self.held_total >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    async def at_gate(self) -> None:
        """A write arrived: wait while the gate is closed."""
        gate = self.write_gate
        if gate is None or gate.is_set():
            return
        self.gated_total += 1
        self._release_waiters(self.gated_total, self._gate_waiters)
        await gate.wait()

    async def wait_gated(self, count: int) -> None:
        """Wait until `count` writes have reached the closed gate."""
        if self.gated_total >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._gate_waiters.append((count, waiter))
        await waiter

    @staticmethod
    def _release_waiters(total: int, waiters: list[tuple[int, asyncio.Future[None]]]) -> None:
        for n, waiter in waiters:
            if n <= total and not waiter.done():
                waiter.set_result(None)

    async def settled(self) -> None:
        """Wait until every held create has been committed (or refused)."""
        while self._held:
            done = list(self._held)
            await asyncio.gather(*done)
            self._held.difference_update(done)

    def take(self, name: str) -> bool:
        """Use one of a one-shot fault's remaining count."""
        left = int(getattr(self, name))
        if left <= 0:
            return False
        setattr(self, name, left - 1)
        return True

    def xml_due(self, method: str) -> bool:
        """Whether this answer is one of the xml_responses."""
        if self.xml_methods and method not in self.xml_methods:
            return False
        return self.take("xml_responses")

    def gateway_timeout(self) -> web.Response:
        """What a gateway in front of FreeAgent answers when the backend is slow."""
        return web.Response(status=504, text=_GATEWAY_PAGE, content_type="text/html")

    def odd_body(self) -> web.Response | None:
        """A deeply nested or oversized JSON answer, if one is due."""
        if self.take("nested_responses"):
            depth = self.nested_depth
            return web.Response(text="[" * depth + "]" * depth, content_type="application/json")
        if self.take("oversized_responses"):
            body = json.dumps({"contacts": [], "padding": "x" * self.oversized_bytes})
            return web.Response(text=body, content_type="application/json")
        return None


def as_xml(response: web.Response) -> web.Response:
    """The same answer as Rails' XML renderer would give it: status, headers, XML body."""
    try:
        value = json.loads(response.body) if isinstance(response.body, bytes) else None
    except ValueError:
        value = None
    body = '<?xml version="1.0" encoding="UTF-8"?>\n' + _xml_node("hash", value)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    headers.pop("Content-Length", None)
    return web.Response(
        status=response.status, text=body, content_type="application/xml", headers=headers
    )


def _xml_node(name: str, value: Any) -> str:
    """One element: objects as children, lists as repeated <item>s, scalars as text."""
    tag = name.replace("_", "-")
    if isinstance(value, dict):
        inner = "".join(_xml_node(key, item) for key, item in value.items())
    elif isinstance(value, list):
        inner = "".join(_xml_node("item", item) for item in value)
    elif value is None:
        return f"<{tag}/>"
    else:
        inner = escape(str(value).lower() if isinstance(value, bool) else str(value))
    return f"<{tag}>{inner}</{tag}>"
