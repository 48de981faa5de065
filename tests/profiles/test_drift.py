"""Drift: a contact edited in FreeAgent since fa-sync last wrote it, under each on_drift policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.db.queries import QUERIES
from profiles.freeagent_contact_export.drift import (
    Drift,
    decide_drift,
    detect_drift,
    holds_exactly,
)
from simulators.freeagent import FreeAgentState
from simulators.magento import MagentoState
from simulators.stack import Stack
from tests.clirun import fa_sync
from tests.fakes import FakeNow
from tests.profiles.test_export_e2e import _customer, _plain_person

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WRITTEN = {"at": T0.isoformat(), "fields": {"town": "Leeds", "last_name": "Lee", "address2": ""}}


def _fa(minutes: float, **fields: Any) -> dict[str, Any]:
    stamp = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {"updated_at": stamp, "town": "Leeds", "last_name": "Lee", **fields}


@pytest.mark.parametrize(
    ("written", "contact", "drifted"),
    [
        (None, _fa(10, town="York"), None),  # no record of our write: cannot tell
        (WRITTEN, None, None),  # contact not indexed
        (WRITTEN, _fa(1, town="York"), None),  # updated_at within the slack: our own write
        (WRITTEN, _fa(10), None),  # edited, but none of our fields changed
        (WRITTEN, _fa(10, town="  leeds "), None),  # FreeAgent tidying case/spaces: no edit
        (WRITTEN, _fa(10, address2=None), None),  # empty and absent are the same
        (WRITTEN, _fa(10, town="York"), {"town": ("York", "Leeds")}),
        (WRITTEN, {**_fa(0, town="York"), "updated_at": None}, {"town": ("York", "Leeds")}),
        (WRITTEN, _fa(10, town="York", last_name="Lee-Smith"),
         {"town": ("York", "Leeds"), "last_name": ("Lee-Smith", "Lee")}),
    ],
)  # fmt: skip
def test_detect_drift(written: Any, contact: Any, drifted: Any) -> None:
    """Drift means FreeAgent changed a field we wrote after our write, and really changed it."""
    drift = detect_drift(written, contact)
    assert (drift.fields if drift else None) == drifted


BODY = {"town": "Hull", "last_name": "Lee", "email": "a@b.c"}
TOWN = Drift({"town": ("York", "Leeds")})


@pytest.mark.parametrize(
    ("policy", "drift", "kept_before", "action", "body", "kept"),
    [
        ("overwrite", TOWN, ["email"], "send", BODY, []),  # overwrite also takes kept back
        ("overwrite", None, [], "send", BODY, []),
        ("keep", TOWN, [], "send", {"last_name": "Lee", "email": "a@b.c"}, ["town"]),
        ("keep", None, ["town"], "send", {"last_name": "Lee", "email": "a@b.c"}, ["town"]),
        ("keep", Drift({k: ("x", "y") for k in BODY}), [], "skip", {}, sorted(BODY)),
        ("review", TOWN, [], "review", {}, []),
        ("review", None, [], "send", BODY, []),  # no drift: an ordinary update
    ],
)
def test_decide_drift(
    policy: Any, drift: Drift | None, kept_before: list[str], action: str, body: Any, kept: Any
) -> None:
    """Each policy's update: overwrite sends all, keep leaves drifted fields, review waits."""
    decision = decide_drift(
        policy, drift, BODY, kept_before=kept_before, previous=WRITTEN["fields"]
    )
    assert (decision.action, decision.body, decision.kept) == (action, body, kept)
    if policy == "keep" and drift is TOWN:
        assert decision.written["town"] == "York"  # FreeAgent's value is now the one we know


@pytest.fixture
def now() -> FakeNow:
    return FakeNow(T0)


@pytest.fixture
def freeagent_state(now: FakeNow) -> FreeAgentState:
    return FreeAgentState(wall_clock=now)


@pytest.fixture
def magento_state() -> MagentoState:
    return MagentoState.seeded(customers=20, guest_orders=0)


def _has_town(c: dict[str, Any]) -> bool:
    return _plain_person(c) and any(
        a.get("default_billing") and a.get("city") for a in c.get("addresses", [])
    )


async def _edited_in_freeagent(
    pool: asyncpg.Pool, stack: Stack, run_profile, now: FakeNow, on_drift: str
) -> tuple[dict[str, Any], str, str]:
    """Export, edit one contact's town in FreeAgent, rename the customer in Magento."""
    await pool.execute("UPDATE profile SET settings = $1::jsonb", {"on_drift": on_drift})
    customer = _customer(stack.magento, _has_town)
    await run_profile(stack.profile_id, clock=now)
    url = await pool.fetchval(
        "SELECT freeagent_url FROM contact_entity WHERE source_key = $1",
        f"customer:{customer['id']}",
    )
    ours = _contact(stack, url)["town"]
    now.advance(600)
    stack.freeagent.update_contact(int(url.rsplit("/", 1)[1]), {"town": "Edited Town"})
    stack.magento.update_customer(customer["id"], lastname="Renamed")
    now.advance(60)
    stack.freeagent.reset_counters()
    return customer, url, ours


def _contact(stack: Stack, url: str) -> dict[str, Any]:
    return next(c for c in stack.freeagent.contacts_list() if c["url"] == url)


async def _row(pool: asyncpg.Pool, customer: dict[str, Any]) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT * FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )


def _puts(stack: Stack) -> int:
    return sum(1 for r in stack.freeagent.requests if r.method == "PUT" and r.reached_handler)


async def test_overwrite_replaces_the_edit_and_notes_it(
    pool: asyncpg.Pool, stack: Stack, run_profile, now: FakeNow
) -> None:
    """overwrite: the PUT restores our value; drift counted on the run and noted on the row."""
    customer, url, ours = await _edited_in_freeagent(pool, stack, run_profile, now, "overwrite")
    outcome = await run_profile(stack.profile_id, clock=now)
    assert _contact(stack, url)["town"] == ours
    assert _contact(stack, url)["last_name"] == "Renamed"
    assert outcome.counts.drifted == 1
    run = await pool.fetchrow("SELECT drifted FROM profile_run WHERE id = $1", outcome.run_id)
    assert run["drifted"] == 1
    row = await _row(pool, customer)
    assert row["status"] == "updated"
    drift = row["metadata"]["drift"]
    assert drift["fields"] == {"town": {"freeagent": "Edited Town", "ours": ours}}


async def test_keep_leaves_the_edited_field_alone_from_then_on(
    pool: asyncpg.Pool, stack: Stack, run_profile, now: FakeNow
) -> None:
    """keep: only undrifted fields are sent, now and on later updates."""
    customer, url, _ = await _edited_in_freeagent(pool, stack, run_profile, now, "keep")
    outcome = await run_profile(stack.profile_id, clock=now)
    assert outcome.counts.drifted == 1
    assert _contact(stack, url)["town"] == "Edited Town"
    assert _contact(stack, url)["last_name"] == "Renamed"
    row = await _row(pool, customer)
    assert row["metadata"]["kept_fields"] == ["town"]
    stack.magento.update_customer(customer["id"], lastname="Again")
    now.advance(600)
    outcome = await run_profile(stack.profile_id, clock=now)
    assert outcome.counts.drifted == 0  # our own write is not drift
    assert _contact(stack, url)["town"] == "Edited Town"
    assert _contact(stack, url)["last_name"] == "Again"


async def test_review_waits_then_applies_the_decision(
    pool: asyncpg.Pool, stack: Stack, run_profile, now: FakeNow, database_dsn: str, tmp_path: Path
) -> None:
    """review: nothing is written and the row waits as needs_review; a decision is applied once."""
    customer, url, ours = await _edited_in_freeagent(pool, stack, run_profile, now, "review")
    outcome = await run_profile(stack.profile_id, clock=now)
    assert outcome.counts.drifted == 1
    assert _puts(stack) == 0
    row = await _row(pool, customer)
    assert row["status"] == "needs_review"
    assert set(row["metadata"]["drift"]["fields"]) == {"town"}
    assert _contact(stack, url)["town"] == "Edited Town"
    now.advance(60)
    again = await run_profile(stack.profile_id, clock=now)  # a waiting row is not claimed
    assert again.counts.drifted == 0 and _puts(stack) == 0
    code, out, err = await fa_sync(
        "queue", "resolve", str(row["id"]), "--overwrite", dsn=database_dsn, cwd=tmp_path
    )
    assert code == 0, err
    assert "overwrite on the next run" in out
    assert await pool.fetchval(QUERIES["entity_resolve_review"], row["id"], "keep") is None
    now.advance(60)
    await run_profile(stack.profile_id, clock=now)
    assert _contact(stack, url)["town"] == ours
    row = await _row(pool, customer)
    assert row["status"] == "updated"
    assert "drift_resolution" not in row["metadata"]


@pytest.mark.parametrize(
    ("theirs", "body", "holds"),
    [
        ({"first_name": "Ada", "town": "Leeds"}, {"first_name": "Ada", "town": "Leeds"}, True),
        # FreeAgent omits empty fields: absent, null and "" are one
        ({"first_name": "Ada"}, {"first_name": "Ada", "address2": ""}, True),
        ({"first_name": "Ada", "address2": None}, {"first_name": "Ada"}, True),
        # exact: a difference in case or spacing alone is still a difference to send
        ({"last_name": "smith"}, {"last_name": "Smith"}, False),
        ({"last_name": "Smith "}, {"last_name": "Smith"}, False),
        # the documented types are not a contract: a number as text is not the number
        ({"default_payment_terms_in_days": "30"}, {"default_payment_terms_in_days": 30}, False),
        ({"uses_contact_invoice_sequence": 1}, {"uses_contact_invoice_sequence": True}, False),
        # a field we send that FreeAgent does not hold, or holds empty
        ({"first_name": "Ada"}, {"first_name": "Ada", "town": "Leeds"}, False),
        ({"town": ""}, {"town": "Leeds"}, False),
        # fields FreeAgent holds and we do not send are not ours to judge
        ({"first_name": "Ada", "phone_number": "0113"}, {"first_name": "Ada"}, True),
        (None, {"first_name": "Ada"}, False),  # not in the index: send
    ],
)
def test_a_linked_contact_is_left_unwritten_only_when_it_holds_exactly_our_values(
    theirs: dict[str, Any] | None, body: dict[str, Any], holds: bool
) -> None:
    assert holds_exactly(theirs, body) is holds
