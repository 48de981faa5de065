"""Configure fa-sync's logging for one test, then put structlog and the root logger back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from daemon.logs import configure


@contextmanager
def configured(log_format: str, level: str = "INFO") -> Iterator[None]:
    """daemon.logs.configure() for the duration of the block (call it inside capsys)."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    configure(log_format=log_format, level=level)
    try:
        yield
    finally:
        structlog.configure(**saved)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(root_level)
