"""The bare client: the Magento page reads and FreeAgent POSTs of an export, nothing else.

No database, no ledger, no retries, no rate limiter: what an export costs when it does only
the HTTP work. Reads the user, the company and the contact index as fa-sync does at the start
of a run, pages customers (100 a page, keyset on entity_id) and guest orders, and POSTs one
contact per customer with `concurrency` requests in flight. The yardstick of bench/ratio.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from simulators.stack import DEMO_MAGENTO_TOKEN

PAGE = 100
USER_AGENT = "fa-sync-bench/0.1"


@dataclass
class Endpoints:
    """Where the simulators are and the bearer tokens to use."""

    freeagent: str  #: API root ending /v2/
    magento: str  #: root URL
    access_token: str  #: FreeAgent bearer token
    magento_token: str = DEMO_MAGENTO_TOKEN

    def fa_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.access_token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }


@dataclass
class BareResult:
    created: int
    seconds: float
    requests: int  #: FreeAgent requests sent

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0


def criteria(path_filters: list[tuple[str, str, str]], after: int) -> list[tuple[str, str]]:
    """searchCriteria for one keyset page: the filters ANDed, entity_id > after, ascending."""
    query: list[tuple[str, str]] = []
    for group, (field, value, condition) in enumerate(
        [*path_filters, ("entity_id", str(after), "gt")]
    ):
        prefix = f"searchCriteria[filter_groups][{group}][filters][0]"
        query += [(f"{prefix}[field]", field), (f"{prefix}[value]", value),
                  (f"{prefix}[condition_type]", condition)]  # fmt: skip
    return [
        *query,
        ("searchCriteria[sortOrders][0][field]", "entity_id"),
        ("searchCriteria[sortOrders][0][direction]", "ASC"),
        ("searchCriteria[pageSize]", str(PAGE)),
        ("searchCriteria[currentPage]", "1"),
    ]


async def pages(
    session: aiohttp.ClientSession, ends: Endpoints, path: str,
    filters: list[tuple[str, str, str]], id_key: str = "id",
) -> AsyncIterator[list[dict[str, Any]]]:  # fmt: skip
    """Every page of a Magento search, in entity_id order."""
    headers = {"Authorization": f"Bearer {ends.magento_token}"}
    after = 0
    while True:
        url = f"{ends.magento}/rest/V1/{path}"
        async with session.get(url, params=criteria(filters, after), headers=headers) as r:
            r.raise_for_status()
            items = (await r.json()).get("items") or []
        if items:
            yield items
        if len(items) < PAGE:
            return
        after = max(int(item.get(id_key) or 0) for item in items)


def contact(customer: dict[str, Any]) -> dict[str, Any]:
    """The least FreeAgent accepts: a name and the e-mail."""
    return {
        "contact": {
            "first_name": (customer.get("firstname") or "-")[:255],
            "last_name": (customer.get("lastname") or "-")[:255],
            "email": customer.get("email"),
        }
    }


async def customers(
    session: aiohttp.ClientSession, ends: Endpoints
) -> AsyncIterator[dict[str, Any]]:
    """Customers, then guest buyers (their order's billing name and e-mail)."""
    async for page in pages(session, ends, "customers/search", []):
        for customer in page:
            yield customer
    guests = [("customer_is_guest", "1", "eq")]
    async for page in pages(session, ends, "orders", guests, id_key="entity_id"):
        for order in page:
            yield {"firstname": order.get("customer_firstname"),
                   "lastname": order.get("customer_lastname"),
                   "email": order.get("customer_email")}  # fmt: skip


async def bare_export(ends: Endpoints, concurrency: int = 8) -> BareResult:
    """Read everything, POST every contact, `concurrency` POSTs in flight."""
    created = requests = 0
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=concurrency * 4)
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        headers = ends.fa_headers()
        for path in ("users/me", "company", "contacts?view=all&per_page=100"):
            async with session.get(ends.freeagent + path, headers=headers) as r:
                await r.read()
                requests += 1

        async def post() -> None:
            nonlocal created, requests
            while (customer := await queue.get()) is not None:
                async with session.post(
                    ends.freeagent + "contacts", json=contact(customer), headers=headers
                ) as r:
                    await r.read()
                    requests += 1
                    created += r.status == 201

        workers = [asyncio.create_task(post()) for _ in range(concurrency)]
        async for customer in customers(session, ends):
            await queue.put(customer)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        return BareResult(created, time.perf_counter() - started, requests)
