"""Column comparisons of the Magento simulator: what MySQL does with a searchCriteria filter.

Magento turns each filter into SQL against a `*_general_ci` collation, so a faithful stand-in
compares case- and accent-insensitively ("Zoë" = "zoe"), ignores trailing spaces for `=`/`<`
("London " = "London"), compares numeric columns numerically, and lets NULL match nothing but
`null` (so `neq` and `nin` silently drop rows where the column is NULL). Datetimes are
"YYYY-MM-DD HH:MM:SS" strings in UTC and compare correctly as text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


def matches(actual: Any, condition_type: str, value: str | None) -> bool:
    """Whether a column value satisfies one searchCriteria condition, with SQL NULL semantics."""
    condition = condition_type.lower()
    if condition in ("null", "notnull"):
        return (actual is None) == (condition == "null")
    if actual is None or value is None:
        return False  # NULL compared with anything (even via != or NOT IN) is not true
    if condition in _SET_TESTS:
        return _SET_TESTS[condition](actual, value)
    # Unknown condition types fall through Magento's prepareSqlCondition to a plain `=`.
    test = _ORDER_TESTS.get(condition, _ORDER_TESTS["eq"])
    return test(_compare(actual, value))


def _in_list(actual: Any, value: str) -> bool:
    """`in`: the comma-separated value holds the column value."""
    return any(_compare(actual, part) == 0 for part in value.split(","))


def _like(actual: Any, value: str) -> bool:
    """SQL LIKE: % any run, _ one character, backslash escapes; case/accent-insensitive."""
    pattern = "".join(_like_token(token) for token in re.findall(r"\\.|.", value, re.DOTALL))
    return re.fullmatch(pattern, _fold(str(actual)), re.DOTALL) is not None


def _like_token(token: str) -> str:
    """Regex for one LIKE pattern token."""
    if token == "%":
        return ".*"
    if token == "_":
        return "."
    return re.escape(_fold(token[-1]))


def _finset(actual: Any, value: str) -> bool:
    """FIND_IN_SET(value, column): the column is itself a comma list (multiselects)."""
    return _fold(value) in (_fold(part) for part in str(actual).split(","))


_SET_TESTS: Mapping[str, Callable[[Any, str], bool]] = MappingProxyType(
    {
        "in": _in_list,
        "nin": lambda actual, value: not _in_list(actual, value),
        "like": _like,
        "nlike": lambda actual, value: not _like(actual, value),
        "finset": _finset,
        "nfinset": lambda actual, value: not _finset(actual, value),
    }
)
_ORDER_TESTS: Mapping[str, Callable[[int], bool]] = MappingProxyType(
    {
        "eq": lambda c: c == 0,
        "neq": lambda c: c != 0,
        "gt": lambda c: c > 0,
        "gteq": lambda c: c >= 0,
        "moreq": lambda c: c >= 0,
        "from": lambda c: c >= 0,
        "lt": lambda c: c < 0,
        "lteq": lambda c: c <= 0,
        "to": lambda c: c <= 0,
    }
)


def _compare(actual: Any, value: str) -> int:
    """MySQL comparison of a column with a quoted string: numbers numerically, text collated.

    Datetimes are "YYYY-MM-DD HH:MM:SS" strings, so text comparison orders them correctly.
    """
    if isinstance(actual, bool | int | float):
        number = to_number(value)
        return (actual > number) - (actual < number)
    left, right = _fold(str(actual)).rstrip(" "), _fold(value).rstrip(" ")
    return (left > right) - (left < right)


def to_number(value: str) -> float:
    """MySQL casts a non-numeric string to its numeric prefix, or 0."""
    match = re.match(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)", value)
    return float(match.group(0)) if match else 0.0


def _fold(text: str) -> str:
    """`*_general_ci`: compare without case or accents ("Zoë" = "zoe")."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def sort_key(value: Any) -> tuple[Any, ...]:
    """Total order over NULL < numbers < collated text."""
    if value is None:
        return (0,)
    if isinstance(value, bool | int | float):
        return (1, 0, value)
    return (1, 1, _fold(str(value)))
