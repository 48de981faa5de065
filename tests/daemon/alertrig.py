"""The alert tests' rig: a webhook receiver, an SMTP mailbox, and rows to raise alerts from."""

from __future__ import annotations

import asyncio
import email
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import asyncpg
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from daemon.alerts.conditions import FinishedRun
from daemon.alerts.dispatcher import AlertDispatcher
from daemon.context import RunCounts

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOOK_SECRET = "B0SECRET/xoxb-hook-secret-path"
SMTP_PASSWORD = "smtp-pass-never-logged"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@dataclass
class Receiver:
    """A Slack-like incoming webhook: records JSON bodies; answers `fail_next` 500s first."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="try later")
        self.bodies.append(await request.json())
        self.arrived.set()
        return web.Response(text="ok")

    def kinds(self) -> list[list[str]]:
        return [[a["kind"] for a in b["fa_sync"]["alerts"]] for b in self.bodies]


@dataclass
class Mailbox:
    """What the SMTP server on loopback accepted (and who logged in)."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, *args: Any) -> AuthResult:
        data = args[-1]  # (server, session, envelope, mechanism, login and password)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


async def add_profile(pool: asyncpg.Pool, name: str, client_id: int | None = None) -> int:
    return int(await pool.fetchval(
        "INSERT INTO profile (name, type, client_id) VALUES ($1, 'freeagent_contact_export', $2)"
        " RETURNING id", name, client_id,
    ))  # fmt: skip


async def add_run(pool: asyncpg.Pool, profile_id: int, status: str = "complete") -> int:
    return int(await pool.fetchval(
        "INSERT INTO profile_run (profile_id, trigger, scheduled_for, status)"
        " VALUES ($1, 'schedule', clock_timestamp(), $2) RETURNING id", profile_id, status,
    ))  # fmt: skip


async def add_client(pool: asyncpg.Pool, name: str = "acme") -> int:
    return int(await pool.fetchval(
        "INSERT INTO freeagent_client (name, client_id, client_secret) VALUES ($1, 'cid', 'x')"
        " RETURNING id", name,
    ))  # fmt: skip


async def refuse(pool: asyncpg.Pool, client_id: int) -> None:
    """What oauth.py records when FreeAgent answers invalid_grant."""
    await pool.execute(
        "INSERT INTO freeagent_client_reauth (client_id, token_version, reason)"
        " SELECT id, token_version, 'invalid_grant: refresh token refused' FROM freeagent_client"
        " WHERE id = $1 ON CONFLICT (client_id) DO UPDATE SET token_version ="
        " EXCLUDED.token_version", client_id,
    )  # fmt: skip


async def dead_letters(pool: asyncpg.Pool, profile_id: int, run_id: int, n: int) -> None:
    for i in range(n):
        history = [{"run_id": run_id, "outcome": "failed", "attempt": 3}]
        await pool.execute(
            "INSERT INTO contact_entity (profile_id, source_key, status, attempts, last_error,"
            " attempt_history) VALUES ($1, $2, 'failed', 3, $3::jsonb, $4::jsonb)",
            profile_id, f"customer:{i}", {"message": "FreeAgent answered 503"}, history,
        )  # fmt: skip


def failed_run(
    profile_id: int, name: str, run_id: int, failed: int = 5, of: int = 20
) -> FinishedRun:
    counts = RunCounts(created=of - failed, failed=failed)
    return FinishedRun(profile_id, name, run_id, "warning", None, counts)


async def finish(d: AlertDispatcher, run: FinishedRun, now: datetime) -> None:
    await d.run_finished(run, retry_max_attempts=3, now=now)


def error_run(profile_id: int, name: str, run_id: int) -> FinishedRun:
    error = "FreeAgent is down: HTTP 503"
    return FinishedRun(profile_id, name, run_id, "error", error, RunCounts())
