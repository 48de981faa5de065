"""POST /webhooks/magento: Magento tells fa-sync a customer was saved or deleted.

A separate listener (FA_SYNC_WEBHOOK_LISTEN, off by default), because Magento must reach it
from outside while /healthz, /readyz and /metrics stay on loopback.

Each delivery is checked before anything is queued, in this order:

    size       larger than FA_SYNC_WEBHOOK_MAX_BODY_BYTES                     -> 413
    sender     the connection named by ?connection=NAME (or the only connection accepting
               webhooks), then either
      signed   X-FA-Sync-Timestamp: <unix seconds>
               X-FA-Sync-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
               compared in constant time                                    -> 401
               timestamp within FA_SYNC_WEBHOOK_TOLERANCE_SECONDS of our clock -> 401
      or       the connection's opt-in fixed secret header or HTTP Basic credentials, for
               senders that cannot sign each request (Mageplaza), in constant time -> 401
    event      JSON naming a known event and a customer id (webhook_payloads) -> 400;
               a known event of no use to fa-sync (orders, customer groups) -> 200 ignored
    replay     signed only: a signature already accepted (PostgreSQL, shared by replicas)
                                                                            -> 200 duplicate

then handed to the `on_event` callback (the profile type queues it) and answered 202, or, for
events sent while the shop's transaction is still open (Adobe Commerce Webhooks, Mageplaza),
answered at once and handed over FA_SYNC_WEBHOOK_SETTLE_SECONDS later.

Adobe Commerce Webhooks get 200 {"op": "success"} whatever happened (see `_answer`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from daemon.db.queries import QUERIES
from daemon.errors import ConfigError, FaSyncError
from daemon.health import listen
from daemon.logs import get_logger
from daemon.secretbox import SecretBox
from daemon.webhook_payloads import (
    EVENT_NAMES,
    Delivery,
    EventKind,
    RefusedDelivery,
    Sender,
    parse_event,
)

__all__ = ["EVENT_NAMES", "EventKind", "MagentoEvent", "WebhookServer", "parse_event", "sign"]

log = get_logger(__name__)

TIMESTAMP_HEADER = "X-FA-Sync-Timestamp"
SIGNATURE_HEADER = "X-FA-Sync-Signature"
PATH = "/webhooks/magento"
#: What asking PostgreSQL raises while it is out of reach (closed pool, refused connection).
UNREACHABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True)
class MagentoEvent:
    """One customer event of one Magento connection."""

    connection_id: int
    kind: EventKind
    customer_id: int


OnEvent = Callable[[MagentoEvent], Awaitable[int]]


@dataclass(frozen=True)
class Sent:
    """Who a delivery comes from, once its credentials hold."""

    #: The Magento connection whose secret or credentials it carries.
    connection_id: int
    #: The signature of a signed delivery (the replay guard's key); None for credentials.
    signature: str | None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a sender computes (and we recompute)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _same(given: str | bytes, expected: str) -> bool:
    """Constant-time equality of a presented credential and the stored one."""
    raw = given if isinstance(given, bytes) else given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(raw, expected.encode())


def credentials_hold(request: web.Request, kind: str, name: str, secret: str) -> bool:
    """Whether the request carries the connection's fixed header (`kind` "header": header
    `name` equals `secret`) or Basic credentials (`kind` "basic": user `name`, password
    `secret`). Both are compared whole, in constant time."""
    if kind == "header":
        return _same(request.headers.get(name, ""), secret)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        presented = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return _same(presented, f"{name}:{secret}")


class WebhookServer:
    """The webhook app; start() binds it, stop() closes it."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        secrets: SecretBox,
        on_event: OnEvent,
        clock: Callable[[], datetime],
        max_body_bytes: int = 65536,
        tolerance_seconds: float = 300.0,
        settle_seconds: float = 5.0,
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._on_event = on_event
        self._clock = clock
        self._max_body = max_body_bytes
        self._tolerance = tolerance_seconds
        self._settle = settle_seconds
        self._settling: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(PATH, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self._max_body:
            return _answer(Sender.FA_SYNC, 413, "body too large")
        body = await request.read()  # aiohttp answers 413 itself past client_max_size
        try:
            delivery: Delivery | RefusedDelivery = parse_event(body)
        except RefusedDelivery as exc:
            delivery = exc
        try:
            return await self._handle(request, body, delivery)
        except UNREACHABLE as exc:
            # PostgreSQL down or restarting before anything was queued: the sender may retry
            # (Adobe Commerce Webhooks are still told success: see _answer).
            log.warning("webhook_failed", error=f"database: {type(exc).__name__}: {exc}")
            return _answer(delivery.sender, 503, "not queued, try again")

    async def _handle(
        self, request: web.Request, body: bytes, delivery: Delivery | RefusedDelivery
    ) -> web.Response:
        sender = delivery.sender
        sent = await self._authenticate(request, body)
        if sent is None:
            return _answer(sender, 401, "bad signature or credentials")
        if sent.signature is not None and self._stale(request):
            log.warning("webhook_refused", reason="stale timestamp")
            return _answer(sender, 401, "stale timestamp")
        if isinstance(delivery, RefusedDelivery):
            log.warning("webhook_refused", reason=str(delivery), sender=str(sender))
            return _answer(sender, 400, str(delivery))
        if delivery.kind is None or delivery.customer_id is None:
            log.info("webhook_ignored", event_name=delivery.name, sender=str(sender))
            return _answer(sender, 200, "ignored", queued=0)
        if sent.signature is not None and not await self._first_time(sent.signature):
            log.info("webhook_duplicate", customer_id=delivery.customer_id)
            return _answer(sender, 200, "duplicate", queued=0)
        event = MagentoEvent(sent.connection_id, delivery.kind, delivery.customer_id)
        if delivery.in_transaction:
            self._settle_then_queue(event)
            return _answer(sender, 202, "accepted")
        return await self._queue_now(sender, sent, event)

    async def _queue_now(self, sender: Sender, sent: Sent, event: MagentoEvent) -> web.Response:
        try:
            queued = await self._on_event(event)
        except Exception as exc:
            # Not queued, whatever the reason (Magento or PostgreSQL unavailable, a dry run
            # holding a profile, a bug meeting this event): the sender retries, so forget the
            # signature or the retry would be taken for a replay and the event lost.
            if sent.signature is not None:
                with contextlib.suppress(*UNREACHABLE):
                    await self._pool.execute(QUERIES["webhook_forget"], sent.signature)
            if not isinstance(exc, (FaSyncError, *UNREACHABLE)):
                log.exception("webhook_crashed", customer_id=event.customer_id)
                return _answer(sender, 500, "not queued, try again")
            log.warning("webhook_failed", customer_id=event.customer_id, error=str(exc))
            return _answer(sender, 503, "not queued, try again")
        log.info("webhook_queued", kind=str(event.kind), customer_id=event.customer_id, rows=queued)
        return _answer(sender, 202, "queued", queued=queued)

    def _stale(self, request: web.Request) -> bool:
        stamp = request.headers[TIMESTAMP_HEADER].strip()
        return abs(self._clock().timestamp() - int(stamp)) > self._tolerance

    async def _first_time(self, signature: str) -> bool:
        seen = await self._pool.fetchval(
            QUERIES["webhook_seen"], signature, 2 * self._tolerance + 60
        )
        return seen is not None

    def _settle_then_queue(self, event: MagentoEvent) -> None:
        """Queue the event once the shop's transaction has had time to commit.

        Adobe Commerce Webhooks and Mageplaza call fa-sync from inside the save or delete
        (customer_save_after, customer_delete_after / _before), before Magento commits it:
        read now, Magento would answer with the customer as it was (a new one not found, a
        deleted one still there), and Adobe's save would wait on our reading. So the sender
        is answered at once and the event handed over FA_SYNC_WEBHOOK_SETTLE_SECONDS later,
        in this process: an event lost to a restart or a failure here (logged
        webhook_failed) is found by the next scheduled run, as every change is."""
        task = asyncio.create_task(self._queue_settled(event), name="webhook-settle")
        self._settling.add(task)
        task.add_done_callback(self._settled)

    async def _queue_settled(self, event: MagentoEvent) -> None:
        await asyncio.sleep(self._settle)
        try:
            queued = await self._on_event(event)
        except FaSyncError as exc:
            log.warning("webhook_failed", customer_id=event.customer_id, error=str(exc))
            return
        log.info("webhook_queued", kind=str(event.kind), customer_id=event.customer_id, rows=queued)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("webhook_failed", error=repr(exc), exc_info=exc)

    async def drain(self) -> None:
        """Wait until every event answered ahead of its queueing has been handed over."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _authenticate(self, request: web.Request, body: bytes) -> Sent | None:
        """The connection this delivery comes from, if its signature or credentials hold."""
        rows = await self._pool.fetch(QUERIES["webhook_secrets"])
        wanted = request.query.get("connection")
        if wanted is not None:
            rows = [r for r in rows if r["name"] == wanted]
        if len(rows) != 1:
            log.warning("webhook_refused", reason="no connection accepts it")
            return None
        row = rows[0]
        signed = TIMESTAMP_HEADER in request.headers or SIGNATURE_HEADER in request.headers
        signature: str | None = None
        try:
            if signed and row["secret"] is not None:
                signature = self._signature(request, body, self._secrets.open(row["secret"]))
                ok = signature is not None
            elif row["auth_kind"] is not None:
                secret = self._secrets.open(row["auth_secret"])
                ok = credentials_hold(request, row["auth_kind"], row["auth_name"], secret)
            else:
                ok = False
        except ConfigError:
            log.error("webhook_secret_unreadable", connection=row["name"])
            return None
        if not ok:
            log.warning("webhook_refused", reason="bad signature or credentials")
            return None
        return Sent(int(row["id"]), signature)

    @staticmethod
    def _signature(request: web.Request, body: bytes, secret: str) -> str | None:
        """The delivery's signature if it is this secret's, else None."""
        stamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or not given:
            return None
        if not hmac.compare_digest(sign(secret, stamp, body).encode(), given.encode()):
            return None
        return given

    async def start(self, address: str, port: int) -> int:
        """Listen on address:port (port 0: any free one); returns the bound port."""
        self._runner, bound = await listen(
            self.app(), address, port, name="webhook server",
            fix="set FA_SYNC_WEBHOOK_LISTEN=host:port, or unset it to disable the endpoint",
        )  # fmt: skip
        log.info("webhook_listening", address=address, port=bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._settling:
            task.cancel()
        await self.drain()


def _answer(sender: Sender, status: int, message: str, **extra: Any) -> web.Response:
    """The answer each sender needs.

    Adobe Commerce Webhooks: always 200 {"op": "success"}. Adobe calls us synchronously,
    inside the merchant's save or delete, and any other answer (an error status, a body
    without "op": "success") can abort that action. Nothing that goes wrong here may stop a
    shop from saving its customers: not a dry run holding a profile, not PostgreSQL or Magento
    being out of reach, not a refused credential (logged webhook_refused; nothing is queued),
    not an event we cannot use. The next scheduled run finds every change anyway.

    Mageplaza counts only 200 and 201 as delivered, so what it sends and fa-sync takes is 200.
    fa-sync's own format keeps 202 for queued and accepted, 503 for "try again".
    """
    if sender is Sender.ADOBE_COMMERCE_WEBHOOKS:
        return web.json_response({"op": "success"}, status=200)
    if sender is Sender.MAGEPLAZA and status == 202:
        status = 200
    return web.json_response({"status": message, **extra}, status=status)
