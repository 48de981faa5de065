"""Group commit and the exporter's slots.

- Items submitted while a group runs share the next group, and each submitter gets its own
  result; an `alone` error is traced to its item, which alone fails.
- A worker frees its concurrency slot before it awaits its outcome write: with one slot, the
  next record's POST goes out while the first record's outcome is still being written.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from daemon.settings import Settings
from profiles.freeagent_contact_export.create import CreateProtocol
from profiles.freeagent_contact_export.groupcommit import GroupCommit, Slot
from profiles.freeagent_contact_export.outcomes import OutcomeWriter
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack


class Refused(Exception):
    pass


async def test_waiting_items_share_one_group_and_get_their_own_results() -> None:
    groups: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int | Exception]:
        groups.append(items)
        if len(groups) == 1:
            await gate.wait()  # the first group is slow: the others queue meanwhile
        return [Refused(i) if i == 3 else i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(run)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(commit.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 0
    assert [await t for t in rest[:2]] == [10, 20]
    with pytest.raises(Refused):
        await rest[2]
    assert groups == [[0], [1, 2, 3]]
    assert (commit.items, commit.groups) == (4, 2)


async def test_an_alone_error_fails_only_its_item() -> None:
    async def run(items: list[int]) -> list[int | Exception]:
        if 2 in items:
            raise Refused("a value PostgreSQL refused")
        return items

    commit: GroupCommit[int, int] = GroupCommit(run, alone=(Refused,))
    results = await asyncio.gather(*(commit.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], Refused)


async def test_a_slot_given_back_early_is_given_back_once() -> None:
    limit = asyncio.Semaphore(1)
    async with Slot(limit) as slot:
        assert limit.locked()
        slot.release()
        assert not limit.locked()
        slot.release()
    assert not limit.locked()
    async with Slot(limit):  # one permit, not two
        assert limit.locked()


async def test_a_slot_taken_late_is_taken_once() -> None:
    limit = asyncio.Semaphore(1)
    slot = Slot(limit)
    assert not slot.held and not limit.locked()
    await slot.acquire()
    await slot.acquire()  # already held: no second permit (it would wait forever)
    assert slot.held and limit.locked()
    slot.release()
    assert not limit.locked()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"export_concurrency": 1})


@pytest.fixture
def magento_state() -> MagentoState:
    state = MagentoState()
    for name in ("ann", "bob", "cy"):
        state.add_customer(email=f"{name}@example.com", firstname=name.title(), lastname="Lee")
    return state


async def test_the_next_post_goes_out_while_an_outcome_is_written(
    pool: asyncpg.Pool,
    stack: Stack,
    run_profile,  # type: ignore[no-untyped-def]
    freeagent_state: FreeAgentState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = asyncio.Event()
    posts_while_held: list[int] = []
    write_all = OutcomeWriter._write_all

    async def slow_first_write(self: OutcomeWriter, outcomes: list) -> list:  # type: ignore[type-arg]
        if not held.is_set():
            held.set()
            # The first outcome write waits until another record's POST has been answered.
            while _posts(freeagent_state) < 2:  # noqa: ASYNC110 (the simulator has no event)
                await asyncio.sleep(0.01)
            posts_while_held.append(_posts(freeagent_state))
        return await write_all(self, outcomes)

    monkeypatch.setattr(OutcomeWriter, "_write_all", slow_first_write)
    outcome = await asyncio.wait_for(run_profile(stack.profile_id), 60)
    assert outcome.counts.created == 3
    assert posts_while_held and posts_while_held[0] >= 2
    statuses = await pool.fetch("SELECT status::text FROM contact_entity")
    assert {r["status"] for r in statuses} == {"created"}


def _posts(state: FreeAgentState) -> int:
    return sum(1 for r in state.requests if r.method == "POST" and r.path == "/v2/contacts")


async def test_a_batch_decides_its_creates_in_one_statement_before_its_first_post(
    stack: Stack,
    run_profile,  # type: ignore[no-untyped-def]
    freeagent_state: FreeAgentState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One concurrency slot, three new customers: the three creates are decided together
    (one fa_decide_creates), before any POST; the POSTs then go out one at a time."""
    groups: list[tuple[int, int]] = []  #: (rows decided, POSTs sent before)
    decide = CreateProtocol._decide_creates

    async def counted(self: CreateProtocol, asks: list) -> dict:  # type: ignore[type-arg]
        groups.append((len(asks), _posts(freeagent_state)))
        return await decide(self, asks)

    monkeypatch.setattr(CreateProtocol, "_decide_creates", counted)
    outcome = await asyncio.wait_for(run_profile(stack.profile_id), 60)
    assert outcome.counts.created == 3
    assert groups == [(3, 0)]
