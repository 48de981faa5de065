"""structlog setup: JSON lines off a terminal, readable console on one; secrets scrubbed.

Every line of a run carries profile and run_id, bound with contextvars at run start.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values are never written, whatever their nesting.
SECRET_KEY = re.compile(
    r"(secret|token|password|authorization|api_key|access_key|code_verifier|^code$)", re.I
)
#: Secrets that slip into free text (an exception message quoting a header).
SECRET_TEXT = re.compile(r"(Bearer|Basic|OAuth)\s+[^\s,;\"']+", re.I)
REDACTED = "[redacted]"


def scrub(value: Any, key: str = "") -> Any:
    """Return value with anything secret replaced; dicts and lists are walked."""
    if key and SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return SECRET_TEXT.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    return value


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: scrub(v, k) for k, v in event_dict.items()}


def configure(*, log_format: str = "auto", level: str = "INFO") -> None:
    """Configure structlog (and route stdlib logging through the same renderer)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
        _scrub_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def get_logger(name: str) -> Any:
    """A structlog logger named for its module."""
    return structlog.get_logger(name)
