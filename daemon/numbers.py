"""Whole numbers sent as JSON numbers or as text, as PHP and hand-written configs send them."""

from __future__ import annotations

from typing import Any


def whole_number(value: Any) -> int | None:
    """An int, or the int ASCII decimal digits spell (surrounding spaces allowed); None for
    anything else, bools included.

    str.isdigit() alone is not enough: it admits "²" (which int() refuses, so one such value
    would raise where a clear "not a number" is due) and the digits of other scripts."""
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
