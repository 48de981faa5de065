"""Keyset pages without a scan: the simulator's answer to `entity_id gt X`, sorted by entity_id.

fa-sync reads every Magento list by keyset (magento client: filter `entity_id gt <last id>`,
sort `entity_id ASC`, page 1). `run_search` answers that by filtering and sorting the whole
table on every page, so reading a store of N rows costs O(N^2): an hour for 200,000
customers. Real MySQL walks the primary-key index instead; so does this module.

A `Table` is the simulator's dict of rows that counts its writes. It keeps its keys sorted,
rebuilt after a write, and only when every key is an int that the row's primary-key column
also holds; anything else (a hostile row stored under another id, say) has no index and every
query takes the scan. `search_table` answers from the index when the query's only order is the
primary key ascending and at least one filter group bounds the key (one filter: gt, gteq, lt,
eq ...); the other groups are still tested row by row, over the bounded range only. Every
other query, and every error, is `run_search`'s own: the answers are identical, which
tests/simulators/test_magento_keyset.py checks against the scan.

Rows edited in place keep the index right as long as their primary key stays put: the index
holds keys, never column values.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import UserDict
from collections.abc import Mapping
from typing import Any

from simulators.magento_compare import to_number
from simulators.magento_search import (
    Collection,
    Column,
    Filter,
    Paging,
    SearchCriteria,
    SortOrder,
    check_columns,
    echo,
    effective_page_size,
    matches_all,
    page_bounds,
    run_search,
)

Row = dict[str, Any]


class Table(UserDict[int, Row]):
    """Rows by primary key, like a dict, that notice their own writes.

    Every write goes through `__setitem__`/`__delitem__` (UserDict's update, pop, clear,
    setdefault do; `|=` is routed here too), and drops the sorted keys, so a stale index
    cannot answer.
    """

    #: (key column, sorted keys or None) until the next write. A class-level default, so a
    #: copy or unpickle that sets items before restoring attributes still works.
    _index: tuple[Column, list[int] | None] | None = None

    def __setitem__(self, key: int, row: Row) -> None:
        self._index = None
        self.data[key] = row

    def __delitem__(self, key: int) -> None:
        self._index = None
        del self.data[key]

    def __ior__(self, other: Any) -> Table:  # type: ignore[override,misc]
        self.update(other)
        return self

    def ordered_keys(self, key_column: Column) -> list[int] | None:
        """The keys in ascending order, when each is an int that its row's `key_column`
        holds too; None otherwise. Cached until the next write."""
        if self._index is None or self._index[0] is not key_column:
            self._index = (key_column, _sorted_keys(self.data, key_column))
        return self._index[1]


def _sorted_keys(rows: Mapping[int, Row], key_column: Column) -> list[int] | None:
    """Sorted keys, or None when some key is not the int its row says it is."""
    for key, row in rows.items():
        value = key_column(row)
        if type(key) is not int or type(value) is not int or value != key:
            return None
    return sorted(rows)


#: Conditions on the key that bound a range of it; `matches` lower-cases condition types.
_LOWER = {"gt": bisect_right, "gteq": bisect_left, "moreq": bisect_left, "from": bisect_left}
_UPPER = {"lt": bisect_left, "lteq": bisect_right, "to": bisect_right}


def search_table(
    table: Mapping[int, Row], criteria: SearchCriteria, collection: Collection, paging: Paging
) -> dict[str, Any]:
    """`run_search` over the table's rows in key order, answered from the key index when the
    query is a keyset page (see the module docstring)."""
    answer = keyset_search(table, criteria, collection, paging)
    if answer is not None:
        return answer
    return run_search([table[key] for key in sorted(table)], criteria, collection, paging)


def keyset_search(
    table: Mapping[int, Row], criteria: SearchCriteria, collection: Collection, paging: Paging
) -> dict[str, Any] | None:
    """The keyset page read from the index, or None when the query is not one (or the table
    has no index): the caller then scans."""
    check_columns(criteria, collection)  # errors first, in run_search's order
    size = effective_page_size(criteria, paging)
    key = collection.key
    if key is None or criteria.sort_orders != (SortOrder(key, "ASC"),):
        return None
    bounds = [g[0] for g in criteria.filter_groups if _bounds_key(g, key)]
    if not bounds or not isinstance(table, Table):
        return None
    keys = table.ordered_keys(collection.columns[key])
    if keys is None:
        return None
    low, high = _range(keys, bounds)
    rest = SearchCriteria(tuple(g for g in criteria.filter_groups if not _bounds_key(g, key)))
    if rest.filter_groups:
        # Groups on other columns are tested row by row: the index holds keys, not values.
        chosen: range | list[int] = [
            k for k in keys[low:high] if matches_all(table[k], rest, collection)
        ]
    else:
        chosen = range(low, high)  # positions in `keys`: no copy of the rest of the table
    start, stop = page_bounds(len(chosen), size, criteria.current_page, paging.overflow_mode)
    page = chosen[start:stop]
    if isinstance(page, range):
        page = keys[page.start : page.stop]
    return {
        "items": [table[k] for k in page],
        "search_criteria": echo(criteria),
        "total_count": len(chosen),
    }


def _bounds_key(group: tuple[Filter, ...], key: str) -> bool:
    """A group of one filter comparing the key with a value as a range bound or equality."""
    if len(group) != 1:
        return False
    only = group[0]
    condition = (only.condition_type or "eq").lower()
    return (
        only.field == key
        and only.value is not None
        and (condition in _LOWER or condition in _UPPER or condition == "eq")
    )


def _range(keys: list[int], bounds: list[Filter]) -> tuple[int, int]:
    """Slice of the sorted keys every bound admits. The value is read as MySQL reads a string
    compared with an int column (its numeric prefix), exactly as `matches` does."""
    low, high = 0, len(keys)
    for bound in bounds:
        condition = (bound.condition_type or "eq").lower()
        number = to_number(bound.value or "")
        if condition in _LOWER or condition == "eq":
            find = _LOWER.get(condition, bisect_left)
            low = max(low, find(keys, number))
        if condition in _UPPER or condition == "eq":
            find = _UPPER.get(condition, bisect_right)
            high = min(high, find(keys, number))
    return low, max(low, high)
