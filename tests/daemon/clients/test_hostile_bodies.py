"""Hostile answers: a body nested 100,000 deep or larger than the cap gives a clear fa-sync
error, never a RecursionError, never a token in stderr or in the error.

A test-local aiohttp app plays the misbehaving server (the FreeAgent simulator stays as the
reference describes FreeAgent); the client under test is the real FreeAgentClient.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from daemon.clients.bodies import parse_body
from daemon.clients.freeagent import FreeAgentClient
from daemon.clients.oauth import TokenStore
from daemon.clients.ratelimit import RateBudget
from daemon.clients.transport import Transport
from daemon.errors import ApiError, EndpointError, TransientApiError
from daemon.settings import Settings
from simulators import freeagent as fa_sim
from tests.logcapture import configured

from .conftest import BOX, SleepRecorder, register_client

DEPTH = 100_000
CAP = 256 * 1024  # above DEEP's 200,000 bytes
DEEP = "[" * DEPTH + "]" * DEPTH


def _hostile_app() -> web.Application:
    """/v2/company answers as the path's prefix says: deep, deep500, huge, chunked."""

    async def company(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind in ("deep", "deep500"):
            status = 500 if kind == "deep500" else 200
            return web.Response(status=status, text=DEEP, content_type="application/json")
        if kind == "huge":  # Content-Length says it all
            return web.Response(body=b"x" * (CAP + 1), content_type="application/json")
        resp = web.StreamResponse()  # chunked: no length declared, the cap is found reading
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b" " * (CAP // 2))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/{kind}/v2/company", company)
    return app


ClientFor = Callable[[str], Any]


@pytest.fixture
async def client_for(
    pool: asyncpg.Pool, aiohttp_server: Any, session: aiohttp.ClientSession,
    sleeps: SleepRecorder,
) -> ClientFor:  # fmt: skip
    """A FreeAgentClient whose base URL is /<kind>/v2/ on the hostile server."""
    server = await aiohttp_server(_hostile_app())
    settings = Settings(
        _env_file=None, http_timeout=5.0, http_retry_attempts=2, http_max_body_bytes=CAP
    )
    transport = Transport(session=session, settings=settings, sleep=sleeps)

    async def make(kind: str) -> tuple[FreeAgentClient, str]:
        state = fa_sim.FreeAgentState()  # only issues the token pair stored on the row
        row = await register_client(pool, state, str(server.make_url(f"/{kind}/v2/")), name=kind)
        tokens = TokenStore(pool, transport, row.id, secrets=BOX)
        budget = RateBudget(pool, row.budget_key, 120, 3600, 60.0, 3600.0)
        client = FreeAgentClient(transport=transport, client_row=row, tokens=tokens, budget=budget)
        return client, row.access_token or ""

    return make


def _leaks(token: str, error: BaseException, err: str) -> list[str]:
    assert isinstance(error, ApiError)
    text = f"{error} {error!r} {json.dumps(error.as_json(), default=str)}"
    return [where for where, s in (("error", text), ("stderr", err)) if token in s]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("deep", EndpointError),  # a 200 that is not the JSON asked for: about the endpoint
        ("deep500", TransientApiError),  # a 5xx stays a server fault, retried
    ],
)
async def test_deeply_nested_json_is_a_clear_error(
    kind: str, error: type[ApiError], client_for: ClientFor, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 100,000-deep JSON answer is a clear fa-sync error, never a RecursionError."""
    client, token = await client_for(kind)
    with configured("json"), pytest.raises(error) as info:
        await client.company()
    err = capsys.readouterr().err
    assert "response_body_not_json" in err
    assert not _leaks(token, info.value, err)


@pytest.mark.parametrize("kind", ["huge", "chunked"])
async def test_oversized_body_is_a_clear_error(
    kind: str, client_for: ClientFor, capsys: pytest.CaptureFixture[str]
) -> None:
    """A body over FA_SYNC_HTTP_MAX_BODY_BYTES, declared or streamed, is dropped with an error
    that names the limit."""
    client, token = await client_for(kind)
    with configured("json"), pytest.raises(TransientApiError) as info:
        await client.company()
    assert "too large" in str(info.value) and str(CAP) in str(info.value)
    assert not _leaks(token, info.value, capsys.readouterr().err)


def test_parse_body_never_raises() -> None:
    """Deep nesting, broken JSON and nesting past the limit come back as the text."""
    assert parse_body("application/json", DEEP.encode()) == DEEP
    assert parse_body("application/json", b'{"a": ') == '{"a": '
    assert parse_body("application/json", b"[" * 100 + b"]" * 100) == "[" * 100 + "]" * 100
    assert parse_body("application/json", b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
