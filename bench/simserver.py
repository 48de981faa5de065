"""The simulators in a process of their own, for the benchmarks: `python -m bench.simserver CONFIG`.

CONFIG is JSON: {"customers": N, "guest_orders": M, "freeagent": {FreeAgentState fields}}.
Starts the FreeAgent and Magento simulators and a control server on free loopback ports,
prints one JSON line {"freeagent", "magento", "control"} (root URLs) and serves until killed.
The control server lets the benchmark read what the simulators saw without sharing a process:

    POST /tokens  {"clients": [...]}  register OAuth apps, one user each; their tokens
    GET  /stats                       requests, writes, 429s, busiest rate window
    POST /reset                       forget observations (budgets and data kept)
    POST /touch   {"count": n}        save n customers in Magento (they change)
"""

from __future__ import annotations

# ruff: noqa: T201  (the URLs go to the parent on stdout)
import asyncio
import json
import math
import sys
from collections import Counter
from typing import Any

from aiohttp import web

from daemon.loop import run as run_loop
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import _serve, simulators


def _by_user_and_window(item: tuple[tuple[int | None, int], int]) -> tuple[int, int]:
    (user, index), _ = item
    return user or 0, index


def fa_stats(state: FreeAgentState) -> dict[str, Any]:
    """What FreeAgent saw: requests by kind, writes, 429s, requests admitted per minute window."""
    kinds: Counter[str] = Counter()
    windows: Counter[tuple[int | None, int]] = Counter()
    epoch = state._epoch
    for record in state.requests:
        kinds[f"{record.method} {record.status}"] += 1
        if record.user is not None and record.status != 429:
            index = math.floor((record.time - epoch) / state.minute_window)
            windows[(record.user, index)] += 1
    admitted = sorted(windows.values(), reverse=True)
    return {
        "requests": len(state.requests),
        "kinds": dict(kinds),
        "reads": sum(1 for r in state.requests if r.method == "GET" and r.path.startswith("/v2/")),
        "writes": state.write_count(),
        "posts": sum(1 for r in state.requests if r.method == "POST" and r.reached_handler
                     and r.path.startswith("/v2/contacts")),
        "count_429": sum(1 for r in state.requests if r.status == 429),
        "contacts": len(state.contacts),
        "windows": len(windows),
        "busiest_window": admitted[0] if admitted else 0,
        "window_counts": [
            {"user": user, "index": index, "count": count}
            for (user, index), count in sorted(windows.items(), key=_by_user_and_window)
        ],
    }  # fmt: skip


#: Customers seeded the simulator's way (the awkward cases first); the rest are copies of them
#: under new ids and e-mails, as the seed's uniqueness check is quadratic in the store's size.
TEMPLATE = 300


def magento_store(customers: int, guest_orders: int) -> MagentoState:
    """A store of `customers` customers built in time linear in its size."""
    state = MagentoState.seeded(customers=min(customers, TEMPLATE), guest_orders=guest_orders)
    originals = list(state.customers.values())
    for n in range(customers - len(originals)):
        copy = json.loads(json.dumps(originals[n % len(originals)]))
        copy["id"] = state.next_id("customer")
        copy["email"] = f"c{copy['id']}.{copy.get('email') or 'x@example.com'}"
        for address in copy.get("addresses", []):
            address["customer_id"] = copy["id"]
        state.customers[copy["id"]] = copy
    return state


def control_app(fa: FreeAgentState, mg: MagentoState) -> web.Application:
    async def tokens(request: web.Request) -> web.Response:
        body = await request.json()
        issued = {}
        for client_id in body["clients"]:
            fa.clients.setdefault(client_id, "demo-secret")
            issued[client_id] = fa.issue_tokens(client_id)
        return web.json_response(issued)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {"freeagent": fa_stats(fa), "magento": {"requests": len(mg.requests)}}
        )

    async def reset(_: web.Request) -> web.Response:
        fa.reset_counters()
        mg.requests.clear()
        return web.json_response({})

    async def touch(request: web.Request) -> web.Response:
        count = int((await request.json())["count"])
        ids = sorted(mg.customers)[:count]
        for customer_id in ids:
            name = mg.customers[customer_id].get("lastname") or "X"
            mg.update_customer(customer_id, lastname=f"{name}x"[-40:])
        return web.json_response({"touched": len(ids)})

    app = web.Application()
    app.router.add_post("/tokens", tokens)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/touch", touch)
    return app


async def serve(config: dict[str, Any]) -> None:
    fa = FreeAgentState(**config.get("freeagent", {}))
    mg = magento_store(config.get("customers", 50), config.get("guest_orders", 0))
    async with simulators(freeagent=fa, magento=mg) as stack:
        runner, control = await _serve(control_app(fa, mg))
        print(json.dumps({
            "freeagent": stack.freeagent_url, "magento": stack.magento_url, "control": control,
        }), flush=True)  # fmt: skip
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    run_loop(serve(json.loads(sys.argv[1])))
