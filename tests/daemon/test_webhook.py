"""POST /webhooks/magento and the priority lane, against the simulators and a running daemon."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet

from daemon.db.queries import QUERIES
from daemon.db.records import Profile, RunTrigger
from daemon.process import Daemon
from daemon.runner import utcnow
from daemon.secretbox import SecretBox, reseal_all
from daemon.settings import Settings
from daemon.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventKind,
    MagentoEvent,
    WebhookServer,
    parse_event,
    sign,
)
from profiles.freeagent_contact_export.events import queue_event
from simulators.stack import Stack
from tests.clirun import fa_sync

# The running-daemon fixture of test_process, reused: its name shadows the parameter names.
from tests.daemon.test_process import WAIT, _until, daemon  # noqa: F401
from tests.secretkeys import TEST_SECRET_KEY

SECRET = "s3cret-shared-with-magento"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One record at a time per run, so the order of writes at FreeAgent says who went first."""
    return settings.model_copy(update={"export_concurrency": 1})


@pytest.fixture
async def hooks(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    secret_box: SecretBox,
) -> AsyncIterator[str]:
    """The webhook endpoint of the running daemon, the stack's connection holding SECRET."""
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    server = WebhookServer(
        pool=pool,
        secrets=secret_box,
        on_event=daemon.priority.on_event,
        clock=utcnow,
        max_body_bytes=2048,
    )
    port = await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}/webhooks/magento"
    await server.stop()


async def _post(
    url: str, body: bytes, *, secret: str = SECRET, stamp: float | None = None
) -> tuple[int, dict[str, Any]]:
    ts = str(int(time.time() if stamp is None else stamp))
    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body)}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def _saved(customer_id: int) -> bytes:
    return json.dumps({"event": "customer.saved", "customer_id": customer_id}).encode()


async def _nothing_queued(pool: asyncpg.Pool, stack: Stack) -> None:
    assert await pool.fetchval("SELECT count(*) FROM contact_entity") == 0
    assert not [r for r in stack.magento.requests if "/customers/" in r.path]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # The plain body a Magento Open Source webhook module sends.
        (b'{"event": "customer.saved", "customer_id": 7}', ("saved", 7)),
        (b'{"event": "customer.deleted", "customer_id": "8"}', ("deleted", 8)),
        # Adobe Commerce I/O Events: full type name, customer in data.value.
        (
            b'{"type": "com.adobe.commerce.observer.customer_save_commit_after",'
            b' "data": {"value": {"entity_id": 9, "email": "a@b.c", "website_id": 1}}}',
            ("saved", 9),
        ),
        (
            b'{"event_code": "observer.customer_delete_commit_after",'
            b' "data": {"value": {"id": 3}}}',
            ("deleted", 3),
        ),
    ],
)
def test_accepted_payloads(body: bytes, expected: tuple[str, int]) -> None:
    """Both payload shapes name the event and the customer."""
    kind, customer_id = parse_event(body)
    assert (str(kind), customer_id) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "order.placed", "customer_id": 7}',  # not a customer event
        b'{"event": "customer.saved"}',  # no customer
        b'{"event": "customer.saved", "customer_id": -4}',  # not an id
        b'{"event": "customer.saved", "customer_id": true}',  # JSON true is not 1
        b"[1, 2]",
        b"\xff\xfe",
    ],
)
def test_refused_payloads(body: bytes) -> None:
    """Anything but a known customer event with a usable id is refused."""
    with pytest.raises(ValueError):
        parse_event(body)


async def test_bad_signature_is_401_and_queues_nothing(
    pool: asyncpg.Pool, stack: Stack, hooks: str
) -> None:
    """A body signed with another secret is refused before Magento is even asked."""
    customer = stack.magento.add_customer(email="new@example.com", firstname="N", lastname="W")
    status, _ = await _post(hooks, _saved(customer["id"]), secret="not-the-secret-at-all")
    assert status == 401
    await _nothing_queued(pool, stack)
    assert await pool.fetchval("SELECT count(*) FROM webhook_seen") == 0


async def test_stale_timestamp_is_refused(pool: asyncpg.Pool, stack: Stack, hooks: str) -> None:
    """A correctly signed delivery from ten minutes ago is a replay: refused."""
    customer = stack.magento.add_customer(email="old@example.com", firstname="O", lastname="D")
    status, body = await _post(hooks, _saved(customer["id"]), stamp=time.time() - 600)
    assert (status, body["status"]) == (401, "stale timestamp")
    await _nothing_queued(pool, stack)


async def test_oversized_body_is_413(pool: asyncpg.Pool, stack: Stack, hooks: str) -> None:
    """A body over the cap is refused unread."""
    body = json.dumps({"event": "customer.saved", "customer_id": 1, "pad": "x" * 4096}).encode()
    status, _ = await _post(hooks, body)
    assert status == 413
    await _nothing_queued(pool, stack)


async def test_unknown_event_is_400(pool: asyncpg.Pool, stack: Stack, hooks: str) -> None:
    """A signed delivery of an event fa-sync does not handle is a 400, nothing queued."""
    status, _ = await _post(hooks, b'{"event": "order.placed", "customer_id": 1}')
    assert status == 400
    await _nothing_queued(pool, stack)


async def test_replayed_delivery_queues_once(pool: asyncpg.Pool, stack: Stack, hooks: str) -> None:
    """The same signed delivery twice: the second is answered as a duplicate, not queued."""
    customer = stack.magento.add_customer(email="twice@example.com", firstname="T", lastname="W")
    stamp = time.time()
    first = await _post(hooks, _saved(customer["id"]), stamp=stamp)
    second = await _post(hooks, _saved(customer["id"]), stamp=stamp)
    assert first[0] == 202 and first[1]["queued"] == 1
    assert second == (200, {"status": "duplicate", "queued": 0})
    gets = [r for r in stack.magento.requests if r.path.endswith(f"/customers/{customer['id']}")]
    assert len(gets) == 1


def _contact_number(url: str) -> int:
    return int(url.rstrip("/").rsplit("/", 1)[1])


async def test_saved_customer_is_exported_before_the_backlogs_next_batch(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    hooks: str,
) -> None:
    """During a first sync, a customer saved in Magento reaches FreeAgent ahead of every row
    that was still waiting in the backlog when the event arrived (the run's priority lane)."""
    await pool.execute("UPDATE profile SET batch_size = 5 WHERE id = $1", stack.profile_id)
    gate = stack.freeagent.faults.write_gate = asyncio.Event()
    backlog = asyncio.create_task(
        daemon.run_fire(stack.profile_id, datetime.now(UTC), RunTrigger.MANUAL)
    )
    try:
        await asyncio.wait_for(stack.freeagent.faults.wait_gated(1), WAIT)  # batch 1 is writing
        customer = stack.magento.add_customer(
            email="urgent@example.com", firstname="U", lastname="R"
        )
        status, answer = await _post(hooks, _saved(customer["id"]))
        assert (status, answer["queued"]) == (202, 1)
        waiting = {
            r["source_key"]
            for r in await pool.fetch(
                "SELECT source_key FROM contact_entity WHERE status = 'pending'"
            )
        } - {f"customer:{customer['id']}"}
        assert len(waiting) > 5, "the backlog should still have more than one batch to go"
        await asyncio.wait_for(stack.freeagent.faults.wait_gated(2), WAIT)  # the lane is writing
    finally:
        gate.set()
    await asyncio.wait_for(backlog, 60)

    rows = {r["source_key"]: r for r in await pool.fetch("SELECT * FROM contact_entity")}
    urgent = rows[f"customer:{customer['id']}"]
    assert urgent["status"] == "created" and not urgent["priority"]
    # Contacts the waiting rows created (a row may instead link to an earlier one's contact).
    later = [
        _contact_number(rows[k]["freeagent_url"]) for k in waiting if rows[k]["status"] == "created"
    ]
    assert later, "the backlog was exported"
    assert _contact_number(urgent["freeagent_url"]) < min(later)
    # The running run took it: no second run was started for the event.
    assert await pool.fetchval("SELECT count(*) FROM profile_run") == 1


async def test_a_customer_saved_again_while_its_contact_is_written_is_sent_again(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    hooks: str,
) -> None:
    """The second save arrives while the first one's POST is on the wire: the POST's outcome
    must not bury it (the row was out for export; the newer record goes out after it)."""
    await pool.execute("UPDATE profile SET batch_size = 5 WHERE id = $1", stack.profile_id)
    gate = stack.freeagent.faults.write_gate = asyncio.Event()
    backlog = asyncio.create_task(
        daemon.run_fire(stack.profile_id, datetime.now(UTC), RunTrigger.MANUAL)
    )
    try:
        await asyncio.wait_for(stack.freeagent.faults.wait_gated(1), WAIT)  # a POST is held
        writing = await pool.fetchrow(
            "SELECT id, magento_customer_id FROM contact_entity WHERE status = 'creating'"
        )
        assert writing is not None and writing["magento_customer_id"] is not None
        stack.magento.update_customer(writing["magento_customer_id"], lastname="Renamed")
        status, _ = await _post(hooks, _saved(writing["magento_customer_id"]))
        assert status == 202
    finally:
        gate.set()
    await asyncio.wait_for(backlog, 60)

    row = await pool.fetchrow("SELECT * FROM contact_entity WHERE id = $1", writing["id"])
    assert row["status"] == "updated", "the newer record was sent in the same run"
    contact = next(c for c in stack.freeagent.contacts_list() if c["url"] == row["freeagent_url"])
    assert contact["last_name"] == "Renamed"
    assert "recollected" not in row["metadata"]


async def test_event_on_an_idle_profile_starts_a_priority_run(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    hooks: str,
) -> None:
    """No run active: the event starts one that exports that customer alone, no backlog."""
    customer = stack.magento.add_customer(email="solo@example.com", firstname="S", lastname="O")
    status, _ = await _post(hooks, _saved(customer["id"]))
    assert status == 202
    await _until(daemon.runs_changed, lambda: bool(daemon.outcomes))
    assert daemon.outcomes[-1].counts.created == 1
    row = await pool.fetchrow("SELECT * FROM contact_entity")
    assert row["source_key"] == f"customer:{customer['id']}" and row["status"] == "created"
    [contact] = stack.freeagent.contacts_list()
    assert contact["email"] == "solo@example.com"


@pytest.mark.parametrize(
    ("behaviour", "profile_settings", "expected"),
    [
        # mirror with delete_policy hide: the contact is hidden
        ("mirror", '{"delete_policy": "hide"}', ("Hidden", "hidden")),
        # mirror with delete_policy delete: FreeAgent deletes a contact without history
        ("mirror", '{"delete_policy": "delete"}', (None, "deleted")),
        # the deprecated alias, outside mirror, as it always worked
        ("upsert", '{"events": {"hide_deleted_customers": true}}', ("Hidden", "hidden")),
    ],
)
async def test_deleted_customer_goes_through_the_delete_policy(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    hooks: str,
    behaviour: str,
    profile_settings: str,
    expected: tuple[str | None, str],
) -> None:
    """A delete event Magento confirms (404) goes through the profile's delete policy."""
    await pool.execute(
        "UPDATE profile SET api_behaviour = $1, settings = $2",
        behaviour,
        json.loads(profile_settings),
    )
    customer = stack.magento.add_customer(email="gone@example.com", firstname="G", lastname="O")
    await _post(hooks, _saved(customer["id"]))
    await _until(daemon.runs_changed, lambda: len(daemon.outcomes) >= 1)
    stack.magento.delete_customer(customer["id"])
    body = json.dumps({"event": "customer.deleted", "customer_id": customer["id"]}).encode()
    status, answer = await _post(hooks, body)
    assert (status, answer["queued"]) == (202, 1)
    await _until(daemon.runs_changed, lambda: len(daemon.outcomes) >= 2)
    contacts = stack.freeagent.contacts_list()
    assert [c["status"] for c in contacts] == ([expected[0]] if expected[0] else [])
    assert await pool.fetchval("SELECT status::text FROM contact_entity") == expected[1]


async def test_cli_stores_the_secret_sealed_and_never_shows_it(
    pool: asyncpg.Pool, database_dsn: str, stack: Stack, secret_box: SecretBox, tmp_path: Path
) -> None:
    """`magento webhook NAME` reads the secret from the environment (never argv), stores it
    sealed, says nothing of it; `--off` refuses the shop's webhooks again."""
    name = await pool.fetchval("SELECT name FROM magento_connection")
    # This tree's code, wherever the virtualenv's own copy of fa-sync points.
    env = {"FA_SYNC_WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(Path(__file__).parents[2])}
    code, out, err = await fa_sync(
        "magento", "webhook", name, dsn=database_dsn, cwd=tmp_path, env=env
    )
    assert code == 0, err
    assert SECRET not in out + err
    stored = await pool.fetchval("SELECT secret FROM magento_webhook")
    assert stored != SECRET and secret_box.open(stored) == SECRET
    code, _, err = await fa_sync(
        "magento", "webhook", name, "--off", dsn=database_dsn, cwd=tmp_path, env=env
    )
    assert code == 0, err
    assert await pool.fetchval("SELECT count(*) FROM magento_webhook") == 0


@pytest.mark.parametrize(
    ("listen", "address"),
    [(None, None), ("0.0.0.0:9109", ("0.0.0.0", 9109)), ("[::1]:80", ("::1", 80))],  # noqa: S104
)
def test_webhook_listen_setting(settings: Settings, listen: str | None, address: object) -> None:
    """FA_SYNC_WEBHOOK_LISTEN: unset means no endpoint; else host:port."""
    assert settings.model_copy(update={"webhook_listen": listen}).webhook_address() == address


async def test_rows_queued_while_nobody_listened_get_a_run(
    pool: asyncpg.Pool, stack: Stack, daemon: Daemon
) -> None:
    """A row that entered the lane without a NOTIFY heard (daemon down, listener
    reconnecting) is exported when listening (re)starts."""
    customer = stack.magento.add_customer(email="late@example.com", firstname="L", lastname="A")
    profiles = [Profile.from_row(r) for r in await pool.fetch("SELECT * FROM profile")]
    event = MagentoEvent(stack.connection_id, EventKind.SAVED, customer["id"])
    assert await queue_event(pool, daemon.services.factory, profiles, event) == [stack.profile_id]
    await daemon.priority.resume()
    await _until(daemon.runs_changed, lambda: bool(daemon.outcomes))
    assert daemon.outcomes[-1].counts.created == 1
    assert [c["email"] for c in stack.freeagent.contacts_list()] == ["late@example.com"]


async def test_webhook_secrets_are_resealed_by_key_rotation(
    pool: asyncpg.Pool, stack: Stack, secret_box: SecretBox
) -> None:
    """`secrets rotate-key` re-seals webhook secrets too: the new key alone opens them."""
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    new = Fernet(Fernet.generate_key())
    rotating = SecretBox(MultiFernet([new, Fernet(TEST_SECRET_KEY)]))
    assert await reseal_all(pool, rotating, plain_only=False) > 0
    stored = await pool.fetchval("SELECT secret FROM magento_webhook")
    assert SecretBox(MultiFernet([new])).open(stored) == SECRET
