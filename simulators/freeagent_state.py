"""State of the FreeAgent simulator: OAuth grants, rate windows, contacts and what was asked.

One `FreeAgentState` is shared by every request of one simulated FreeAgent. Tests build it,
hand it to `create_app()` and then both drive it (seed contacts, inject faults, move the
clock) and inspect it (requests seen, writes, 429s, refreshes). Time comes from the two
injectable clocks so token expiry and window resets can be tested without sleeping.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulators.freeagent_contacts import (
    ContactError,
    format_timestamp,
    prepare_changes,
    render_contact,
)
from simulators.freeagent_faults import Faults

#: Where helpers build contact URLs before any request has told us our own address.
FALLBACK_BASE_URL = "http://127.0.0.1"


def _utc_now() -> datetime:
    """Wall-clock time for created_at/updated_at: FreeAgent reports UTC."""
    return datetime.now(UTC)


def _default_company() -> dict[str, Any]:
    """A UK limited company, VAT registered: the common case for our users."""
    return {
        "id": 1,
        "name": "Demo Trading Ltd",
        "subdomain": "demo-trading",
        "type": "UkLimitedCompany",
        "currency": "GBP",
        "mileage_units": "miles",
        "company_start_date": "2020-04-01",
        "address1": "1 High Street",
        "town": "Edinburgh",
        "postcode": "EH1 1AA",
        "country": "United Kingdom",
        "locale": "en",
        "sales_tax_name": "VAT",
        "sales_tax_registration_status": "Registered",
        "sales_tax_registration_number": "GB123456789",
        "sales_tax_is_value_added": True,
        "sales_tax_rates": ["20.0", "5.0", "0.0"],
        "cis_enabled": False,
        "annual_accounting_periods": [],
        "locked_attributes": [],
    }


class GrantError(Exception):
    """A token request FreeAgent answers with 400 invalid_grant; the message is the description."""


class AuthError(Exception):
    """A bearer token FreeAgent answers with 401; the message says why."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator answered it, for assertions."""

    method: str  #: HTTP method
    path: str  #: path without the query string
    status: int  #: status sent (or, when dropped, the status that was never delivered)
    time: float  #: arrival time on the state's monotonic clock
    user: int | None  #: authorising user, when a bearer token was accepted
    reached_handler: bool = False  #: passed auth, throttling and fault injection
    dropped: bool = False  #: connection closed after the work was done
    query: str = ""  #: the query string as sent (paging requests are checked by it)


@dataclass(frozen=True)
class Throttle:
    """Why a request was refused with 429 and when to come back."""

    limit: int  #: requests allowed in the window that ran out
    window: float  #: that window's length in seconds
    retry_after: int  #: whole seconds until the window ends, at least 1

    @property
    def message(self) -> str:
        """The plain-text body the live API sends with a 429."""
        return f"You must not exceed {self.limit} requests per {self.window:g} seconds"


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str | None  #: must be repeated at exchange if it was sent at approval
    expires_at: float


@dataclass
class _AccessToken:
    client_id: str
    user_id: int
    expires_at: float


@dataclass
class _RefreshToken:
    client_id: str
    user_id: int
    expires_at: float
    revoked: bool = False  #: rotated away; kept so a reuse can be told from a typo
    access: str = ""  #: the access token issued with it (revoke_access_on_refresh)


@dataclass
class _Window:
    index: int = -1  #: which fixed window (counted from the epoch) `used` belongs to
    used: int = 0


@dataclass
class FreeAgentState:
    """Everything one simulated FreeAgent knows; see the module docstring."""

    #: OAuth apps: client_id -> client_secret
    clients: dict[str, str] = field(default_factory=lambda: {"demo-client": "demo-secret"})
    #: client_id -> allowed redirect URIs; a client absent here may redirect anywhere
    redirect_uris: dict[str, set[str]] = field(default_factory=dict)
    access_token_ttl: float = 3600.0  #: seconds an access token lives
    auth_code_ttl: float = 900.0  #: seconds an authorisation code lives
    refresh_token_ttl: int = 631151957  #: seconds a refresh token lives (doc example value)
    per_minute: int = 120  #: requests per user per minute window
    per_hour: int = 3600  #: requests per user per hour window
    minute_window: float = 60.0  #: "minute" window length, shortened in tests
    hour_window: float = 3600.0  #: "hour" window length, shortened in tests
    test_mode_per_minute: int = 5  #: minute limit when the request sends X-RateLimit-Test: true
    #: Retry-After is the seconds left in the window times this, rounded up. Benchmarks that
    #: shrink the windows N times set N: the header then says what the live API would say of
    #: full-size windows, and a client scaling it back waits as long as a real one would
    #: (whole seconds of a 3-second window would overshoot it by up to a third).
    retry_after_scale: float = 1.0
    refresh_per_minute: int = 15  #: token refreshes per user per minute window
    #: How the token endpoint refuses a grant (a used, expired or mismatched code; a dead
    #: refresh token). The reference (§2) saw a re-used code answered 401 "HTTP Basic: Access
    #: denied.", the very answer to wrong client credentials, and gives invalid_grant bodies
    #: no status. On (the harsher reading): a refused code gets that 401 text, a refused
    #: refresh token invalid_grant with 401. Off: invalid_grant with 400 (RFC 6749 §5.2).
    refused_grants_401: bool = True
    #: The reference does not say whether a refresh ends the access token issued with the
    #: refresh token it spends (§11 asks only about the old refresh token); the harsher
    #: reading is that it does, so a replica still holding the old token meets a 401.
    revoke_access_on_refresh: bool = True
    #: The reference does not say whether token-endpoint requests count against the user's
    #: 120/min and 3600/h; the harsher reading is that they do.
    token_requests_count: bool = True
    error_rate: float = 0.0  #: fraction of API requests answered 502/503 with an HTML body
    #: Answer every API request of fault_methods (all when empty) with this status: 403 a
    #: lapsed subscription, 404 a wrong base URL, 503 an outage. 0: off.
    fault_status: int = 0
    fault_methods: frozenset[str] = frozenset()
    latency: float = 0.0  #: seconds added to each API request
    #: E-mails FreeAgent answers 422 for (a validation failure on demand, lower case).
    rejected_emails: set[str] = field(default_factory=set)
    drop_after_create_rate: float = 0.0  #: fraction of stored creates whose 201 is never sent
    faults: Faults = field(default_factory=Faults)  #: slow/lost creates, odd bodies, paging
    require_user_agent: bool = True  #: 400 when User-Agent is missing
    #: Whether view=all lists Hidden contacts (unverified, reference §11): off, the harsher
    #: reading, so a client looking for duplicates must list view=hidden as well.
    all_includes_hidden: bool = False
    #: Whether PUT answers with the contact. The docs show no body (reference §5): off.
    put_returns_body: bool = False
    #: Status of a DELETE refused because the contact has history: 403 was observed, the
    #: "has invoices" case is undocumented (reference §5), so tests try 409 and 422 too.
    delete_refused_status: int = 403
    #: Status for a contact that existed and was deleted: 404 as the docs say for an unknown
    #: id (reference §5), or 410 Gone, which a client must read the same way.
    gone_status: int = 404
    #: A second limit, per client IP address across users (reference addendum): 1,000 a minute.
    per_ip_per_minute: int = 1000
    permission_level: int = 8  #: the authorising user's level (0-8); < 3 hides contact details
    #: Each authorising user is a company of its own: contacts created through one user's
    #: tokens are invisible to the others (benchmarks of many shops). Off: one company.
    company_per_user: bool = False
    seed: int = 0  #: seeds fault injection so a failing run can be replayed
    #: origin for URLs built outside a request (add_contact, contacts_list); learned from
    #: the first request when unset, so set it when seeding before any request
    base_url: str | None = None
    company: dict[str, Any] = field(default_factory=_default_company)
    clock: Callable[[], float] = time.monotonic  #: drives expiry and rate windows
    wall_clock: Callable[[], datetime] = _utc_now  #: drives created_at/updated_at

    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)  #: id -> stored contact
    requests: list[RequestRecord] = field(default_factory=list)
    count_429: int = 0
    refresh_count: int = 0  #: successful refresh_token grants
    reused_refresh_token_attempts: int = 0  #: refreshes with a token already rotated away

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.invoiced: set[int] = set()  #: contacts that have invoices, so cannot be deleted
        self.contact_user: dict[int, int] = {}  #: company_per_user: contact id -> its user
        self.deleted: set[int] = set()  #: ids of deleted contacts, answered gone_status
        self._epoch = self.clock()
        self._next_id = 1
        self._pending_429: list[int] = []  #: Retry-After of each injected 429 still to send
        self._windows: dict[tuple[int | str, str], _Window] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}

    def visible_to(self, user: int | None) -> dict[int, dict[str, Any]]:
        """The contacts this user's company holds (every contact unless company_per_user)."""
        if not self.company_per_user:
            return self.contacts
        return {i: c for i, c in self.contacts.items() if self.contact_user.get(i) == user}

    # -- test and demo helpers --------------------------------------------------------

    def issue_tokens(self, client_id: str = "demo-client") -> tuple[str, str]:
        """Return a fresh (access, refresh) pair as if the user had approved the app."""
        payload = self._grant(client_id)
        return payload["access_token"], payload["refresh_token"]

    def add_contact(self, contact: dict[str, Any], *, has_invoices: bool = False) -> str:
        """Store a contact as POST /v2/contacts would and return its URL.

        Raises ContactError when the API would refuse it, so seeds cannot be impossible.
        """
        contact_id = self.create_contact(contact)
        if has_invoices:
            self.invoiced.add(contact_id)
        return self.contact_url(contact_id)

    def inject_429(self, count: int, retry_after: int = 1) -> None:
        """Answer the next `count` API requests with 429, whatever budget is left."""
        self._pending_429.extend([retry_after] * count)

    def contacts_list(self, include_hidden: bool = True) -> list[dict[str, Any]]:
        """Every stored contact as the API would render it, oldest first."""
        return [
            self.render(contact_id, self.base_url or FALLBACK_BASE_URL)
            for contact_id, stored in sorted(self.contacts.items())
            if include_hidden or stored.get("status") != "Hidden"
        ]

    def write_count(self) -> int:
        """Contact writes (POST/PUT/DELETE) that got past auth, throttling and faults."""
        return sum(
            1
            for r in self.requests
            if r.reached_handler
            and r.method in {"POST", "PUT", "DELETE"}
            and r.path.startswith("/v2/contacts")
        )

    def reset_counters(self) -> None:
        """Forget observations (requests, 429s, refreshes); budgets and data are kept."""
        self.requests.clear()
        self.count_429 = 0
        self.refresh_count = 0
        self.reused_refresh_token_attempts = 0

    # -- contacts -------------------------------------------------------------------

    def contact_url(self, contact_id: int, base_url: str | None = None) -> str:
        """The contact's id is its URL; the origin is whatever the client called us by."""
        origin = base_url or self.base_url or FALLBACK_BASE_URL
        return f"{origin}/v2/contacts/{contact_id}"

    def render(self, contact_id: int, base_url: str) -> dict[str, Any]:
        """The contact as the API returns it to this user."""
        url = self.contact_url(contact_id, base_url)
        return render_contact(url, self.contacts[contact_id], self.permission_level)

    def _refuse_listed_email(self, attributes: dict[str, Any]) -> None:
        email = str(attributes.get("email") or "").lower()
        if email and email in self.rejected_emails:
            raise ContactError(422, ["Email is invalid"])

    def create_contact(self, attributes: dict[str, Any]) -> int:
        """Validate and store a new contact; raises ContactError like the API would."""
        self._refuse_listed_email(attributes)
        stored = prepare_changes({}, attributes, self.permission_level)
        stamp = format_timestamp(self.wall_clock())
        stored = {**stored, "created_at": stamp, "updated_at": stamp}
        contact_id, self._next_id = self._next_id, self._next_id + 1
        self.contacts[contact_id] = stored
        return contact_id

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact, as DELETE /v2/contacts/:id or a person in FreeAgent would."""
        del self.contacts[contact_id]
        self.deleted.add(contact_id)

    def update_contact(self, contact_id: int, attributes: dict[str, Any]) -> None:
        """Merge changed fields; updated_at moves only when something changed, as in Rails."""
        existing = self.contacts[contact_id]
        self._refuse_listed_email(attributes)
        merged = prepare_changes(existing, attributes, self.permission_level)
        if merged != existing:
            merged["updated_at"] = format_timestamp(self.wall_clock())
        self.contacts[contact_id] = merged

    # -- rate limits ------------------------------------------------------------------

    def take_injected_429(self) -> Throttle | None:
        """Consume one injected 429, if any are pending."""
        if not self._pending_429:
            return None
        return Throttle(self.per_minute, self.minute_window, self._pending_429.pop(0))

    def admit(self, user_id: int, *, test_mode: bool = False) -> Throttle | None:
        """Count one API request against the user's fixed windows, or say why not.

        Both windows are checked before either is charged, so a refused request costs nothing.
        """
        minute_limit = self.test_mode_per_minute if test_mode else self.per_minute
        limits = [
            ("minute", minute_limit, self.minute_window),
            ("hour", self.per_hour, self.hour_window),
        ]
        refusals = [
            throttle
            for name, limit, length in limits
            if (throttle := self._check(user_id, name, limit, length)) is not None
        ]
        if refusals:
            return max(refusals, key=lambda t: t.retry_after)
        for name, _, length in limits:
            self._current(user_id, name, length).used += 1
        return None

    def admit_refresh(self, user_id: int) -> Throttle | None:
        """Count one token request against the user's 15-per-minute cap (and, when
        token_requests_count, the user's request windows); nothing is charged if refused."""
        throttle = self._check(user_id, "refresh", self.refresh_per_minute, self.minute_window)
        if throttle is None and self.token_requests_count:
            throttle = self.admit(user_id)
        if throttle is None:
            self._current(user_id, "refresh", self.minute_window).used += 1
        return throttle

    def admit_ip(self, address: str) -> Throttle | None:
        """Count one request (any path, OAuth included) against the IP's minute window."""
        throttle = self._check(address, "ip", self.per_ip_per_minute, self.minute_window)
        if throttle is None:
            self._current(address, "ip", self.minute_window).used += 1
        return throttle

    def _current(self, user_id: int | str, name: str, length: float) -> _Window:
        """The user's counter for the window we are in now, emptied at each boundary."""
        index = math.floor((self.clock() - self._epoch) / length)
        window = self._windows.setdefault((user_id, name), _Window())
        if window.index != index:
            window.index, window.used = index, 0
        return window

    def _check(self, user_id: int | str, name: str, limit: int, length: float) -> Throttle | None:
        """A Throttle if the current window is full; windows are fixed, not sliding."""
        window = self._current(user_id, name, length)
        if window.used < limit:
            return None
        remaining = self._epoch + (window.index + 1) * length - self.clock()
        return Throttle(limit, length, max(1, math.ceil(remaining * self.retry_after_scale)))

    # -- OAuth --------------------------------------------------------------------------

    def user_for(self, client_id: str) -> int:
        """One authorising user per app: user 1 for the first registered client."""
        return list(self.clients).index(client_id) + 1

    def new_code(self, client_id: str, redirect_uri: str | None) -> str:
        """Issue a single-use authorisation code for the approve_app redirect."""
        code = secrets.token_urlsafe(24)
        expires_at = self.clock() + self.auth_code_ttl
        self._codes[code] = _AuthCode(client_id, redirect_uri, expires_at)
        return code

    def exchange_code(self, client_id: str, code: str, redirect_uri: str | None) -> dict[str, Any]:
        """Trade a code for tokens; codes die on first use, right or wrong."""
        grant = self._codes.pop(code, None)
        if grant is None or grant.client_id != client_id:
            raise GrantError("The authorization code is invalid or has already been used.")
        if self.clock() >= grant.expires_at:
            raise GrantError("The authorization code has expired.")
        if grant.redirect_uri is not None and grant.redirect_uri != redirect_uri:
            raise GrantError("The redirect URI does not match the one used to authorize.")
        return self._grant(client_id)

    def refresh_user(self, client_id: str, token: str) -> int:
        """The user a refresh token belongs to; counts and refuses tokens rotated away."""
        record = self._refresh.get(token)
        if record is None or record.client_id != client_id:
            raise GrantError("The refresh token is invalid.")
        if record.revoked:
            self.reused_refresh_token_attempts += 1
            raise GrantError("The refresh token has already been used.")
        if self.clock() >= record.expires_at:
            raise GrantError("The refresh token has expired.")
        return record.user_id

    def rotate(self, client_id: str, token: str) -> dict[str, Any]:
        """Refresh: new pair, old refresh token dead, and (revoke_access_on_refresh) the
        access token issued with it too; other access tokens live on to expiry."""
        self.refresh_user(client_id, token)
        spent = self._refresh[token]
        spent.revoked = True
        if self.revoke_access_on_refresh:
            self._access.pop(spent.access, None)
        self.refresh_count += 1
        return self._grant(client_id)

    def authenticate(self, token: str | None) -> int:
        """The user behind a bearer token; raises AuthError with the reason it is refused."""
        if not token:
            raise AuthError("Access token required")
        record = self._access.get(token)
        if record is None:
            raise AuthError("Access token not recognised")
        if self.clock() >= record.expires_at:
            raise AuthError("Access token expired")
        return record.user_id

    def _grant(self, client_id: str) -> dict[str, Any]:
        """Mint an access/refresh pair and the token endpoint's response body."""
        if client_id not in self.clients:
            raise GrantError(f"Unknown client {client_id!r}.")
        user_id, now = self.user_for(client_id), self.clock()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access[access] = _AccessToken(client_id, user_id, now + self.access_token_ttl)
        self._refresh[refresh] = _RefreshToken(
            client_id, user_id, now + self.refresh_token_ttl, access=access
        )
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": math.ceil(self.access_token_ttl),
            "refresh_token": refresh,
            "refresh_token_expires_in": self.refresh_token_ttl,
        }


#: Where create_app() keeps the state, for handlers and for tests holding only the app.
FREEAGENT_STATE = web.AppKey("freeagent_state", FreeAgentState)

__all__ = [
    "FREEAGENT_STATE",
    "AuthError",
    "ContactError",
    "FreeAgentState",
    "GrantError",
    "RequestRecord",
    "Throttle",
]
