"""structlog setup: JSON lines off a terminal, readable console on one; secrets scrubbed.

Every line of a run carries profile and run_id, bound with contextvars at run start.

One pipeline for every logger: structlog's own loggers and the standard library's (aiohttp,
asyncio, APScheduler) end in the same processors, routed through `ProcessorFormatter`:

    exc_info -> plain traceback text (never local variables: a frame's locals hold tokens)
             -> scrub (keys and values, the traceback text included)
             -> JSON or console renderer
             -> scrub the rendered line once more (whatever a renderer adds is text too)

The traceback is formatted *before* the scrubber runs, so an exception message quoting a
header is scrubbed like any other value. Renderers are never handed an exc_info to draw:
rich and better-exceptions would print locals, and their output escapes the scrubber.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

#: Words that make a key secret, in a dict or in text (`key=value`, `"key": "value"`).
_HIDDEN_NAMES = (
    r"secret|token|password|passwd|authorization|cookie|api[-_]?key|access[-_]?key"
    r"|private[-_]?key|consumer[-_]?key|signature|credential|code[-_]?verifier|webhook"
)
#: Keys whose values are never written, whatever their nesting.
SECRET_KEY = re.compile(rf"({_HIDDEN_NAMES}|^code$)", re.I)
#: Credentials after an HTTP auth scheme: `Bearer x`, `Basic x`, `Digest x`.
_SCHEME = re.compile(r"\b(Bearer|Basic|Digest)(\s+)[A-Za-z0-9._~+/=-]+", re.I)
#: A header line whose whole value is secret (`Cookie: a=b; c=d`), unless the value is quoted
#: (then _PAIR below redacts just the quoted part and keeps the rest of the line).
_HEADER_LINE = re.compile(
    r"(?<![\w-])((?:proxy-)?authorization|set-cookie|cookie|x-api-key)(\s*:[ \t]*)"
    r"(?!\\?[\"'])[^\r\n]+",
    re.I,
)
#: key=value, key: value, "key": "value", 'key': 'value', \"key\": \"value\" (JSON in JSON):
#: query strings, form bodies, OAuth 1.0a header parameters, JSON text and Python reprs.
#: Every key is found (possessively: linear time on hostile text), SECRET_KEY decides.
_KEY_SEP = re.compile(r"(?<![\w-])([\w-]++)(\\?[\"']?\s*+[:=]\s*+)")
#: The value after a secret key: to the closing quote, or a bare run up to a delimiter.
_VALUE = re.compile(r"(\\?\")[^\"\\\r\n]*+|(')[^'\"\\\r\n]*+|[^\s&\"'\\,;<>]++")
#: Incoming-webhook URLs carry their secret in the path (Slack, Discord, Teams, Mattermost).
_WEBHOOK_PATH = re.compile(
    r"(hooks\.slack\.com/|/api/webhooks/|webhook\.office\.com/|/hooks/)[^\s\"'<>]+", re.I
)
#: user:password@ in a URL.
_USERINFO = re.compile(r"(//[^/\s:@]+:)[^/\s@]+@")
REDACTED = "[redacted]"
#: Deeper structures are cut here: a hostile body must not exhaust the stack when scrubbed.
MAX_DEPTH = 32
TOO_DEEP = "[nested too deep]"
#: Longer strings are cut before scrubbing: a log line is no place for a 10 MiB body, and
#: the regular expressions cost about 1 s per MiB.
MAX_TEXT = 64 * 1024


def scrub_text(text: str) -> str:
    """text with credentials replaced: auth schemes, secret header lines and key/value pairs."""
    text = _HEADER_LINE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _redact_pairs(text)
    text = _WEBHOOK_PATH.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


def _redact_pairs(text: str) -> str:
    """The value of every secret key=value / "key": "value" pair replaced, quotes kept."""
    if "=" not in text and ":" not in text:
        return text
    out: list[str] = []
    pos = 0
    for key in _KEY_SEP.finditer(text):
        if key.start() < pos or not SECRET_KEY.search(key.group(1)):
            continue  # inside a value already redacted, or a key anyone may read
        value = _VALUE.match(text, key.end())
        if value is None:
            continue
        out += [text[pos : key.end()], value.group(1) or value.group(2) or "", REDACTED]
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def scrub(value: Any, key: str = "", *, depth: int = 0) -> Any:
    """Return value with anything secret replaced; containers are walked (to MAX_DEPTH).

    Values of secret keys are replaced whole; text is searched for credentials; any other
    object becomes its scrubbed text, since a renderer would print its repr() unscrubbed.
    """
    if key and SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub_text(_cut(value))
    if isinstance(value, Mapping | list | tuple | set | frozenset) and depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {k: scrub(v, str(k), depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v, depth=depth + 1) for v in value]
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    return scrub_text(_cut(str(value)))


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[:MAX_TEXT]}... [{len(text) - MAX_TEXT} more characters not logged]"


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: scrub(v, k) for k, v in event_dict.items()}


def _scrub_rendered(_logger: Any, _name: str, line: Any) -> Any:
    """Last step, after the renderer: the finished line is searched again for credentials.

    Only the rules that cannot cross a JSON string's quotes run here, so a JSON line stays
    valid JSON; whole header lines were redacted before rendering.
    """
    if not isinstance(line, str):
        return line
    line = _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", line)
    return _redact_pairs(line)


def _tail(use_json: bool, colors: bool) -> list[Any]:
    """The processors every line ends with, from structlog and from the stdlib alike."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=colors,
            # never used (format_exc_info consumes exc_info first); no locals if ever it is
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    return [structlog.processors.format_exc_info, _scrub_processor, renderer, _scrub_rendered]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure() installs on the root logger (and replaces on re-run)."""


def configure(
    *, log_format: str = "auto", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog and route stdlib logging through the same scrubber and renderer,
    to stream (default: stderr)."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    use_json = log_format == "json" or (log_format == "auto" and not tty)
    levelno = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, *_tail(use_json, tty)],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_tail(use_json, tty),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # libraries are chatty at INFO (aiohttp access lines, APScheduler's job runs)
    root.setLevel(max(levelno, logging.WARNING))


def get_logger(name: str) -> Any:
    """A structlog logger named for its module."""
    return structlog.get_logger(name)
