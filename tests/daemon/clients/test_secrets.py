"""Secrets (tokens, client secret, Basic credentials) never reach logs or error messages."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import asyncpg
import pytest

from daemon.clients.transport import RequestLog
from daemon.db.queries import QUERIES
from daemon.errors import ApiError, AuthError
from simulators.freeagent import FreeAgentState

from .conftest import BOX, FreeAgentRig, MakeFreeAgent


async def _secrets(pool: asyncpg.Pool, rig: FreeAgentRig) -> set[str]:
    """Every secret the test client has held: both token pairs, the client secret, Basic."""
    row = await pool.fetchrow(QUERIES["client_get"], rig.row.id)
    basic = base64.b64encode(b"demo-client:demo-secret").decode()
    return {
        rig.row.access_token or "",
        rig.row.refresh_token or "",
        BOX.open(row["access_token"]),
        BOX.open(row["refresh_token"]),
        "demo-secret",
        basic,
    }


async def test_request_log_redacts_tokens_and_credentials(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, tmp_path: Path
) -> None:
    """Logged requests and responses (token endpoint included) carry no secret."""
    log = RequestLog(tmp_path / "requests.jsonl", log_requests=True, log_responses=True)
    rig = await make_freeagent(request_log=log, access_expires_in=-10)  # forces a refresh
    await rig.client.users_me()
    text = log.path.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["url"].rsplit("/", 1)[-1] for e in entries] == ["token_endpoint", "me"]
    assert all(e["request"]["headers"]["Authorization"] == "[redacted]" for e in entries)
    assert entries[0]["response"]["body"]["access_token"] == "[redacted]"
    for secret in await _secrets(pool, rig):
        assert secret not in text


async def test_request_log_can_leave_out_bodies(
    make_freeagent: MakeFreeAgent, tmp_path: Path
) -> None:
    """With requests and responses both off, only method, URL and status are logged."""
    log = RequestLog(tmp_path / "requests.jsonl", log_requests=False, log_responses=False)
    rig = await make_freeagent(request_log=log)
    await rig.client.company()
    (entry,) = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert set(entry) == {"at", "service", "method", "url", "status"}


async def test_error_messages_carry_no_secrets(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent
) -> None:
    """Errors from the API and from the token endpoint never quote a secret."""
    rig = await make_freeagent(FreeAgentState(drop_after_create_rate=1.0))
    errors: list[ApiError] = []
    for payload in ({"email": "x@example.com"}, {"organisation_name": "Dropped Ltd"}):
        with pytest.raises(ApiError) as info:
            await rig.client.create_contact(payload)
        errors.append(info.value)
    expired = await make_freeagent(name="expired", access_expires_in=-10)
    expired.state.rotate("demo-client", expired.row.refresh_token or "")
    with pytest.raises(AuthError) as auth:
        await expired.client.company()
    errors.append(auth.value)
    secrets = await _secrets(pool, rig) | await _secrets(pool, expired)
    for error in errors:
        text = f"{error} {error!r} {json.dumps(error.as_json(), default=str)}"
        assert not [s for s in secrets if s in text]
