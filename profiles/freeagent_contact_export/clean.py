"""Clean text at the edge: make a Magento record storable before it reaches the ledger.

PostgreSQL's jsonb refuses ``\\u0000`` and lone UTF-16 surrogates (which JSON can carry as
``"\\ud800"`` escapes), and refuses NaN/Infinity (which Python's json module accepts), so one
such character in one customer used to fail the whole chunk, and every later run again.
``clean_record`` walks the record and returns a copy PostgreSQL accepts, plus a note per
field it changed, which collect puts on the ledger row (``metadata.cleaned``):

* NUL and the other C0/C1 control characters are removed, except tab, line feed and carriage
  return (street lines and notes are multi-line; the payload collapses whitespace anyway);
* lone surrogates are removed (a valid pair arrives already joined into one character);
* strings longer than ``MAX_STORED_TEXT`` are cut: FreeAgent documents no field limits and
  takes 255 characters at most in practice, so this bound only keeps absurd values (a
  megabyte "name") out of the database, and the payload reports its own, tighter cut;
* keys are cleaned the same way; NaN and infinite numbers become null.

Nothing else is touched: the ledger keeps what Magento sent, and meaning is decided by the
payload. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Any

from daemon.numbers import whole_number
from profiles.freeagent_contact_export.models import MAX_STORED_TEXT

#: Control characters that carry layout, not noise.
_KEEP = frozenset("\t\n\r")
#: Most notes kept per record: a hostile record must not bloat its own ledger row.
MAX_NOTES = 20

Note = dict[str, str]

#: Every character _kind() objects to (Cc but tab, LF, CR; Cs): text without any is kept as is.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _kind(char: str) -> str | None:
    """Why ``char`` cannot be stored, or None when it can."""
    if char == "\x00":
        return "NUL"
    if char in _KEEP:
        return None
    category = unicodedata.category(char)
    if category == "Cc":
        return "control character"
    if category == "Cs":
        return "lone surrogate"
    return None


def _storable(text: str) -> bool:
    """Whether ``text`` is kept as it is: short enough, nothing _kind() objects to (the
    common case, told without a look at every character)."""
    return len(text) <= MAX_STORED_TEXT and _UNSTORABLE.search(text) is None


def clean_text(text: str) -> tuple[str, list[str]]:
    """``text`` without unstorable characters and cut to MAX_STORED_TEXT; what was changed."""
    if _storable(text):
        return text, []
    removed: Counter[str] = Counter()
    kept = []
    for char in text:
        kind = _kind(char)
        if kind is None:
            kept.append(char)
        else:
            removed[kind] += 1
    changes = [f"removed {n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(removed.items())]
    result = "".join(kept) if removed else text
    if len(result) > MAX_STORED_TEXT:
        changes.append(f"cut from {len(result)} to {MAX_STORED_TEXT} characters")
        result = result[:MAX_STORED_TEXT]
    return result, changes


def clean_record(value: Any) -> tuple[Any, list[Note]]:
    """A copy of ``value`` PostgreSQL's jsonb accepts, and ``[{"field", "change"}]`` notes."""
    try:
        return _plain_copy(value), []
    except _NeedsWalk:
        pass
    notes: list[Note] = []
    cleaned = _walk(value, "", notes)
    if len(notes) > MAX_NOTES:
        notes = [*notes[: MAX_NOTES - 1], {"field": "*", "change": f"{len(notes)} changes"}]
    return cleaned, notes


class _NeedsWalk(Exception):
    """Something in the record is not plain storable JSON: walk it again, noting paths."""


#: Types stored as they are; bool is listed apart from int because ``type()`` tells them apart.
_AS_IS = frozenset({int, bool, type(None)})


def _plain_copy(value: Any) -> Any:
    """The copy ``_walk`` would make when it has nothing to note, or _NeedsWalk.

    Nearly every record is already storable, and ``_walk`` builds a dotted path for each of
    its values, only to throw the paths away: that was most of the cost of cleaning. Exact
    types keep this short: anything unusual (a tuple, a str subclass, a non-str key, NaN)
    goes to ``_walk``, which decides as before.
    """
    kind = type(value)
    if kind is str:
        if not _storable(value):
            raise _NeedsWalk
        return value
    if kind is dict:
        return {_plain_key(key): _plain_copy(item) for key, item in value.items()}
    if kind is list:
        return [_plain_copy(item) for item in value]
    if kind in _AS_IS or (kind is float and math.isfinite(value)):
        return value
    raise _NeedsWalk


def _plain_key(key: Any) -> str:
    if type(key) is not str or not _storable(key):
        raise _NeedsWalk
    return key


def _walk(value: Any, where: str, notes: list[Note]) -> Any:
    if isinstance(value, str):
        text, changes = clean_text(value)
        notes.extend({"field": where or "(value)", "change": c} for c in changes)
        return text
    if isinstance(value, dict):
        return {_key(key, where, notes): _walk(item, _at(where, key), notes)
                for key, item in value.items()}  # fmt: skip
    if isinstance(value, list | tuple):
        return [_walk(item, _at(where, index), notes) for index, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        notes.append({"field": where or "(value)", "change": f"{value} replaced by null"})
        return None
    return value


def _key(key: Any, where: str, notes: list[Note]) -> str:
    """JSON object keys must be text; cleaned like values so they can be stored too."""
    text, changes = clean_text(key if isinstance(key, str) else str(key))
    if changes or not isinstance(key, str):
        change = "key: " + (", ".join(changes) or "made text")
        notes.append({"field": _at(where, text), "change": change})
    return text


def _at(where: str, key: Any) -> str:
    """Dotted path of a field, e.g. ``addresses.0.street.1``."""
    text = clean_text(str(key))[0][:80]
    return f"{where}.{text}" if where else text


def describe(notes: list[Note]) -> str:
    """One line for the run's messages: "lastname: removed 1 NUL; email: ..."."""
    shown = "; ".join(f"{n['field']}: {n['change']}" for n in notes[:5])
    return shown + (f"; and {len(notes) - 5} more" if len(notes) > 5 else "")


def small_int(value: Any) -> int | None:
    """An id Magento may send as a number or a numeric string; None when it is neither, or
    outside PostgreSQL's integer range (the ledger's id columns)."""
    number = whole_number(value)
    return number if number is not None and 0 <= number < 2**31 else None
