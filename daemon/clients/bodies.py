"""Response bodies read so that no answer can crash or exhaust the process.

A remote API (or anything between us and it) may send a body of any size and any shape:

- the size is capped while reading (FA_SYNC_HTTP_MAX_BODY_BYTES); past the cap the answer is
  dropped unread and the request fails as TransientApiError: the fault is the endpoint's, not
  the record's, and the server may have acted on a write, so it is never taken as a refusal;
- JSON is parsed only when the Content-Type says so, and parsing never raises: invalid JSON,
  or JSON nested deeper than MAX_JSON_DEPTH (Python's parser raises RecursionError on a
  100,000-deep array), leaves the body as text, noted in the log. The clients then report
  "answer is not the JSON expected", as for an HTML error page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from daemon.errors import TransientApiError
from daemon.logs import get_logger

log = get_logger(__name__)

#: Nesting beyond this is not an API answer; it would also strain every later recursive walk
#: (scrubbing, jsonb encoding).
MAX_JSON_DEPTH = 64
#: Read size per chunk while counting towards the cap.
CHUNK_BYTES = 64 * 1024


async def read_capped(resp: aiohttp.ClientResponse, *, cap: int, where: str, service: str) -> bytes:
    """The whole body, or TransientApiError as soon as it is known to exceed cap bytes."""
    declared = resp.content_length
    if declared is not None and declared > cap:
        raise _too_large(resp.status, f"{declared} bytes declared", cap, where, service)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > cap:  # counted after decompression: a small gzip bomb is caught too
            raise _too_large(resp.status, f"over {cap} bytes", cap, where, service)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, size: str, cap: int, where: str, service: str) -> TransientApiError:
    return TransientApiError(
        f"{where}: HTTP {status} answer too large ({size}; the limit is {cap} bytes, "
        "FA_SYNC_HTTP_MAX_BODY_BYTES): the endpoint is misbehaving, the body was not read",
        status=status,
        service=service,
    )


def is_json_type(headers: Mapping[str, str]) -> bool:
    """Whether the answer's Content-Type says JSON (application/json or a +json type)."""
    content_type = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def parse_body(content_type: str, raw: bytes, *, where: str = "") -> Any:
    """JSON (dict/list) only when the server says so and it parses within MAX_JSON_DEPTH;
    otherwise the text. Never raises: FreeAgent has answered XML and HTML by mistake."""
    text = raw.decode("utf-8", errors="replace")
    if not is_json_type({"Content-Type": content_type}):
        return text
    try:
        value = json.loads(text)
    except RecursionError:
        reason = "nested too deep to parse"
    except ValueError as exc:
        reason = f"invalid JSON: {exc}"
    else:
        if not _too_deep(text, value):
            return value
        reason = f"nested deeper than {MAX_JSON_DEPTH} levels"
    log.warning("response_body_not_json", where=where, reason=reason, size=len(raw))
    return text


def _too_deep(text: str, value: Any) -> bool:
    """Whether ``value``, parsed from ``text``, nests deeper than MAX_JSON_DEPTH.

    Each list or dict in ``value`` opened with its own bracket in ``text``, so a text with
    at most MAX_JSON_DEPTH brackets in all (those inside strings counted too) cannot nest
    deeper: counting is far cheaper than walking, and most answers are that small."""
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return False
    return nested_deeper_than(value, MAX_JSON_DEPTH)


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/dicts nest more than limit levels (iterative: no recursion to exhaust).

    One level at a time, looking only into lists and dicts and making no (value, depth) pair
    per value: a page of customers holds thousands of values, and every answer is walked."""
    level = [value]
    for _ in range(limit + 1):
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return False
        level = []
        for item in containers:
            level.extend(item.values() if isinstance(item, dict) else item)
    return True
