"""The original's way of exporting: one customer at a time, look up then POST, each awaited.

For every customer from Magento's pages: one FreeAgent GET (does a contact with this e-mail
exist?), then one POST; nothing overlaps. A 429 is waited out (Retry-After, scaled like the
simulator's windows) and the request sent again. The other yardstick of bench/seed.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.bare import Endpoints, contact, customers


@dataclass
class SeedResult:
    created: int
    seconds: float
    requests: int  #: FreeAgent requests sent, 429s included
    throttled: int  #: 429s received

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0


async def seed_export(
    ends: Endpoints, *, retry_scale: float = 1.0, deadline: float | None = None
) -> SeedResult:
    """Export until done or until `deadline` seconds have passed."""
    created = requests = throttled = 0
    headers = ends.fa_headers()
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()

        async def send(method: str, url: str, **kwargs: object) -> int:
            nonlocal requests, throttled
            while True:
                async with session.request(method, url, headers=headers, **kwargs) as r:  # type: ignore[arg-type]
                    await r.read()
                    requests += 1
                    if r.status != 429:
                        return r.status
                    throttled += 1
                    wait = float(r.headers.get("Retry-After", "1")) * retry_scale
                await asyncio.sleep(wait)

        async for customer in customers(session, ends):
            if deadline is not None and time.perf_counter() - started >= deadline:
                break
            email = customer.get("email") or ""
            await send("GET", ends.freeagent + "contacts", params={"view": "all", "per_page": "1",
                                                                   "email": email})  # fmt: skip
            created += (
                await send("POST", ends.freeagent + "contacts", json=contact(customer)) == 201
            )
        return SeedResult(created, time.perf_counter() - started, requests, throttled)
