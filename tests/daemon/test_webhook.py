"""POST /webhooks/magento and the priority lane, against the simulators and a running daemon."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet
from structlog.testing import capture_logs

from daemon.db.pool import create_pool, migrate
from daemon.db.queries import QUERIES
from daemon.db.records import Profile, RunTrigger
from daemon.errors import ProfileRehearsed
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
from daemon.webhook_payloads import Sender
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
async def webhook_server(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    secret_box: SecretBox,
) -> AsyncIterator[tuple[WebhookServer, str]]:
    """The webhook server of the running daemon and its URL, the stack's connection holding
    SECRET; events sent inside the shop's transaction are handed over at once (settle 0)."""
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    server = WebhookServer(
        pool=pool,
        secrets=secret_box,
        on_event=daemon.priority.on_event,
        clock=utcnow,
        max_body_bytes=2048,
        settle_seconds=0,
    )
    port = await server.start("127.0.0.1", 0)
    yield server, f"http://127.0.0.1:{port}/webhooks/magento"
    await server.stop()


@pytest.fixture
def hooks(webhook_server: tuple[WebhookServer, str]) -> str:
    """The URL of the running daemon's webhook endpoint."""
    return webhook_server[1]


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
    delivery = parse_event(body)
    assert (str(delivery.kind), delivery.customer_id) == expected


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


async def test_a_delivery_that_fails_to_queue_is_queued_when_sent_again(
    pool: asyncpg.Pool, stack: Stack, secret_box: SecretBox
) -> None:
    """Whatever stops queueing (here a bug meeting the event), the signed delivery is
    answered as not queued and its signature forgotten: the sender's retry of the very same
    delivery is queued, not refused as a replay."""
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    calls: list[MagentoEvent] = []

    async def on_event(event: MagentoEvent) -> int:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("a bug meeting this event")
        return 1

    server = WebhookServer(pool=pool, secrets=secret_box, on_event=on_event, clock=utcnow)
    url = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}/webhooks/magento"
    try:
        stamp = time.time()
        first = await _post(url, _saved(7), stamp=stamp)
        again = await _post(url, _saved(7), stamp=stamp)
    finally:
        await server.stop()
    assert first == (500, {"status": "not queued, try again"})
    assert again == (202, {"status": "queued", "queued": 1})
    assert [e.customer_id for e in calls] == [7, 7]


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


# Senders that cannot sign each request: Adobe Commerce Webhooks, Mageplaza Webhook.

TOKEN_HEADER = "X-Shop-Token"
TOKEN = "fixed-header-value-of-the-other-shop"
BASIC_USER = "magento"
BASIC_PASSWORD = "basic-password-of-the-other-shop"


@dataclass
class Recorder:
    """A webhook server whose callback records the events it is handed."""

    server: WebhookServer
    #: URL of the second connection, which accepts TOKEN in TOKEN_HEADER and no signature.
    url: str
    #: URL of the stack's connection, which accepts SECRET signatures only.
    signed_url: str
    other_id: int
    events: list[MagentoEvent] = field(default_factory=list)
    #: The callback raises as queue_event does while a dry run holds the profile.
    failing: bool = False
    #: When set, the callback waits for this before recording (Magento being read).
    hold: asyncio.Event | None = None


@pytest.fixture
async def recorder(
    pool: asyncpg.Pool, stack: Stack, secret_box: SecretBox
) -> AsyncIterator[Recorder]:
    """The stack's connection signs with SECRET; a second connection `other-shop` (same
    Magento) opted in to a fixed header."""
    other = await pool.fetchrow(
        QUERIES["connection_insert"], "other-shop", stack.magento_url, None,
        secret_box.seal("token-of-the-other-shop"), None, None, None,
    )  # fmt: skip
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    await pool.execute(
        QUERIES["webhook_auth_set"], other["id"], "header", TOKEN_HEADER, secret_box.seal(TOKEN)
    )
    name = await pool.fetchval(
        "SELECT name FROM magento_connection WHERE id = $1", stack.connection_id
    )

    async def on_event(event: MagentoEvent) -> int:
        if rec.hold is not None:
            await rec.hold.wait()
        if rec.failing:
            raise ProfileRehearsed("profile demo: a dry run of it is in progress")
        rec.events.append(event)
        return 1

    server = WebhookServer(
        pool=pool, secrets=secret_box, on_event=on_event, clock=utcnow, settle_seconds=0
    )
    base = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}/webhooks/magento"
    rec = Recorder(
        server, f"{base}?connection=other-shop", f"{base}?connection={name}", other["id"]
    )
    yield rec
    await server.stop()


async def _deliver(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST body as a sender that cannot sign would: fixed headers only."""
    headers = {TOKEN_HEADER: TOKEN} if headers is None else headers
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def _adobe(event: str, customer_id: int, key: str = "entity_id") -> bytes:
    """Adobe Commerce Webhooks' shape (`bin/magento webhooks:info`)."""
    entity = {key: customer_id, "email": "someone@example.com", "website_id": 1}
    return json.dumps({"eventName": event, "data": {"data_object": entity}}).encode()


def _mageplaza(hook: str, customer_id: int) -> bytes:
    """The body the README's Mageplaza template renders to."""
    return json.dumps({"hook": hook, "customer_id": str(customer_id)}).encode()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("body", "sender", "expected"),
    [
        # Adobe Commerce Webhooks: eventName, customer in data.data_object.
        (_adobe("observer.customer_save_after", 41), Sender.ADOBE_COMMERCE_WEBHOOKS, ("saved", 41)),
        (
            _adobe("observer.customer_delete_after", 42, key="id"),
            Sender.ADOBE_COMMERCE_WEBHOOKS,
            ("deleted", 42),
        ),
        # Mageplaza's customer hook types, in the README's template.
        (_mageplaza("new_customer", 43), Sender.MAGEPLAZA, ("saved", 43)),
        (_mageplaza("update_customer", 44), Sender.MAGEPLAZA, ("saved", 44)),
        (_mageplaza("delete_customer", 45), Sender.MAGEPLAZA, ("deleted", 45)),
        # Adobe I/O Events, as before.
        (
            b'{"type": "com.adobe.commerce.observer.customer_save_commit_after",'
            b' "data": {"value": {"entity_id": 46}}}',
            Sender.FA_SYNC,
            ("saved", 46),
        ),
    ],
)
def test_each_senders_payload_names_its_customer(
    body: bytes, sender: Sender, expected: tuple[str, int]
) -> None:
    """Every sender's shape names the event, the customer, and whose format it is."""
    delivery = parse_event(body)
    assert (delivery.sender, str(delivery.kind), delivery.customer_id) == (sender, *expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_adobe("observer.customer_save_after", 41), (EventKind.SAVED, 41)),
        (_adobe("observer.customer_delete_after", 42, key="id"), (EventKind.DELETED, 42)),
        (_mageplaza("new_customer", 43), (EventKind.SAVED, 43)),
        (_mageplaza("update_customer", 44), (EventKind.SAVED, 44)),
        (_mageplaza("delete_customer", 45), (EventKind.DELETED, 45)),
        (
            b'{"type": "com.adobe.commerce.observer.customer_delete_commit_after",'
            b' "data": {"value": {"entity_id": 46}}}',
            (EventKind.DELETED, 46),
        ),
    ],
)
async def test_each_shape_queues_its_customer_for_the_connection_it_authenticates(
    recorder: Recorder, body: bytes, expected: tuple[EventKind, int]
) -> None:
    """A delivery carrying the second connection's fixed header hands that connection's
    event over: the right customer, the right kind, the right connection."""
    status, _ = await _deliver(recorder.url, body)
    await recorder.server.drain()
    assert status in (200, 202)
    assert recorder.events == [MagentoEvent(recorder.other_id, *expected)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Adobe Commerce Webhooks: 200 and exactly {"op": "success"}, or the save may abort.
        (_adobe("observer.customer_save_after", 7), (200, {"op": "success"})),
        (_adobe("observer.customer_delete_after", 7), (200, {"op": "success"})),
        # Mageplaza: only 200 and 201 count as delivered.
        (_mageplaza("new_customer", 7), (200, {"status": "accepted"})),
        (_mageplaza("delete_customer", 7), (200, {"status": "accepted"})),
        # fa-sync's own format keeps 202.
        (_saved(7), (202, {"status": "queued", "queued": 1})),
    ],
)
async def test_each_sender_gets_the_answer_it_counts_as_delivered(
    recorder: Recorder, body: bytes, expected: tuple[int, dict[str, Any]]
) -> None:
    """The answer's status and body are what the sender needs to stop sending."""
    assert await _deliver(recorder.url, body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Adobe I/O Events registrations often include orders and customer groups.
        (
            b'{"type": "com.adobe.commerce.observer.sales_order_save_commit_after",'
            b' "data": {"value": {"entity_id": 1000}}}',
            (200, {"status": "ignored", "queued": 0}),
        ),
        (
            b'{"type": "com.adobe.commerce.observer.customer_group_save_commit_after",'
            b' "data": {"value": {"customer_group_id": 4}}}',
            (200, {"status": "ignored", "queued": 0}),
        ),
        # Adobe Commerce Webhooks: still {"op": "success"}.
        (_adobe("observer.sales_order_save_after", 1000), (200, {"op": "success"})),
        # Mageplaza's order hook.
        (b'{"hook": "order", "order_id": "1000"}', (200, {"status": "ignored", "queued": 0})),
    ],
)
async def test_known_events_of_other_entities_are_ignored_not_refused(
    recorder: Recorder, body: bytes, expected: tuple[int, dict[str, Any]]
) -> None:
    """Orders and customer groups are answered 200 ignored (a 400 would be retried forever)
    and nothing is handed over."""
    assert await _deliver(recorder.url, body) == expected
    status, answer = await _post(recorder.signed_url, body)
    assert (status, answer) == expected
    await recorder.server.drain()
    assert recorder.events == []


@pytest.mark.parametrize("body", [b"{not json", b'"customer.saved"', b'{"hook": "new_customer"}'])
async def test_a_malformed_body_is_still_400(recorder: Recorder, body: bytes) -> None:
    """An authenticated body that is not JSON, not an object, or names no customer: 400."""
    status, _ = await _deliver(recorder.url, body)
    assert status == 400
    assert recorder.events == []


async def test_adobe_commerce_webhooks_get_success_when_nothing_can_be_queued(
    recorder: Recorder,
) -> None:
    """A dry run holds the profile: Adobe's save must not fail for it, so the answer is still
    {"op": "success"} and the failure is logged; fa-sync's own format still gets 503."""
    recorder.failing = True
    with capture_logs() as logs:
        adobe = await _deliver(recorder.url, _adobe("observer.customer_save_after", 7))
        await recorder.server.drain()
        plain = await _deliver(recorder.url, _saved(7))
    assert adobe == (200, {"op": "success"})
    assert plain[0] == 503
    assert [e["customer_id"] for e in logs if e["event"] == "webhook_failed"] == [7, 7]


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({TOKEN_HEADER: TOKEN}, True),
        ({}, False),  # no credentials at all
        ({TOKEN_HEADER: TOKEN[:-1]}, False),  # a prefix of the value
        ({TOKEN_HEADER: TOKEN + "x"}, False),  # the value and more
        ({"X-Other-Header": TOKEN}, False),  # the value under another name
        (_basic(TOKEN_HEADER, TOKEN), False),  # Basic, where a header is expected
    ],
)
async def test_fixed_header_is_accepted_only_with_the_exact_value(
    recorder: Recorder, headers: dict[str, str], accepted: bool
) -> None:
    """The opt-in header must carry exactly the stored value; else 401 and nothing queued."""
    status, _ = await _deliver(recorder.url, _mageplaza("new_customer", 7), headers)
    await recorder.server.drain()
    assert (status, len(recorder.events)) == ((200, 1) if accepted else (401, 0))


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        (_basic(BASIC_USER, BASIC_PASSWORD), True),
        (_basic(BASIC_USER, "wrong-password-of-the-other-shop"), False),
        (_basic("someone-else", BASIC_PASSWORD), False),
        ({"Authorization": "Basic not base64!"}, False),
        ({"Authorization": "Bearer " + BASIC_PASSWORD}, False),
        ({TOKEN_HEADER: TOKEN}, False),  # the replaced header no longer works
    ],
)
async def test_basic_credentials_are_accepted_only_when_both_match(
    pool: asyncpg.Pool,
    secret_box: SecretBox,
    recorder: Recorder,
    headers: dict[str, str],
    accepted: bool,
) -> None:
    """HTTP Basic, as Mageplaza sends it: user and password must both match."""
    await pool.execute(
        QUERIES["webhook_auth_set"], recorder.other_id, "basic", BASIC_USER,
        secret_box.seal(BASIC_PASSWORD),
    )  # fmt: skip
    status, _ = await _deliver(recorder.url, _mageplaza("update_customer", 7), headers)
    await recorder.server.drain()
    assert (status, len(recorder.events)) == ((200, 1) if accepted else (401, 0))


async def test_refused_adobe_delivery_queues_nothing_and_never_fails_the_save(
    recorder: Recorder,
) -> None:
    """Wrong credentials on an Adobe Commerce Webhooks delivery: nothing is queued, the
    refusal is logged, and the answer is still {"op": "success"}."""
    with capture_logs() as logs:
        answer = await _deliver(
            recorder.url, _adobe("observer.customer_save_after", 7), {TOKEN_HEADER: "wrong"}
        )
    await recorder.server.drain()
    assert answer == (200, {"op": "success"})
    assert recorder.events == []
    assert "webhook_refused" in [e["event"] for e in logs]


async def test_a_signature_is_still_required_where_no_credentials_were_opted_in(
    recorder: Recorder,
) -> None:
    """The stack's connection has only an HMAC secret: another connection's header does
    not open it, an unsigned body is refused, a signed one is accepted."""
    assert (await _deliver(recorder.signed_url, _saved(7)))[0] == 401
    assert (await _post(recorder.signed_url, _saved(7)))[0] == 202


async def test_credentials_never_appear_in_logs_or_answers(
    pool: asyncpg.Pool, secret_box: SecretBox, recorder: Recorder
) -> None:
    """Accepted and refused deliveries, header and Basic: no log line and no answer holds
    the header value, the password, or the Authorization header."""
    answers = []
    with capture_logs() as logs:
        for headers in ({TOKEN_HEADER: TOKEN}, {TOKEN_HEADER: TOKEN + "x"}):
            answers.append(await _deliver(recorder.url, _mageplaza("new_customer", 7), headers))
            answers.append(
                await _deliver(recorder.url, _adobe("observer.customer_save_after", 7), headers)
            )
        await pool.execute(
            QUERIES["webhook_auth_set"], recorder.other_id, "basic", BASIC_USER,
            secret_box.seal(BASIC_PASSWORD),
        )  # fmt: skip
        for password in (BASIC_PASSWORD, BASIC_PASSWORD + "x"):
            headers = _basic(BASIC_USER, password)
            answers.append(await _deliver(recorder.url, _mageplaza("new_customer", 7), headers))
        await recorder.server.drain()
    text = repr(logs) + repr(answers)
    assert logs and len(recorder.events) == 3
    encoded = _basic(BASIC_USER, BASIC_PASSWORD)["Authorization"].split()[1]
    for secret in (TOKEN, BASIC_PASSWORD, encoded):
        assert secret not in text


async def test_events_sent_inside_the_shops_transaction_are_answered_before_magento_is_read(
    recorder: Recorder,
) -> None:
    """Adobe Commerce Webhooks wait for the answer inside the merchant's save, before it
    commits: the answer does not wait for the event to be handed over (Magento read)."""
    recorder.hold = asyncio.Event()
    answer = await asyncio.wait_for(
        _deliver(recorder.url, _adobe("observer.customer_save_after", 9)), WAIT
    )
    assert answer == (200, {"op": "success"}) and recorder.events == []
    recorder.hold.set()
    await asyncio.wait_for(recorder.server.drain(), WAIT)
    assert recorder.events == [MagentoEvent(recorder.other_id, EventKind.SAVED, 9)]


async def test_adobe_commerce_webhook_exports_the_saved_customer(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    secret_box: SecretBox,
    webhook_server: tuple[WebhookServer, str],
) -> None:
    """observer.customer_save_after with the connection's fixed header: the customer is
    read from Magento and reaches FreeAgent."""
    server, url = webhook_server
    await pool.execute(
        QUERIES["webhook_auth_set"], stack.connection_id, "header", TOKEN_HEADER,
        secret_box.seal(TOKEN),
    )  # fmt: skip
    customer = stack.magento.add_customer(email="adobe@example.com", firstname="A", lastname="D")
    answer = await _deliver(url, _adobe("observer.customer_save_after", customer["id"]))
    assert answer == (200, {"op": "success"})
    await server.drain()
    await _until(daemon.runs_changed, lambda: bool(daemon.outcomes))
    assert [c["email"] for c in stack.freeagent.contacts_list()] == ["adobe@example.com"]


async def test_mageplaza_delete_goes_through_the_delete_policy(
    pool: asyncpg.Pool,
    stack: Stack,
    daemon: Daemon,
    secret_box: SecretBox,
    webhook_server: tuple[WebhookServer, str],
) -> None:
    """new_customer then delete_customer with Basic credentials: created, then hidden."""
    server, url = webhook_server
    await pool.execute(
        "UPDATE profile SET api_behaviour = 'mirror', settings = $1", {"delete_policy": "hide"}
    )
    await pool.execute(
        QUERIES["webhook_auth_set"], stack.connection_id, "basic", BASIC_USER,
        secret_box.seal(BASIC_PASSWORD),
    )  # fmt: skip
    auth = _basic(BASIC_USER, BASIC_PASSWORD)
    customer = stack.magento.add_customer(email="mp@example.com", firstname="M", lastname="P")
    assert await _deliver(url, _mageplaza("new_customer", customer["id"]), auth) == (
        200,
        {"status": "accepted"},
    )
    await server.drain()
    await _until(daemon.runs_changed, lambda: len(daemon.outcomes) >= 1)
    stack.magento.delete_customer(customer["id"])
    status, _ = await _deliver(url, _mageplaza("delete_customer", customer["id"]), auth)
    assert status == 200
    await server.drain()
    await _until(daemon.runs_changed, lambda: len(daemon.outcomes) >= 2)
    assert [c["status"] for c in stack.freeagent.contacts_list()] == ["Hidden"]
    assert await pool.fetchval("SELECT status::text FROM contact_entity") == "hidden"


@pytest.mark.parametrize(
    ("option", "kind", "name"),
    [(("--header", TOKEN_HEADER), "header", TOKEN_HEADER), (("--basic", "shop"), "basic", "shop")],
)
async def test_cli_stores_fixed_credentials_sealed_and_never_shows_them(
    pool: asyncpg.Pool,
    database_dsn: str,
    stack: Stack,
    secret_box: SecretBox,
    tmp_path: Path,
    option: tuple[str, str],
    kind: str,
    name: str,
) -> None:
    """`magento webhook NAME --header H` / `--basic USER` opt in to fixed credentials: the
    secret comes from the environment, is stored sealed and is never shown; a signature
    secret set before stays."""
    conn = await pool.fetchval("SELECT name FROM magento_connection")
    env = {"FA_SYNC_WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(Path(__file__).parents[2])}
    code, _, err = await fa_sync(
        "magento", "webhook", conn, dsn=database_dsn, cwd=tmp_path, env=env
    )
    assert code == 0, err
    env["FA_SYNC_WEBHOOK_SECRET"] = TOKEN
    code, out, err = await fa_sync(
        "magento", "webhook", conn, *option, dsn=database_dsn, cwd=tmp_path, env=env
    )
    assert code == 0, err
    assert TOKEN not in out + err
    row = await pool.fetchrow("SELECT * FROM magento_webhook")
    assert (row["auth_kind"], row["auth_name"]) == (kind, name)
    assert row["auth_secret"] != TOKEN and secret_box.open(row["auth_secret"]) == TOKEN
    assert secret_box.open(row["secret"]) == SECRET


@pytest.mark.parametrize(
    "option",
    [
        ("--header", "Authorization"),  # Basic has its own option
        ("--header", "X-FA-Sync-Signature"),  # ours
        ("--header", "Bad Header"),  # not a header name
        ("--basic", "user:name"),  # a colon ends the user in Basic
        ("--header", TOKEN_HEADER, "--basic", "shop"),  # one or the other
    ],
)
async def test_cli_refuses_unusable_credentials(
    pool: asyncpg.Pool, database_dsn: str, stack: Stack, tmp_path: Path, option: tuple[str, ...]
) -> None:
    """A header name HTTP or fa-sync gives a meaning, or a user Basic cannot carry: exit 1."""
    conn = await pool.fetchval("SELECT name FROM magento_connection")
    env = {"FA_SYNC_WEBHOOK_SECRET": TOKEN, "PYTHONPATH": str(Path(__file__).parents[2])}
    code, _, _ = await fa_sync(
        "magento", "webhook", conn, *option, dsn=database_dsn, cwd=tmp_path, env=env
    )
    assert code == 1
    assert await pool.fetchval("SELECT count(*) FROM magento_webhook") == 0


async def test_fixed_credentials_are_resealed_by_key_rotation(
    pool: asyncpg.Pool, stack: Stack, secret_box: SecretBox
) -> None:
    """`secrets rotate-key` re-seals the fixed header's value or Basic password too."""
    await pool.execute(
        QUERIES["webhook_auth_set"], stack.connection_id, "header", TOKEN_HEADER,
        secret_box.seal(TOKEN),
    )  # fmt: skip
    new = Fernet(Fernet.generate_key())
    rotating = SecretBox(MultiFernet([new, Fernet(TEST_SECRET_KEY)]))
    assert await reseal_all(pool, rotating, plain_only=False) > 0
    stored = await pool.fetchval("SELECT auth_secret FROM magento_webhook")
    assert SecretBox(MultiFernet([new])).open(stored) == TOKEN


async def test_migrate_upgrades_a_webhook_table_from_before_fixed_credentials(
    pool: asyncpg.Pool, stack: Stack, secret_box: SecretBox
) -> None:
    """A database whose magento_webhook has only the signature secret keeps its row and
    takes fixed credentials, without a signature secret, after migrate."""
    await pool.execute(
        """ALTER TABLE magento_webhook
               DROP CONSTRAINT "webhook needs a secret; auth is header or basic",
               DROP COLUMN auth_kind, DROP COLUMN auth_name, DROP COLUMN auth_secret,
               ALTER COLUMN secret SET NOT NULL;
           DELETE FROM fa_sync_schema;"""
    )
    await pool.execute(QUERIES["webhook_secret_set"], stack.connection_id, secret_box.seal(SECRET))
    other = await pool.fetchval(
        QUERIES["connection_insert"], "b", "http://127.0.0.1:1", None, secret_box.seal("t"),
        None, None, None,
    )  # fmt: skip
    await migrate(pool)
    await pool.execute(
        QUERIES["webhook_auth_set"], other, "header", TOKEN_HEADER, secret_box.seal(TOKEN)
    )
    rows = await pool.fetch("SELECT id, secret, auth_kind FROM magento_webhook ORDER BY id")
    assert [(r["id"], r["secret"] is None, r["auth_kind"]) for r in rows] == [
        (stack.connection_id, False, None),
        (other, True, "header"),
    ]
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE magento_webhook SET auth_kind = NULL, auth_name = NULL, auth_secret = NULL"
            " WHERE id = $1",
            other,
        )


async def test_adobe_commerce_webhooks_get_success_while_postgresql_is_out_of_reach(
    database_dsn: str, secret_box: SecretBox
) -> None:
    """No database to check credentials or queue with: fa-sync's own format is told to
    retry (503), Adobe Commerce Webhooks are still told success (the save goes on)."""
    closed = await create_pool(database_dsn, max_size=1)
    await closed.close()
    server = WebhookServer(pool=closed, secrets=secret_box, on_event=_never, clock=utcnow)
    url = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}/webhooks/magento"
    try:
        with capture_logs() as logs:
            adobe = await _deliver(url, _adobe("observer.customer_save_after", 7))
            plain = await _post(url, _saved(7))
    finally:
        await server.stop()
    assert adobe == (200, {"op": "success"})
    assert plain == (503, {"status": "not queued, try again"})
    assert [e["event"] for e in logs].count("webhook_failed") == 2


async def _never(event: MagentoEvent) -> int:
    raise AssertionError(f"nothing may be queued without the database: {event}")
