"""One HTTP transport for every remote API: the shared aiohttp session, retries, error mapping.

The API clients (freeagent.py, magento.py) know paths and payloads; this module only moves
requests. aiohttp's exceptions stop here: callers see the fa-sync hierarchy from errors.py.

    aiohttp timeout / connection error / dropped body  -> TransientApiError (retried)
    429                                                -> RateLimited (retried after Retry-After)
    5xx                                                -> TransientApiError (retried; not before
                                                          its Retry-After, if it sends one)
    401                                                -> AuthError (the client refreshes once)
    400 403 404 409 410 422                            -> RejectedRecord, message = the API's words
    other 4xx                                          -> ApiError (never retried)

(the table is daemon/failures.py; FreeAgentClient turns a 403/404/410 not about one record into
EndpointError, which stops the run)

Secrets never reach an exception message (no headers are quoted; free text is scrubbed) nor
the optional request log (Authorization and token fields are redacted). Bodies are read under
a size cap (over it: TransientApiError) and parsed without ever raising (bodies.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)
from yarl import URL

from daemon.clients.bodies import is_json_type, parse_body, read_capped
from daemon.clients.requestlog import RequestLog
from daemon.errors import ApiError, RateLimited, RejectedRecord, TransientApiError
from daemon.failures import error_class
from daemon.logs import scrub
from daemon.metrics import Metrics
from daemon.settings import Settings

#: Retry-After when a 429 carries none (FreeAgent's documented example value).
DEFAULT_RETRY_AFTER = 60.0
#: Longest Retry-After honoured: FreeAgent's longest window is an hour; a larger value (or a
#: date years ahead) would pause every sender of the user for good.
MAX_RETRY_AFTER = 3600.0
#: Longest error text kept from a plain-text or HTML body.
MAX_TEXT = 500
#: Reason phrases, for errors whose body says nothing.
_PHRASES = MappingProxyType({status.value: status.phrase for status in HTTPStatus})

Hook = Callable[[], Awaitable[None]]
RateLimitHook = Callable[[float], Awaitable[None]]
#: Returns headers computed per attempt: the current bearer token, a fresh OAuth 1 signature.
Authorize = Callable[[], Awaitable[Mapping[str, str]]]
Sleep = Callable[[float], Awaitable[None]]
#: Told after each attempt whether an answer (any status) arrived: the rate budget's clock.
AfterSend = Callable[[bool], None]


@dataclass(frozen=True)
class Response:
    """A finished HTTP exchange with a success (or unmapped) status."""

    status: int  #: HTTP status
    headers: CIMultiDictProxy[str]  #: response headers, case-insensitive
    body: Any  #: JSON (dict/list) when Content-Type says JSON and parses, else text


@dataclass(frozen=True)
class _Call:
    """Everything about one logical request, shared by its attempts."""

    method: str
    url: str | URL
    headers: Mapping[str, str]
    service: str
    json: Any = None
    data: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    before_send: Hook | None = None
    on_rate_limited: RateLimitHook | None = None
    authorize: Authorize | None = None
    after_send: AfterSend | None = None
    expect_json: bool = False

    @cached_property
    def where(self) -> str:
        """Method and URL without the query: names the request in messages. Kept once made:
        every attempt's body read, parse and status check ask for it."""
        return f"{self.service} {self.method} {URL(str(self.url)).with_query(None)}"


class _RetryPolicy:
    """When to give up and how long to wait, for the attempts of one request.

    429s are counted apart from other failures: the server names the wait, and a 429 storm
    should delay a request (up to http_rate_limit_attempts), not use up the attempts meant
    for faults (http_retry_attempts).
    """

    def __init__(self, settings: Settings, jitter: wait_random_exponential) -> None:
        self._settings = settings
        self._jitter = jitter
        self._rate_limited = 0

    def stop(self, state: RetryCallState) -> bool:
        """Called once per failed attempt, before the next one."""
        if isinstance(_failure(state), RateLimited):
            self._rate_limited += 1
            return self._rate_limited >= max(1, self._settings.http_rate_limit_attempts)
        failures = state.attempt_number - self._rate_limited
        return failures >= max(1, self._settings.http_retry_attempts)

    def wait(self, state: RetryCallState) -> float:
        """Retry-After for a 429 (the server named the time), else capped jittered backoff;
        a 5xx naming a later time (a proxy or WAF in front of the API: Magento Cloud's Fastly,
        nginx) is not asked again before it, or the early retries are refused as well."""
        failure = _failure(state)
        if isinstance(failure, RateLimited):
            return failure.retry_after
        backoff = float(self._jitter(state))
        if isinstance(failure, TransientApiError) and failure.retry_after is not None:
            return min(max(backoff, failure.retry_after), MAX_RETRY_AFTER)
        return backoff


def _retryable(retry: bool) -> type[ApiError]:
    """Transient errors, or only 429s for a request that must not repeat."""
    return TransientApiError if retry else RateLimited


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


class Transport:
    """The shared aiohttp session plus retry policy; one per process, passed to every client."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        settings: Settings,
        request_log: RequestLog | None = None,
        sleep: Sleep = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.request_log = request_log
        self.metrics = metrics  #: counts every attempt by status (one place for all clients)
        self._sleep = sleep  # tests pass a recorder: Retry-After is asserted, not waited for
        self._jitter = wait_random_exponential(multiplier=0.5, max=settings.http_retry_max_wait)

    def with_log(self, request_log: RequestLog | None) -> Transport:
        """The same session and policy, logging to another file (one log per profile)."""
        return Transport(
            session=self.session, settings=self.settings, request_log=request_log,
            sleep=self._sleep, metrics=self.metrics,
        )  # fmt: skip

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        service: str,
        retry: bool = True,
        before_send: Hook | None = None,
        on_rate_limited: RateLimitHook | None = None,
        authorize: Authorize | None = None,
        after_send: AfterSend | None = None,
        expect_json: bool = False,
    ) -> Response:
        """Send with retries and return a 1xx-3xx response, or raise the mapped ApiError.

        retry=False marks a request that must not be repeated once the server may have acted
        on it (a POST without idempotency key, a rotating-token refresh): then only a 429,
        which the server refused unprocessed, is retried. before_send runs before every
        attempt (rate budget), authorize after it (headers that must be fresh per attempt),
        on_rate_limited(seconds) on every 429 (blocks the shared budget), after_send(answered)
        once the attempt's answer arrived or failed to.

        expect_json: a success in another format than JSON (XML or HTML despite Accept, [F579])
        is a TransientApiError, retried like a 5xx when retry allows. Only for requests safe to
        repeat: a write so answered may have acted, and its caller reads what it can.
        """
        call = _Call(method, url, headers, service, json, data, params,
                     before_send, on_rate_limited, authorize, after_send,
                     expect_json)  # fmt: skip
        # The first attempt runs before tenacity is built: setting up its retry state for every
        # request cost about a sixth of an export's own CPU, and most requests need no retry.
        # A retryable failure is handed to tenacity as its first attempt's outcome, so the
        # policy counts and waits exactly as if tenacity had sent it.
        retryable = _retryable(retry)
        try:
            return await self._attempt(call)
        except retryable as exc:
            failed: BaseException | None = exc
        async for attempt in self._retrying(retry, call.service):
            with attempt:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                return await self._attempt(call)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _retrying(self, retry: bool, service: str) -> AsyncRetrying:
        """Transient errors are retried, or only 429s for requests that must not repeat."""
        policy = _RetryPolicy(self.settings, self._jitter)
        metrics = self.metrics

        def count_retry(_state: RetryCallState) -> None:
            if metrics is not None:
                metrics.observe_retry(service)

        return AsyncRetrying(
            stop=policy.stop,
            wait=policy.wait,
            retry=retry_if_exception_type(_retryable(retry)),
            sleep=self._sleep,
            before_sleep=count_retry,
            reraise=True,
        )

    async def _attempt(self, call: _Call) -> Response:
        """One attempt: hooks, send, log, map the status."""
        if call.before_send is not None:
            await call.before_send()
        headers = CIMultiDict({"User-Agent": self.settings.user_agent})
        headers.update(call.headers)
        if call.authorize is not None:
            headers.update(await call.authorize())
        try:
            response = await self._send(call, headers)
        except ApiError as exc:
            if call.after_send is not None:
                call.after_send(False)
            self._log(call, headers, None, exc)
            self._count(call, None)
            raise
        if call.after_send is not None:
            call.after_send(True)
        self._log(call, headers, response, None)
        self._count(call, response.status)
        error = status_error(response, where=call.where, service=call.service)
        if error is None and call.expect_json and not is_json_type(response.headers):
            kind = response.headers.get("Content-Type", "no content type")
            error = TransientApiError(
                f"{call.where}: HTTP {response.status} answered {kind}, not JSON",
                status=response.status,
                service=call.service,
            )
        if error is None:
            return response
        if isinstance(error, RateLimited) and call.on_rate_limited is not None:
            await call.on_rate_limited(error.retry_after)
        raise error

    async def _send(self, call: _Call, headers: CIMultiDict[str]) -> Response:
        """The aiohttp exchange; its exceptions are translated here and nowhere else."""
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout)
        try:
            async with self.session.request(
                call.method,
                call.url,
                headers=headers,
                json=call.json,
                data=call.data,
                params=call.params,
                timeout=timeout,
            ) as resp:
                cap = self.settings.http_max_body_bytes
                raw = await read_capped(resp, cap=cap, where=call.where, service=call.service)
                body = parse_body(resp.content_type, raw, where=call.where)
                return Response(resp.status, resp.headers, body)
        except TimeoutError as exc:
            raise TransientApiError(
                f"{call.where}: no answer within {self.settings.http_timeout:g} s",
                service=call.service,
            ) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransientApiError(
                f"{call.where}: connection failed: {_exc_text(exc)}", service=call.service
            ) from exc
        except aiohttp.ClientError as exc:
            raise ApiError(f"{call.where}: {_exc_text(exc)}", service=call.service) from exc

    def _count(self, call: _Call, status: int | None) -> None:
        """Metrics for one attempt; a refresh_token grant is also a token refresh."""
        if self.metrics is None:
            return
        self.metrics.observe_response(call.service, status)
        if call.data is not None and call.data.get("grant_type") == "refresh_token":
            self.metrics.observe_token_refresh(status)

    def _log(
        self, call: _Call, headers: Mapping[str, str], response: Response | None,
        error: ApiError | None,
    ) -> None:  # fmt: skip
        """Write one scrubbed line to the request log, if this transport has one."""
        log = self.request_log
        if log is None:
            return
        entry: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "service": call.service,
                                 "method": call.method, "url": str(call.url)}  # fmt: skip
        if log.log_requests:
            body = call.json if call.data is None else dict(call.data)
            entry["request"] = {"headers": scrub(dict(headers)), "body": scrub(body),
                                "params": scrub(dict(call.params or {}))}  # fmt: skip
        if response is not None:
            entry["status"] = response.status
            if log.log_responses:
                entry["response"] = {"headers": scrub(dict(response.headers)),
                                     "body": scrub(response.body)}  # fmt: skip
        if error is not None:
            entry["error"] = scrub(str(error))
        log.write(entry)


def _exc_text(exc: BaseException) -> str:
    """aiohttp's description of a failure, scrubbed (it never quotes headers, but be sure)."""
    text = str(exc) or type(exc).__name__
    return str(scrub(f"{type(exc).__name__}: {text}"))


def status_error(response: Response, *, where: str, service: str) -> ApiError | None:
    """The fa-sync error for a failed status, or None for success (below 400)."""
    status = response.status
    if status < 400:
        return None
    words = error_message(response.body) or _PHRASES.get(status, "error")
    # kept on the exception, so on the ledger row: scrubbed, text capped
    body = scrub(response.body[:2000] if isinstance(response.body, str) else response.body)
    context = f"{where}: HTTP {status}: {words}"
    kind = error_class(status) or ApiError  # the classification table, daemon/failures.py
    if kind is RateLimited:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(context, retry_after=retry_after, body=body, service=service)
    if kind is RejectedRecord:
        return RejectedRecord(words, status=status, body=body, service=service)
    if kind is TransientApiError:
        # Only a wait: whether to retry at all stays the caller's (a create never repeats).
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return TransientApiError(
            context, retry_after=wait, status=status, body=body, service=service
        )
    return kind(context, status=status, body=body, service=service)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), at most an hour; 60
    when absent or bad."""
    seconds = retry_after_seconds(value, now=now)
    return DEFAULT_RETRY_AFTER if seconds is None else seconds


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), at most an hour; None
    when absent or unreadable."""
    value = (value or "").strip()
    if value.isascii() and value.replace(".", "", 1).isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).replace(tzinfo=UTC)  # HTTP-dates are always GMT
    except (TypeError, ValueError, OverflowError):
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


# -- the service's own words ------------------------------------------------------------------

_MAGENTO_PLACEHOLDER = re.compile(r"%(\w+)")
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_HTML_TAG = re.compile(r"<[^>]+>")


def error_message(body: Any) -> str:
    """What the API said went wrong, from any of the body shapes FreeAgent and Magento use."""
    if isinstance(body, dict):
        return _dict_message(body)
    if isinstance(body, list):
        return "; ".join(filter(None, (_one_message(item) for item in body)))
    if isinstance(body, str):
        return _text_message(body)
    return ""


def _dict_message(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    detail = _errors_message(errors) if errors else ""
    if "message" in body:
        head = magento_message(str(body["message"]), body.get("parameters"))
        return f"{head}: {detail}" if detail else head
    if detail:
        return detail
    if "error" in body:  # OAuth 2 token endpoint: {"error": "invalid_grant", ...}
        parts = [str(body["error"]), str(body.get("error_description") or "")]
        return ": ".join(p for p in parts if p)
    return json.dumps(body)[:MAX_TEXT]


def _errors_message(errors: Any) -> str:
    """FreeAgent's three shapes: a list of {message}, {"error": {message}}, {field: [msgs]}."""
    if isinstance(errors, list):
        return "; ".join(filter(None, (_one_message(item) for item in errors)))
    if not isinstance(errors, dict):
        return str(errors)
    if "error" in errors and isinstance(errors["error"], dict | list):
        return error_message(errors["error"])
    return "; ".join(
        f"{name} {message}"
        for name, messages in errors.items()
        for message in (messages if isinstance(messages, list) else [messages])
    )


def _one_message(item: Any) -> str:
    if isinstance(item, dict) and "message" in item:
        return magento_message(str(item["message"]), item.get("parameters"))
    return item if isinstance(item, str) else json.dumps(item)


def magento_message(template: str, parameters: Any) -> str:
    """Magento sends "No such entity with %fieldName = %fieldValue" plus the parameters
    (a list for %1 %2..., a dict for named ones); substitute them as Magento's UI does."""
    if isinstance(parameters, list):
        named = {str(i): v for i, v in enumerate(parameters, start=1)}
    elif isinstance(parameters, dict):
        named = {str(k): v for k, v in parameters.items()}
    else:
        return template
    return _MAGENTO_PLACEHOLDER.sub(
        lambda m: str(named[m.group(1)]) if m.group(1) in named else m.group(0), template
    )


def _text_message(text: str) -> str:
    """Plain text as is (429 bodies); HTML (a proxy's 502 page) reduced to its title or text."""
    if "<" in text and ">" in text:
        title = _HTML_TITLE.search(text)
        text = title.group(1) if title else _HTML_TAG.sub(" ", text)
    return " ".join(text.split())[:MAX_TEXT]
