"""POST /webhooks/magento: Magento tells fa-sync a customer was saved or deleted.

A separate listener (FA_SYNC_WEBHOOK_LISTEN, off by default), because Magento must reach it
from outside while /healthz, /readyz and /metrics stay on loopback.

Each delivery is checked before anything is queued, in this order:

    size       larger than FA_SYNC_WEBHOOK_MAX_BODY_BYTES          -> 413
    signature  X-FA-Sync-Timestamp: <unix seconds>
               X-FA-Sync-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
               with the secret of the connection named by ?connection=NAME (or the only
               connection with a secret); compared in constant time -> 401
    freshness  timestamp within FA_SYNC_WEBHOOK_TOLERANCE_SECONDS of our clock -> 401
    replay     a signature already accepted (PostgreSQL, shared by replicas)   -> 200 duplicate
    event      JSON naming a known event and a customer id                     -> 400

then handed to the `on_event` callback (the profile type queues it) and answered 202.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from aiohttp import web

from daemon.db.queries import QUERIES
from daemon.errors import ConfigError, FaSyncError
from daemon.health import listen
from daemon.logs import get_logger
from daemon.secretbox import SecretBox

log = get_logger(__name__)

TIMESTAMP_HEADER = "X-FA-Sync-Timestamp"
SIGNATURE_HEADER = "X-FA-Sync-Signature"
PATH = "/webhooks/magento"


class EventKind(StrEnum):
    SAVED = "saved"
    DELETED = "deleted"


#: Event names accepted, Adobe Commerce I/O Events' and the plain JSON body's.
EVENT_NAMES = {
    "observer.customer_save_commit_after": EventKind.SAVED,
    "observer.customer_delete_commit_after": EventKind.DELETED,
    "customer.saved": EventKind.SAVED,
    "customer.deleted": EventKind.DELETED,
}
ADOBE_PREFIX = "com.adobe.commerce."


@dataclass(frozen=True)
class MagentoEvent:
    """One customer event of one Magento connection."""

    connection_id: int
    kind: EventKind
    customer_id: int


OnEvent = Callable[[MagentoEvent], Awaitable[int]]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a sender computes (and we recompute)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _customer_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        return number if 0 < number < 2**63 else None
    return None


def parse_event(body: bytes) -> tuple[EventKind, int]:
    """(kind, customer id) of a delivery, or ValueError saying what is wrong with it.

    Adobe Commerce I/O Events: {"type": "com.adobe.commerce.observer.customer_save_commit_after",
    "data": {"value": {"entity_id": 7, "email": ..., "website_id": ...}}} (`event_code` or
    `event` also name the event; `id` also names the customer).
    Plain: {"event": "customer.saved" | "customer.deleted", "customer_id": 7}.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("body is not a JSON object")
    names = [doc[k] for k in ("event", "type", "event_code") if isinstance(doc.get(k), str)]
    name = names[0] if names else ""
    kind = EVENT_NAMES.get(name.removeprefix(ADOBE_PREFIX))
    if kind is None:
        raise ValueError(f"unknown event {name[:80]!r}")
    data = doc.get("data")
    entity = data.get("value", data) if isinstance(data, dict) else None
    candidates = [doc.get("customer_id")]
    if isinstance(entity, dict):
        candidates += [entity.get("entity_id"), entity.get("id")]
    customer_id = next((c for c in map(_customer_id, candidates) if c is not None), None)
    if customer_id is None:
        raise ValueError("no customer id in the event")
    return kind, customer_id


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
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._on_event = on_event
        self._clock = clock
        self._max_body = max_body_bytes
        self._tolerance = tolerance_seconds
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(PATH, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self._max_body:
            return _answer(413, "body too large")
        body = await request.read()  # aiohttp answers 413 itself past client_max_size
        connection_id = await self._verify(request, body)
        if connection_id is None:
            return _answer(401, "bad signature")
        stamp = request.headers[TIMESTAMP_HEADER].strip()
        if abs(self._clock().timestamp() - int(stamp)) > self._tolerance:
            log.warning("webhook_refused", reason="stale timestamp")
            return _answer(401, "stale timestamp")
        try:
            kind, customer_id = parse_event(body)
        except ValueError as exc:
            log.warning("webhook_refused", reason=str(exc))
            return _answer(400, str(exc))
        signature = request.headers[SIGNATURE_HEADER].strip().lower()
        seen = await self._pool.fetchval(
            QUERIES["webhook_seen"], signature, 2 * self._tolerance + 60
        )
        if seen is None:
            log.info("webhook_duplicate", customer_id=customer_id)
            return _answer(200, "duplicate", queued=0)
        event = MagentoEvent(connection_id, kind, customer_id)
        try:
            queued = await self._on_event(event)
        except FaSyncError as exc:
            # Magento or PostgreSQL unavailable: the sender retries; forget the signature so
            # the retry is not taken for a replay.
            await self._pool.execute(QUERIES["webhook_forget"], signature)
            log.warning("webhook_failed", customer_id=customer_id, error=str(exc))
            return _answer(503, "not queued, try again")
        log.info("webhook_queued", kind=str(kind), customer_id=customer_id, rows=queued)
        return _answer(202, "queued", queued=queued)

    async def _verify(self, request: web.Request, body: bytes) -> int | None:
        """The connection whose secret signed this body, else None."""
        stamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or not given:
            return None
        rows = await self._pool.fetch(QUERIES["webhook_secrets"])
        wanted = request.query.get("connection")
        if wanted is not None:
            rows = [r for r in rows if r["name"] == wanted]
        if len(rows) != 1:
            return None
        try:
            secret = self._secrets.open(rows[0]["secret"])
        except ConfigError:
            log.error("webhook_secret_unreadable", connection=rows[0]["name"])
            return None
        if not hmac.compare_digest(sign(secret, stamp, body).encode(), given.encode()):
            log.warning("webhook_refused", reason="bad signature")
            return None
        return int(rows[0]["id"])

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


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"status": message, **extra}, status=status)
