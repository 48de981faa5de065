"""FreeAgent OAuth 2: the approval URL, the token endpoint, and a token store shared by replicas.

FreeAgent rotates the refresh token on every refresh: once one holder has refreshed, the old
refresh token must never be sent again. So a refresh is serialised twice: an asyncio.Lock in
the process, and `SELECT ... FOR UPDATE` on the client row across processes. The holder of the
row lock first checks whether another replica already refreshed (a newer usable token in the
row); only if not does it call the token endpoint, and it stores the new pair in the same
transaction before anyone uses it.

Tokens are never logged and never appear in exception messages.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg

from daemon.clients.freeagent_answers import permission_level
from daemon.clients.ratelimit import RateBudget
from daemon.clients.transport import Transport, error_message
from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow
from daemon.errors import ApiError, AuthError, ConfigError, RejectedRecord
from daemon.logs import get_logger
from daemon.secretbox import SecretBox

#: Service name of token-endpoint requests: an AuthError from it is not a stale bearer token.
OAUTH_SERVICE = "freeagent-oauth"
#: Access-token lifetime assumed when the token endpoint omits expires_in (documented value).
DEFAULT_EXPIRES_IN = 3600.0
REAUTHORISE = "re-authorise with `fa-sync client authorize`"

log = get_logger(__name__)


@dataclass(frozen=True)
class TokenSet:
    """One access/refresh pair as issued, with absolute expiry times (UTC)."""

    access_token: str = field(repr=False)  #: bearer token for API calls
    refresh_token: str = field(repr=False)  #: single use: rotated by every refresh
    access_expires_at: datetime  #: now + expires_in
    refresh_expires_at: datetime | None  #: now + refresh_token_expires_in, if sent


def approve_url(client_row: FreeAgentClientRow, state: str) -> str:
    """Where the user approves the app in a browser; FreeAgent redirects back with ?code=."""
    query = urlencode(
        {
            "client_id": client_row.client_id,
            "response_type": "code",
            "redirect_uri": client_row.redirect_uri,
            "state": state,
        }
    )
    return f"{client_row.api_base}approve_app?{query}"


async def exchange_code(
    transport: Transport,
    client_row: FreeAgentClientRow,
    code: str,
    *,
    budget: RateBudget | None = None,
) -> TokenSet:
    """Trade an authorisation code (valid 15 min, single use) for the first token pair.

    budget: the (provisional) budget the exchange is counted in, like every request.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client_row.redirect_uri,
    }
    return await _token_request(
        transport, client_row, form, grant="authorisation code", budget=budget
    )


async def refresh(
    transport: Transport, client_row: FreeAgentClientRow, *, budget: RateBudget | None = None
) -> TokenSet:
    """Trade the row's refresh token for a new pair; the old refresh token dies with it.

    Call only while holding the client row lock (TokenStore does), and store the result
    before using it. The caller has already taken the refresh from the budget.
    """
    if not client_row.refresh_token:
        raise AuthError(f"FreeAgent client {client_row.name}: not authorised yet; {REAUTHORISE}")
    form = {"grant_type": "refresh_token", "refresh_token": client_row.refresh_token}
    return await _token_request(
        transport, client_row, form, grant="refresh token", budget=budget, prepaid=True
    )


async def _token_request(
    transport: Transport,
    client_row: FreeAgentClientRow,
    form: Mapping[str, str],
    *,
    grant: str,
    budget: RateBudget | None = None,
    prepaid: bool = False,
) -> TokenSet:
    """POST the token endpoint: HTTP Basic client auth, form-encoded body (as documented).

    retry=False: after a timeout FreeAgent may already have rotated the refresh token, and
    repeating the request would present a dead one. Only a 429 (not processed) is retried.
    """
    now = datetime.now(UTC)
    credentials = f"{client_row.client_id}:{client_row.client_secret}".encode()
    headers = {
        "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
        "Accept": "application/json",
    }
    first = [True]

    async def spend() -> None:
        # The first attempt may be paid for already (TokenStore pays before the row lock);
        # a retry after a 429 is a new request and pays again.
        was_first, first[0] = first[0], False
        if budget is not None and not (was_first and prepaid):
            await budget.acquire_refresh()

    try:
        response = await transport.request(
            "POST",
            f"{client_row.api_base}token_endpoint",
            headers=headers,
            data=form,
            service=OAUTH_SERVICE,
            retry=False,
            before_send=spend,
            on_rate_limited=budget.refreshes().block if budget is not None else None,
        )
    except (AuthError, RejectedRecord) as exc:
        raise _grant_error(client_row, exc, grant) from exc
    return token_set(response.body, now=now, previous_refresh=client_row.refresh_token)


def refused_grant(exc: ApiError) -> bool:
    """Did the token endpoint refuse the grant itself (a dead refresh token, a used code),
    so that only a person approving the app again can help?

    invalid_grant says so whatever the status: RFC 6749 gives it 400, FreeAgent documents
    no status and has been seen answering 401 (reference §2). A 400 to a refresh means the
    same. A 401 without invalid_grant is FreeAgent's "HTTP Basic: Access denied.": the
    client id or secret (for a code exchange, possibly the code).
    """
    if exc.service != OAUTH_SERVICE:
        return False
    return "invalid_grant" in error_message(exc.body) or exc.status == 400


def _grant_error(client_row: FreeAgentClientRow, exc: ApiError, grant: str) -> AuthError:
    """Say what the operator must do: re-authorise, or fix the client id/secret."""
    words = error_message(exc.body) or str(exc)
    kwargs: dict[str, Any] = {"status": exc.status, "body": exc.body, "service": OAUTH_SERVICE}
    name = f"FreeAgent client {client_row.name}"
    check = (
        f"check the client id (`fa-sync client show {client_row.name}`) and secret "
        "against the app at dev.freeagent.com"
    )
    if "invalid_grant" in words or (exc.status == 400 and grant == "refresh token"):
        return AuthError(f"{name}: {grant} refused; {REAUTHORISE}", **kwargs)
    if exc.status == 401 and grant == "authorisation code":
        # FreeAgent answers a used code and wrong client credentials alike (reference §2).
        return AuthError(
            f"{name}: authorisation code refused, or the client id/secret is wrong "
            f"({words}); approve the app again for a new code and {REAUTHORISE}; "
            f"if that is refused too, {check}",
            **kwargs,
        )
    if exc.status == 401:
        # Without invalid_grant, a 401 is how FreeAgent refuses HTTP Basic client
        # credentials; the refresh token was not even looked at.
        return AuthError(
            f"{name}: client id or secret refused ({words}); {check}; if they are right, "
            f"the refresh token may have been revoked: {REAUTHORISE}",
            **kwargs,
        )
    return AuthError(
        f"{name}: token endpoint refused the {grant} ({words}); {REAUTHORISE}", **kwargs
    )


def token_set(body: Any, *, now: datetime, previous_refresh: str | None = None) -> TokenSet:
    """Read the token endpoint's answer; expiry times come from expires_in, never hard-coded."""
    if not isinstance(body, dict) or not body.get("access_token"):
        raise ApiError(
            "FreeAgent token endpoint answered without an access_token", service=OAUTH_SERVICE
        )
    refresh_token = body.get("refresh_token") or previous_refresh
    if not refresh_token:
        raise ApiError(
            "FreeAgent token endpoint answered without a refresh_token", service=OAUTH_SERVICE
        )
    expires_in = float(body.get("expires_in") or DEFAULT_EXPIRES_IN)
    refresh_in = body.get("refresh_token_expires_in")
    return TokenSet(
        access_token=str(body["access_token"]),
        refresh_token=str(refresh_token),
        access_expires_at=now + timedelta(seconds=expires_in),
        refresh_expires_at=now + timedelta(seconds=float(refresh_in)) if refresh_in else None,
    )


@dataclass(frozen=True)
class _Held:
    """The access token a TokenStore holds."""

    token: str = field(repr=False)
    expires_at: datetime | None  #: None: unknown, so never trusted as fresh
    version: int  #: freeagent_client.token_version of this pair
    lifetime: timedelta | None  #: expires_at minus issue (or save) time, when known


class TokenStore:
    """The current access token of one FreeAgent client, refreshed safely across replicas.

    A token counts as fresh until refresh_margin (60 s) before expiry, or half its lifetime
    when that is shorter: otherwise a replica loading a short-lived token another replica
    has just obtained would refresh it again at once.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        transport: Transport,
        client_id: int,
        *,
        secrets: SecretBox,
        refresh_margin: float = 60.0,
    ) -> None:
        self._pool = pool
        self._secrets = secrets  #: tokens are stored sealed, opened when read
        self._transport = transport
        self.client_id = client_id  #: freeagent_client.id
        self._margin = timedelta(seconds=refresh_margin)
        self._held: _Held | None = None
        self._lock = asyncio.Lock()
        #: The user's request budget, set by ClientFactory: refreshes draw from it too.
        self.budget: RateBudget | None = None

    @property
    def token_version(self) -> int | None:
        """token_version of the pair this store holds (None before first use)."""
        return self._held.version if self._held else None

    async def access_token(self) -> str:
        """A fresh access token: the one held, else the row's, else a refreshed one."""
        held = self._held
        if held is not None and self._fresh(held):
            return held.token
        return await self._renew_unless_renewed(held.token if held else None)

    async def force_refresh(self, seen_token: str) -> str:
        """FreeAgent refused seen_token (401): get a newer one, refreshing only if nobody has."""
        return await self._renew_unless_renewed(seen_token)

    async def save(self, tokens: TokenSet) -> None:
        """Store a freshly exchanged pair (after `client authorize`) and start using it."""
        async with self._lock, translated(f"FreeAgent client {self.client_id}: save tokens"):
            version = await self._pool.fetchval(
                QUERIES["client_save_tokens"],
                self.client_id,
                *_token_columns(tokens, self._secrets),
            )
        self._held = _issued(tokens, int(version))

    async def _renew_unless_renewed(self, seen: str | None) -> str:
        """In-process serialisation: a caller that waited while another one renewed uses that
        token (if not expired) instead of refreshing a second time."""
        async with self._lock:
            held = self._held
            if held is not None and held.token != seen and _unexpired(held.expires_at):
                return held.token
            return await self._renew(seen)

    async def _renew(self, seen: str | None) -> str:
        """Adopt the row's token if usable; else pay the refresh from the user's budget
        (before taking the row lock: never wait on the pool while holding a connection),
        then refresh under the lock."""
        peeked = await self._peek(seen)
        if peeked is not None:
            return peeked
        if self.budget is not None:
            await self.budget.acquire_refresh()
        try:
            return await self._renew_locked(seen)
        except AuthError as exc:
            if refused_grant(exc):
                async with translated(f"FreeAgent client {self.client_id}: flag re-authorise"):
                    await self._pool.execute(
                        QUERIES["client_mark_reauth"], self.client_id, str(exc)
                    )
            raise

    async def _peek(self, seen: str | None) -> str | None:
        """The row's token, without a lock, when it can be used as it is."""
        async with translated(f"FreeAgent client {self.client_id}: read tokens"):
            row = await self._pool.fetchrow(QUERIES["client_get"], self.client_id)
        if row is None:
            return None
        client = self._secrets.opened(FreeAgentClientRow.from_row(row))
        theirs = _held_from_row(client, row["updated_at"])
        if theirs is None or not self._adoptable(theirs, seen):
            return None
        self._held = theirs
        return theirs.token

    async def _renew_locked(self, seen: str | None) -> str:
        """Under the row lock: adopt another replica's token, or refresh and store the pair
        in the same transaction, before anyone uses it (the refresh token rotates)."""
        what = f"FreeAgent client {self.client_id}: token refresh"
        async with self._pool.acquire() as conn, translated(what), conn.transaction():
            row = await conn.fetchrow(QUERIES["client_lock"], self.client_id)
            if row is None:
                raise ConfigError(f"FreeAgent client {self.client_id}: no such client")
            client = self._secrets.opened(FreeAgentClientRow.from_row(row))
            theirs = _held_from_row(client, row["updated_at"])
            if theirs is not None and self._adoptable(theirs, seen):
                self._held = theirs
                log.info("token_adopted", client=client.name, version=theirs.version)
                return theirs.token
            tokens = await refresh(self._transport, client, budget=self.budget)
            version = await conn.fetchval(
                QUERIES["client_save_tokens"], client.id, *_token_columns(tokens, self._secrets)
            )
        self._held = _issued(tokens, int(version))
        log.info("token_refreshed", client=client.name, version=version)
        return tokens.access_token

    def _adoptable(self, theirs: _Held, seen: str | None) -> bool:
        """Use the row's token rather than refresh? Never the one we saw fail or run out.
        If another replica stored a newer pair than the one we held, yes while it has not
        expired; otherwise (e.g. first load) only if it is fresh."""
        if theirs.token == seen:
            return False
        if self._held is not None and theirs.version != self._held.version:
            return _unexpired(theirs.expires_at)
        return self._fresh(theirs)

    def _fresh(self, held: _Held) -> bool:
        if held.expires_at is None:
            return False
        margin = self._margin if held.lifetime is None else min(self._margin, held.lifetime / 2)
        return held.expires_at - datetime.now(UTC) > margin


def _issued(tokens: TokenSet, version: int) -> _Held:
    lifetime = tokens.access_expires_at - datetime.now(UTC)
    return _Held(tokens.access_token, tokens.access_expires_at, version, lifetime)


def _held_from_row(client: FreeAgentClientRow, saved_at: datetime | None) -> _Held | None:
    """The row's access token; its lifetime estimated from when the row was last written."""
    if client.access_token is None:
        return None
    expires_at = client.access_token_expires_at
    lifetime = expires_at - saved_at if expires_at and saved_at and expires_at > saved_at else None
    return _Held(client.access_token, expires_at, client.token_version, lifetime)


def _unexpired(expires_at: datetime | None) -> bool:
    return expires_at is not None and expires_at > datetime.now(UTC)


def _token_columns(
    tokens: TokenSet, secrets: SecretBox
) -> tuple[str, datetime, str, datetime | None]:
    """Arguments 2-5 of client_save_tokens: the tokens sealed."""
    return (
        secrets.seal(tokens.access_token),
        tokens.access_expires_at,
        secrets.seal(tokens.refresh_token),
        tokens.refresh_expires_at,
    )


async def record_identity(
    pool: asyncpg.Pool, client_id: int, *, user: Mapping[str, Any], company: Mapping[str, Any]
) -> None:
    """Remember whom the tokens act for (users/me) and the company: the budget key and the
    permission gate (contact details need level >= 3) are read from the row."""
    level = permission_level(user)  # None when absent or unreadable: the gate refuses it
    async with translated(f"FreeAgent client {client_id}: save identity"):
        await pool.execute(
            QUERIES["client_save_identity"],
            client_id,
            user.get("url"),
            user.get("email"),
            level,
            company.get("name"),
            company.get("subdomain"),
        )
