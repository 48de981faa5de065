"""The original's way of exporting: one customer at a time, look up then write, each awaited.

The lookup is the only one FreeAgent allows. `/v2/contacts` has no e-mail or name filter:
unknown query parameters are ignored and the whole list comes back (reference §5 and its
addendum), so a `?email=` lookup finds nothing and only looks cheap. Like the wrappers, the
seed style lists `view=all`, 100 a page, following the Link header's rel=next, and compares
e-mails client-side (case-insensitive), stopping at the first match. Not knowing which contacts
exist without listing is the original's real cost: into an empty account, the n-th customer
reads ceil(n / 100) pages (at least one) before it finds nothing and POSTs.

A match is updated (PUT of the same body), not skipped: the original exists to make FreeAgent
show what Magento holds, and fa-sync too updates a contact it finds by e-mail, so skipping
would give the seed style less work than fa-sync for the same record. A customer without an
e-mail has nothing to look up by and is POSTed at once.

Nothing overlaps. A 429 is waited out for Retry-After seconds (times `retry_scale`, for a
simulator whose windows are shrunk) and the request sent again, as the original would.
The other yardstick of bench/seed.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.bare import Endpoints, contact, customers

#: One link of a Link header and its rel; the live API quotes rel with ' (reference §6).
_LINK = re.compile(r"<([^>]*)>\s*;\s*rel=[\"']?([^\"';,]+)")


@dataclass
class SeedResult:
    created: int = 0  #: contacts POSTed (201)
    updated: int = 0  #: contacts found by e-mail and PUT (200)
    seconds: float = 0.0  #: until done, or the deadline when it stopped the export
    requests: int = 0  #: FreeAgent requests sent, 429s included
    throttled: int = 0  #: 429s received
    pages: int = 0  #: list pages read by the lookups
    customers: int = 0  #: customers handled (created, updated or refused)
    finished: bool = False  #: False when the deadline stopped the export

    @property
    def exported(self) -> int:
        return self.created + self.updated

    @property
    def rate(self) -> float:
        return self.exported / self.seconds if self.seconds else 0.0


class _OutOfTime(Exception):
    """The deadline passed; the customer being exported is not counted."""


def next_link(header: str | None) -> str | None:
    """The rel=next URL of a Link header, None on the last page."""
    for url, rel in _LINK.findall(header or ""):
        if rel.strip().lower() == "next":
            return str(url)
    return None


@dataclass(frozen=True)
class _Answer:
    status: int
    link: str | None  #: the Link header
    body: bytes


@dataclass
class _Seed:
    """One sequential export: counters, the 429 wait, the deadline and the stop event."""

    session: aiohttp.ClientSession
    ends: Endpoints
    retry_scale: float
    deadline: float | None
    stop: asyncio.Event
    started: float = field(default_factory=time.perf_counter)
    result: SeedResult = field(default_factory=SeedResult)

    def _left(self) -> float:
        """Seconds left; _OutOfTime once the deadline has passed or stop is set."""
        if self.stop.is_set():
            raise _OutOfTime
        if self.deadline is None:
            return float("inf")
        left = self.deadline - (time.perf_counter() - self.started)
        if left <= 0:
            raise _OutOfTime
        return left

    async def send(self, method: str, url: str, **kwargs: Any) -> _Answer:
        """The answer to one request, 429s waited out."""
        headers = self.ends.fa_headers()
        while True:
            self._left()
            async with self.session.request(method, url, headers=headers, **kwargs) as r:
                body = await r.read()
                self.result.requests += 1
                if r.status != 429:
                    return _Answer(r.status, r.headers.get("Link"), body)
                self.result.throttled += 1
                wait = float(r.headers.get("Retry-After", "1")) * self.retry_scale
            if wait >= self._left():
                raise _OutOfTime
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)

    async def lookup(self, email: str) -> str | None:
        """The URL of a contact with this e-mail, listing every page until one matches."""
        wanted = email.casefold()
        url: str | None = self.ends.freeagent + "contacts?view=all&per_page=100"
        while url is not None:
            r = await self.send("GET", url)
            self.result.pages += 1
            for found in json.loads(r.body)["contacts"]:
                if str(found.get("email") or "").casefold() == wanted:
                    return str(found["url"])
            url = next_link(r.link)
        return None

    async def export_one(self, customer: dict[str, Any]) -> None:
        email = customer.get("email") or ""
        url = await self.lookup(email) if email else None
        if url is None:
            r = await self.send("POST", self.ends.freeagent + "contacts", json=contact(customer))
            self.result.created += r.status == 201
        else:
            r = await self.send("PUT", url, json=contact(customer))
            self.result.updated += r.status == 200
        self.result.customers += 1


async def seed_export(
    ends: Endpoints,
    *,
    retry_scale: float = 1.0,
    deadline: float | None = None,
    stop: asyncio.Event | None = None,
) -> SeedResult:
    """Export until done, until `deadline` seconds have passed or until `stop` is set (the
    customer in hand then is not counted)."""
    async with aiohttp.ClientSession() as session:
        seed = _Seed(session, ends, retry_scale, deadline, stop or asyncio.Event())
        try:
            async for customer in customers(session, ends):
                await seed.export_one(customer)
            seed.result.finished = True
        except _OutOfTime:
            pass
        seconds = time.perf_counter() - seed.started
        if deadline is not None and not seed.result.finished:
            seconds = max(seconds, deadline)  # it had until then (a 429 wait may end it sooner)
        seed.result.seconds = seconds
        return seed.result
