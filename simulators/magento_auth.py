"""Who may call the simulated Magento: Bearer tokens (if the flag allows) or OAuth 1.0a.

Magento 2.4.4+ refuses integration tokens used as Bearer unless
`oauth/consumer/enable_integration_as_bearer` is on (`MagentoState.bearer_enabled`), and the
refusal reads like a missing ACL grant: 401 "The consumer isn't authorized to access
%resources.". OAuth 1.0a signing works regardless of the flag; it is verified the way Magento
does: HMAC-SHA256 (or deprecated HMAC-SHA1) over `METHOD&uri&sorted params` with the query
decoded once, key `consumer_secret&token_secret`, timestamp within 600 s, nonce single-use.
OAuth failures carry Magento's message and name the OAuth problem in `WWW-Authenticate`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from urllib.request import parse_http_list, parse_keqv_list

from aiohttp import web

# authlib ships without type hints; these helpers take and return str.
from authlib.oauth1.rfc5849.signature import (  # type: ignore[import-untyped]
    construct_base_string,
)
from authlib.oauth1.rfc5849.util import escape, unescape  # type: ignore[import-untyped]

from simulators.magento_errors import MagentoError

if TYPE_CHECKING:
    from simulators.magento_state import MagentoState, OAuthCredentials

#: Magento's Nonce\Generator::TIME_DEVIATION, seconds either side of the server clock.
TIME_DEVIATION = 600
_DIGESTS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {"HMAC-SHA256": hashlib.sha256, "HMAC-SHA1": hashlib.sha1}
)
_REQUIRED = (
    "oauth_consumer_key",
    "oauth_nonce",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_token",
)


def not_authorized(resource: str) -> MagentoError:
    """Magento's answer to a missing, unknown or (flag off) Bearer-refused credential."""
    return MagentoError(
        401, "The consumer isn't authorized to access %resources.", {"resources": resource}
    )


def authorize(request: web.Request, state: MagentoState, resource: str) -> None:
    """Return if the request may use `resource` (an ACL id); raise MagentoError otherwise."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "oauth":
        verify_oauth(request, state, credentials)
    else:
        token = credentials.strip()
        bearer = scheme.lower() == "bearer" and state.bearer_enabled
        if not bearer or token not in _bearer_tokens(state):
            raise not_authorized(resource)
    if resource in state.denied_resources:
        raise not_authorized(resource)  # the integration lacks this ACL grant


def _bearer_tokens(state: MagentoState) -> set[str]:
    """Bearer-usable tokens: the configured ones plus integration access tokens."""
    return state.bearer_tokens | {c.access_token for c in state.oauth_consumers.values()}


def verify_oauth(request: web.Request, state: MagentoState, credentials: str) -> None:
    """Check an `Authorization: OAuth ...` request in Magento's order; raise on the first fault.

    The nonce is spent before the signature is checked, as in Magento, so a refused request
    still burns its nonce: clients must re-sign every retry.
    """
    params = _header_params(credentials)
    consumer = state.oauth_consumers.get(params["oauth_consumer_key"])
    if consumer is None:
        raise _problem(401, "consumer_key_rejected", "A consumer with the key is not found.")
    digest = _DIGESTS.get(params["oauth_signature_method"])
    if digest is None:
        raise _problem(
            400,
            "signature_method_rejected",
            "Signature method %1 is not supported",
            [params["oauth_signature_method"]],
        )
    _check_timestamp(params["oauth_timestamp"], state.clock().timestamp())
    _spend_nonce(state, params["oauth_consumer_key"], params["oauth_nonce"])
    if params["oauth_token"] != consumer.access_token:
        raise _problem(401, "token_rejected", "Specified token does not exist")
    expected = _signature(signature_base_string(request, params), consumer, digest)
    if not hmac.compare_digest(expected, params["oauth_signature"]):
        raise _problem(401, "signature_invalid", "The signature is invalid. Verify and try again.")


def _header_params(credentials: str) -> dict[str, str]:
    """Decoded `oauth_*` parameters of the header; absent or bad ones are a 400."""
    try:
        items = parse_keqv_list(parse_http_list(credentials))
    except (IndexError, ValueError) as exc:
        raise _problem(400, "parameter_rejected", "The OAuth header is malformed.") from exc
    params = {unescape(key): unescape(value) for key, value in items.items()}
    for name in _REQUIRED:
        if not params.get(name):
            raise _problem(
                400, "parameter_absent", '"%1" is required. Enter and try again.', [name]
            )
    if params.get("oauth_version", "1.0") != "1.0":
        raise _problem(
            401, "version_rejected", "OAuth version %1 is not supported.", [params["oauth_version"]]
        )
    return params


def _check_timestamp(value: str, now: float) -> None:
    """Refuse timestamps that are not integers or lie more than TIME_DEVIATION from now."""
    if not value.isdigit() or abs(int(value) - now) > TIME_DEVIATION:
        raise _problem(400, "timestamp_refused", "The timestamp is invalid. Verify and try again.")


def _spend_nonce(state: MagentoState, consumer_key: str, nonce: str) -> None:
    """Each nonce is accepted once per consumer."""
    if (consumer_key, nonce) in state.used_nonces:
        raise _problem(
            401,
            "nonce_used",
            "The nonce is already being used by the consumer with ID %1",
            [consumer_key],
        )
    state.used_nonces.add((consumer_key, nonce))


def signature_base_string(request: web.Request, params: Mapping[str, str]) -> str:
    """RFC 5849 base string: scheme://host/path as received, query decoded once + oauth params.

    Percent-decoding only: a `+` stays a plus sign, as RFC 3986 (not form encoding) reads it.
    Signatures over values with spaces failed on Magento 2.4.6+ (reference §5, [I37278]); the
    harsher reading here is that only `%20` is a space, so a client that signs `a b` but sends
    `a+b` is refused with signature_invalid.
    """
    uri = f"{request.scheme}://{request.host}{request.rel_url.raw_path}"
    query = [
        (unquote(key), unquote(value))
        for key, _, value in (
            part.partition("=") for part in request.rel_url.raw_query_string.split("&") if part
        )
    ]
    oauth = [(k, v) for k, v in params.items() if k.startswith("oauth_")]
    return str(construct_base_string(request.method, uri, query + oauth))


def _signature(base_string: str, consumer: OAuthCredentials, digest: Callable[..., Any]) -> str:
    """base64(HMAC(consumer_secret&token_secret, base_string)) with the requested digest."""
    key = f"{escape(consumer.consumer_secret)}&{escape(consumer.token_secret)}"
    mac = hmac.new(key.encode(), base_string.encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def _problem(
    status: int, problem: str, message: str, parameters: list[Any] | None = None
) -> MagentoError:
    """An OAuth refusal: Magento's phrase in the body, the OAuth problem code in the header."""
    return MagentoError(
        status,
        message,
        parameters,
        headers={"WWW-Authenticate": f'OAuth realm="Magento", oauth_problem="{problem}"'},
    )
