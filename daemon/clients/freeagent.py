"""FreeAgent API v2: paths, payloads and FreeAgent's own rules; the transport moves the bytes.

Every request takes one unit from the user's shared budget first (RateBudget, in PostgreSQL;
token refreshes too, through TokenStore), a 429 blocks that budget for everyone, and a 401
triggers one token refresh and one retry. A 403, or a 404/410 not about one contact, is about
the account or the API address: EndpointError, which stops the run (daemon/failures.py).
FreeAgent has no idempotency key and no upsert, so a create is never repeated once FreeAgent
may have acted on it: only a 429 (refused unprocessed) or a 401 (likewise) is retried.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urljoin

from yarl import URL

from daemon.clients.freeagent_answers import (
    check_progress,
    contact_list,
    created_contact,
    member,
)
from daemon.clients.freeagent_paging import (
    LIST_SORT,
    changed,
    format_since,
    newest,
    parse_link_header,
    with_params,
)
from daemon.clients.oauth import REAUTHORISE, TokenStore
from daemon.clients.ratelimit import Grant, RateBudget
from daemon.clients.readcache import ReadCache
from daemon.clients.transport import Response, Transport, error_message
from daemon.db.records import FreeAgentClientRow
from daemon.errors import (
    ApiError,
    AuthError,
    EndpointError,
    OutcomeUnknown,
    RateLimited,
    RejectedRecord,
    TransientApiError,
)
from daemon.failures import GONE, freeagent_run_level
from daemon.logs import get_logger

#: A caller's step right before a request is sent (its rate grant held).
BeforeSend = Callable[[], Awaitable[None]]

SERVICE = "freeagent"

log = get_logger(__name__)

#: FreeAgent's largest page.
MAX_PER_PAGE = 100

#: The path of one contact: a 404 there is about that record, not the endpoint.
_ONE_CONTACT = re.compile(r"/contacts/\d+/?$")


def users_me_key(row: FreeAgentClientRow) -> tuple[Any, ...]:
    """What users/me answers for depends on: the client's tokens (a new authorisation may act
    for another user) and where they are sent."""
    return ("freeagent users/me", row.id, row.token_version, row.api_base)


class FreeAgentClient:
    """One FreeAgent company, acting as the user who approved the app."""

    def __init__(
        self,
        *,
        transport: Transport,
        client_row: FreeAgentClientRow,
        tokens: TokenStore,
        budget: RateBudget,
        reads: ReadCache | None = None,
    ) -> None:
        self._transport = transport
        self._row = client_row
        self._tokens = tokens
        self._budget = budget
        self._reads = reads
        self.api_base = client_row.api_base  #: ends with /v2/
        self._api = URL(self.api_base)

    # -- configuration -------------------------------------------------------------------

    @property
    def budget(self) -> RateBudget:
        """The request budget of the user this client acts for."""
        return self._budget

    async def users_me(self, *, cached: bool = False) -> dict[str, Any]:
        """The approving user: url (budget key), email, permission_level (export gate).

        Knowing the user, every later request (and the ones already counted under the
        provisional key) draws from that user's one budget. cached: an answer read for the
        same tokens within FA_SYNC_CONFIG_CACHE_SECONDS will do (runs; not `client
        authorize` or `client config`, which are asked to look).
        """
        if cached and self._reads is not None:
            user = await self._reads.get(users_me_key(self._row), self._read_user)
        else:
            user = await self._read_user()
        if isinstance(user.get("url"), str) and user["url"]:
            await self._budget.adopt_user(user["url"])
        return user

    async def _read_user(self) -> dict[str, Any]:
        return dict(member(await self._send("GET", f"{self.api_base}users/me"), "user"))

    async def company(self) -> dict[str, Any]:
        """The company's settings: type, currency, sales tax registration..."""
        return dict(member(await self._send("GET", f"{self.api_base}company"), "company"))

    async def business_categories(self) -> list[str]:
        """The company's business category names."""
        response = await self._send("GET", f"{self.api_base}company/business_categories")
        return list(member(response, "business_categories"))

    # -- contacts ------------------------------------------------------------------------

    async def iter_contacts(
        self,
        *,
        view: str = "all",
        updated_since: datetime | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every contact of the view, following Link rel=next, newest first.

        A contact is yielded again only when a later copy differs from the one yielded (it
        changed while the pages were read), so a consumer keeping the last copy of each URL
        holds the newest. A listing of several pages ends with a catch-up listing of what
        changed since its first page was read (why: freeagent_paging.LIST_SORT). A listing
        that does not end (an empty page that still links to a next one, or more than
        MAX_PAGES pages) is an endpoint error, not something to follow for ever.
        """
        params = {
            "view": view, "sort": LIST_SORT,
            "per_page": str(max(1, min(per_page, MAX_PER_PAGE))),
        }  # fmt: skip
        if updated_since is not None:
            params["updated_since"] = format_since(updated_since)
        yielded: dict[str, Any] = {}  #: url -> updated_at of the copy yielded
        first: list[dict[str, Any]] | None = None
        pages = 0
        async with aclosing(self._pages(params)) as listing:
            async for page in listing:
                first = page if first is None else first
                pages += 1
                for contact in changed(page, yielded):
                    yield contact
        since = newest(first or [])
        if pages < 2 or since is None:
            return  # one page: what changed after it is newer than it, for the next read
        async with aclosing(self._pages({**params, "updated_since": format_since(since)})) as late:
            async for page in late:
                for contact in changed(page, yielded):
                    yield contact

    async def _pages(self, params: dict[str, str]) -> AsyncGenerator[list[dict[str, Any]]]:
        """The pages of one listing, each contact with its canonical URL.

        Each next link gets back any of `params` it lacks: the reference's example links
        carry only page and per_page (§6), and a next page read without view, sort or
        updated_since would be another listing's page."""
        url = f"{self.api_base}contacts"
        response = await self._send("GET", url, params=params)
        visited: set[str] = set()
        while True:
            raw = contact_list(response)
            page = []
            for contact in raw:
                if not isinstance(contact, dict):
                    log.warning("freeagent_listed_item_not_a_contact", kind=type(contact).__name__)
                    continue
                page.append(self._canonical(contact))
            yield page
            next_url = self._next_page(response, url, params, visited)
            if next_url is None:
                return
            check_progress(raw, len(visited), next_url)
            url = next_url
            response = await self._send("GET", self._own_url(url))

    def _next_page(
        self, response: Response, current: str, params: Mapping[str, str], visited: set[str]
    ) -> str | None:
        """The rel=next URL, absolute and with our parameters; None on the last page or if a
        link loops back."""
        link = parse_link_header(response.headers.getall("Link", [])).get("next")
        if not link:
            return None
        absolute = with_params(urljoin(current, link), params)
        if absolute in visited:
            return None
        visited.add(absolute)
        return absolute

    async def get_contact(self, url: str) -> dict[str, Any] | None:
        """One contact by its URL; None when FreeAgent no longer has it (404 or 410)."""
        try:
            response = await self._send("GET", self._own_url(url))
        except RejectedRecord as exc:
            if exc.status in GONE:
                return None
            raise
        return self._canonical(dict(member(response, "contact")))

    async def create_contact(
        self, payload: Mapping[str, Any], *, before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """POST a new contact; returns it with its url (from the body, else Location).

        Never repeated after a timeout, dropped connection or 5xx: FreeAgent may have
        stored the contact, so that TransientApiError goes to the caller to reconcile.
        before_send runs once the request holds its rate grant, just before it is sent.
        """
        url = f"{self.api_base}contacts"
        try:
            response = await self._send(
                "POST", url, json={"contact": dict(payload)}, retry=False,
                before_send=before_send,
            )  # fmt: skip
        except TransientApiError as exc:
            if isinstance(exc, RateLimited) or exc.service != SERVICE:
                raise  # refused unprocessed, or the token refresh failed: nothing was created
            raise OutcomeUnknown(
                f"{exc}; the contact may have been created: reconcile before creating again",
                status=exc.status,
                body=exc.body,
                service=SERVICE,
            ) from exc
        return self._canonical(created_contact(response, payload), created=True)

    async def update_contact(self, url: str, payload: Mapping[str, Any]) -> None:
        """PUT changed fields (idempotent, so retried); FreeAgent's answer body is not relied on."""
        await self._send("PUT", self._own_url(url), json={"contact": dict(payload)})

    async def hide_contact(self, url: str) -> None:
        """Set status Hidden: FreeAgent's answer for contacts that cannot be deleted."""
        await self.update_contact(url, {"status": "Hidden"})

    async def delete_contact(self, url: str) -> Literal["deleted", "hidden"]:
        """DELETE, or hide when FreeAgent refuses (a contact with invoices/estimates: 403/409...).

        404 or 410 counts as deleted: a retried DELETE whose first attempt succeeded answers
        so.
        """
        try:
            await self._send("DELETE", self._own_url(url))
        except ApiError as exc:
            refused = exc.status is not None and 400 <= exc.status < 500
            if not refused or isinstance(exc, AuthError | TransientApiError | EndpointError):
                raise
            if exc.status in GONE:
                return "deleted"
            await self.hide_contact(url)
            return "hidden"
        return "deleted"

    # -- plumbing ------------------------------------------------------------------------

    def _own_url(self, url: str) -> URL:
        """A URL FreeAgent gave us (contact, next page), always sent to this API's own host.

        The bearer token must never go to another host, so a URL naming another origin (a
        proxy, a load balancer's host name, a stand-in) is rebased onto the configured API
        root when its path lies under it, and refused otherwise.
        """
        target = URL(url, encoded=True)
        if target.is_absolute() and _origin(target) == _origin(self._api):
            return target
        if target.path.startswith(self._api.path):
            rebased = self._api.origin().with_path(target.raw_path, encoded=True)
            return (
                rebased.with_query(target.raw_query_string) if target.raw_query_string else rebased
            )
        raise RejectedRecord(
            f"URL {url!r} is not under {self._api}; refusing to send it this client's token",
            service=SERVICE,
        )

    def _canonical(self, contact: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
        """The contact with its URL on the configured API host (the form every stored URL
        takes, so ledger and index compare like with like). A created contact without a
        usable URL exists at FreeAgent but cannot be addressed: an unknown outcome."""
        url = contact.get("url")
        try:
            if isinstance(url, str) and url:
                return {**contact, "url": str(self._own_url(url))}
        except RejectedRecord:
            pass
        if created:
            raise OutcomeUnknown(
                f"FreeAgent answered a create with no usable contact URL ({url!r:.100}); "
                "the contact may have been created: reconcile before creating again",
                service=SERVICE,
            )
        return contact

    def _headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": self._transport.settings.user_agent,
            "Accept": "application/json",
        }
        if self._row.rate_limit_test:
            headers["X-RateLimit-Test"] = "true"  # sandbox: 5 requests/min, to test throttling
        return headers

    async def _send(
        self,
        method: str,
        url: str | URL,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
        before_send: BeforeSend | None = None,
    ) -> Response:
        """Budgeted, authorised request; a 403/404/410 not about one contact is an
        EndpointError."""
        try:
            return await self._send_authorised(
                method, url, json=json, params=params, retry=retry, before_send=before_send
            )
        except RejectedRecord as exc:
            one_record = _ONE_CONTACT.search(URL(str(url)).path) is not None
            if exc.service == SERVICE and freeagent_run_level(exc.status, method, one_record):
                raise EndpointError(
                    f"FreeAgent client {self._row.name}: {method} {URL(str(url)).path} "
                    f"answered {exc.status} ({exc}): the account or the API address refuses "
                    "every request, not this one record",
                    status=exc.status,
                    body=exc.body,
                    service=SERVICE,
                ) from exc
            raise

    async def _send_authorised(
        self,
        method: str,
        url: str | URL,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
        before_send: BeforeSend | None = None,
    ) -> Response:
        """A 401 refreshes the token once and tries again."""
        sent: list[str] = []
        try:
            return await self._request(method, url, json, params, retry, sent, before_send)
        except AuthError as exc:
            if exc.service != SERVICE or not sent:
                raise  # the token endpoint itself refused: refreshing again cannot help
            await self._tokens.force_refresh(sent[-1])
        try:
            return await self._request(method, url, json, params, retry, sent, before_send)
        except AuthError as exc:
            if exc.service != SERVICE:
                raise
            raise AuthError(
                f"FreeAgent client {self._row.name}: access token refused even after a refresh "
                f"({error_message(exc.body) or exc.status}); {REAUTHORISE}",
                status=exc.status,
                body=exc.body,
                service=SERVICE,
            ) from exc

    async def _request(
        self,
        method: str,
        url: str | URL,
        json: Any,
        params: Mapping[str, str] | None,
        retry: bool,
        sent: list[str],
        before_send: BeforeSend | None = None,
    ) -> Response:
        grants: list[Grant] = []

        async def authorize() -> dict[str, str]:
            # Per attempt: a retry after a long Retry-After may need a refreshed token. The
            # budget is taken after the token (a refresh may wait on another replica), right
            # before sending, so grant-to-receipt stays within the latency allowance.
            token = await self._tokens.access_token()
            grants.append(await self._budget.take())
            if before_send is not None:
                await before_send()
            sent.append(token)
            return {"Authorization": f"Bearer {token}"}

        def answered(ok: bool) -> None:
            # The answer bounds when FreeAgent received the request: the grant stops
            # counting one window after it (ratelimit.py).
            if grants:
                grants.pop().answered(ok)

        return await self._transport.request(
            method,
            url,
            headers=self._headers(),
            json=json,
            params=params,
            service=SERVICE,
            retry=retry,
            on_rate_limited=self._budget.block,
            authorize=authorize,
            after_send=answered,
            # FreeAgent has answered XML despite Accept JSON ([F579]): a read is asked again;
            # a write so answered may have acted, so its answer is read as it came.
            expect_json=method == "GET",
        )


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    """Scheme, host and port (default ports made explicit) for same-host checks."""
    return url.scheme, url.host, url.port
