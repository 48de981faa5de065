"""The export runs alongside the collect: a first sync sends contacts while Magento is still
being read, a collect that fails stops the export after its batch, and an unchanged shop read
in full still asks FreeAgent nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from daemon.errors import EndpointError
from profiles.freeagent_contact_export import collect
from profiles.freeagent_contact_export.collect import Collector
from profiles.freeagent_contact_export.create import CreateProtocol
from simulators.magento import MagentoState
from simulators.stack import Stack

#: How long a test waits for a POST it expects while the collect is held (a failure, not a pace).
DEADLINE = 20.0


@pytest.fixture
def magento_state() -> MagentoState:
    return MagentoState.seeded(customers=90, guest_orders=0)


def _hold_collect(
    monkeypatch: pytest.MonkeyPatch, at_flush: int, then: Callable[[], Any] | None = None
) -> list[int]:
    """From chunk `at_flush` on, the collect waits until a contact has been POSTed (then
    calls `then`); returns the POST counts seen at each held chunk."""
    monkeypatch.setattr(collect, "CHUNK", 20)
    posted = asyncio.Event()
    create = CreateProtocol.create

    async def create_and_tell(self: CreateProtocol, *args: Any) -> Any:
        posted.set()
        return await create(self, *args)

    flush = Collector._flush
    flushes = 0
    seen: list[int] = []

    async def held_flush(self: Collector, chunk: dict[str, Any], stage: str) -> None:
        nonlocal flushes
        if chunk:
            flushes += 1
        if flushes >= at_flush and chunk:
            await asyncio.wait_for(posted.wait(), DEADLINE)
            seen.append(flushes)
            if then is not None:
                then()
        await flush(self, chunk, stage)

    monkeypatch.setattr(CreateProtocol, "create", create_and_tell)
    monkeypatch.setattr(Collector, "_flush", held_flush)
    return seen


async def _statuses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status::text, count(*) FROM contact_entity GROUP BY 1")
    return {r["status"]: r["count"] for r in rows}


async def test_contacts_are_sent_while_the_collect_still_reads(
    pool: asyncpg.Pool, stack: Stack, run_profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third chunk is stored only once a contact was created: the run completes only if
    the export started on the chunks before it. Every customer is still exported once."""
    held = _hold_collect(monkeypatch, at_flush=3)
    outcome = await asyncio.wait_for(run_profile(stack.profile_id), 60)
    assert held, "the collect never reached its third chunk"
    assert outcome.status == "complete", outcome.error
    assert outcome.counts.created + outcome.counts.linked == 90
    assert await _statuses(pool) == {"created": 89, "linked": 1}
    posts = [r for r in stack.freeagent.requests if r.method == "POST"]
    assert len(posts) == 89


async def test_a_failing_collect_stops_the_export_after_its_batch(
    pool: asyncpg.Pool, stack: Stack, run_profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Magento fails mid-collect while contacts are being sent: the run ends with the
    collect's error, rows already sent are recorded, the rest are pending, none is stuck."""

    def fail() -> None:
        raise EndpointError("Magento answered 503 to every retry", service="magento")

    _hold_collect(monkeypatch, at_flush=3, then=fail)
    await pool.execute("UPDATE profile SET batch_size = 10")
    outcome = await asyncio.wait_for(run_profile(stack.profile_id), 60)
    assert outcome.status == "error"
    assert "Magento answered 503" in (outcome.error or "")
    statuses = await _statuses(pool)
    assert set(statuses) <= {"created", "linked", "pending"}
    assert 0 < statuses.get("created", 0) < 90
    assert sum(statuses.values()) == 40  # two chunks stored before the failing one


async def test_an_unchanged_shop_read_in_full_asks_freeagent_nothing(
    stack: Stack, run_profile
) -> None:
    """A full collect stores every customer again; none changed, so no chunk makes anything
    due and the export never starts (no FreeAgent request, no export slot)."""
    first = await run_profile(stack.profile_id)
    assert first.counts.created + first.counts.linked == 90
    before = len(stack.freeagent.requests)
    again = await run_profile(stack.profile_id, full=True)
    assert again.status == "complete"
    assert again.counts.collected == 90
    assert len(stack.freeagent.requests) == before
