"""FreeAgent's OAuth 2.0 endpoints: approve_app (auto-approving) and token_endpoint.

The quirks we copy on purpose (reference §2): client credentials only via HTTP Basic, a
form-encoded body, single-use codes, refresh tokens that rotate on every refresh, a
15-per-minute refresh cap per user (token requests also count against the user's
request windows), and a plain-text 401 for bad client credentials (and, with
`refused_grants_401`, for a refused code too).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any

from aiohttp import web
from yarl import URL

from simulators.freeagent_state import FREEAGENT_STATE, FreeAgentState, GrantError, Throttle

#: FreeAgent's answer to wrong client credentials, and (observed) to a re-used code.
ACCESS_DENIED = "HTTP Basic: Access denied."


def _grant_error(description: str, error: str = "invalid_grant", status: int = 400) -> web.Response:
    """The token endpoint's OAuth-style error body."""
    return web.json_response({"error": error, "error_description": description}, status=status)


def _refused_code(state: FreeAgentState, description: str) -> web.Response:
    """A code refused: FreeAgent's observed 401 text, or (switched off) RFC 6749's 400."""
    if state.refused_grants_401:
        return web.Response(status=401, text=ACCESS_DENIED)
    return _grant_error(description)


def _refused_refresh(state: FreeAgentState, description: str) -> web.Response:
    """A refresh token refused: invalid_grant, with 401 (harsher) or 400 (RFC 6749)."""
    return _grant_error(description, status=401 if state.refused_grants_401 else 400)


def _basic_client(request: web.Request, state: FreeAgentState) -> str | None:
    """The client_id proven by the Authorization header, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id if state.clients.get(client_id) == secret and secret else None


async def approve_app(request: web.Request) -> web.Response:
    """GET /v2/approve_app: the user always clicks Approve, so redirect with a code."""
    state = request.app[FREEAGENT_STATE]
    query = request.query
    client_id = query.get("client_id", "")
    if client_id not in state.clients:
        return web.Response(status=400, text="Unknown client_id")
    if query.get("response_type") != "code":
        return web.Response(status=400, text="response_type must be code")
    sent = query.get("redirect_uri")
    target = _redirect_target(sent, state.redirect_uris.get(client_id))
    if target is None:
        return web.Response(status=400, text="redirect_uri is missing or not registered")
    params = {"code": state.new_code(client_id, sent)}
    if "state" in query:
        params["state"] = query["state"]
    raise web.HTTPFound(URL(target).update_query(params))


def _redirect_target(sent: str | None, registered: set[str] | None) -> str | None:
    """Where to send the user: the URI sent if allowed, else the only registered one."""
    if sent is None:
        return next(iter(registered)) if registered and len(registered) == 1 else None
    return sent if registered is None or sent in registered else None


async def token_endpoint(request: web.Request) -> web.Response:
    """POST /v2/token_endpoint: authorization_code and refresh_token grants."""
    state = request.app[FREEAGENT_STATE]
    client_id = _basic_client(request, state)
    if client_id is None:
        return web.Response(status=401, text=ACCESS_DENIED)
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    grant_type = fields.get("grant_type")
    try:
        if grant_type == "authorization_code":
            throttle = state.admit_refresh(state.user_for(client_id))
            if throttle is not None:
                return _too_many(state, throttle)
            payload = state.exchange_code(
                client_id, fields.get("code", ""), fields.get("redirect_uri")
            )
        elif grant_type == "refresh_token":
            return _refresh(state, client_id, fields.get("refresh_token", ""))
        else:
            return _grant_error(f"Unsupported grant_type {grant_type!r}", "unsupported_grant_type")
    except GrantError as exc:
        return _refused_code(state, str(exc))
    return _token_response(payload)


def _refresh(state: FreeAgentState, client_id: str, token: str) -> web.Response:
    """Rotate a refresh token, unless it is dead or the user hit the refresh cap."""
    try:
        user_id = state.refresh_user(client_id, token)
    except GrantError as exc:
        return _refused_refresh(state, str(exc))
    throttle = state.admit_refresh(user_id)
    if throttle is not None:
        return _too_many(state, throttle)
    return _token_response(state.rotate(client_id, token))


def _too_many(state: FreeAgentState, throttle: Throttle) -> web.Response:
    """The token endpoint's 429: plain text and Retry-After, like the API's."""
    state.count_429 += 1
    return web.Response(
        status=429, text=throttle.message, headers={"Retry-After": str(throttle.retry_after)}
    )


def _token_response(payload: dict[str, Any]) -> web.Response:
    """Token bodies must never be cached by intermediaries (RFC 6749 §5.1)."""
    return web.json_response(payload, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
