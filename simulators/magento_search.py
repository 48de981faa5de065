"""searchCriteria for the Magento simulator: parse the query string, filter, sort, page, echo.

Magento builds a `SearchCriteriaInterface` from PHP-style bracket keys
(`searchCriteria[filter_groups][0][filters][1][field]=email`) and hands it to a SQL collection.
This module reproduces what a client can observe of that pipeline:

* keys may be snake_case or camelCase (the input processor camelises both to setter names);
  an unknown property is a 400 naming the missing accessor;
* list indexes must be explicit: `[]` makes PHP put `field` and `value` into different filters,
  which ends as an SQL error, i.e. a production-mode 500;
* filters are OR'ed inside a group, groups are AND'ed; each filter compares like MySQL
  (see magento_compare);
* no sortOrders leaves the SQL order unspecified: by default rows come in reverse primary-key
  order, so a client that relies on an order it did not ask for pages wrongly; a sortOrder
  without direction sorts DESC;
* pages are 1-based; a page past the end is empty (2.4), repeats the last page (2.3), or is
  page 1 again (storefront areas, some third-party repositories).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from simulators.magento_compare import matches, sort_key
from simulators.magento_errors import MagentoError, internal_error, invalid_type

#: A parsed bracket tree: leaves are the decoded query values.
Node = dict[str, "Node | str"]
#: Reads one column of one row (a customer or order dict); None is SQL NULL.
Column = Callable[[Mapping[str, Any]], Any]

_PROPERTIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "SearchCriteriaInterface": frozenset(
            {"filter_groups", "sort_orders", "page_size", "current_page"}
        ),
        "Search\\FilterGroup": frozenset({"filters"}),
        "Filter": frozenset({"field", "value", "condition_type"}),
        "SortOrder": frozenset({"field", "direction"}),
    }
)
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INDEX = re.compile(r"\[([^\[\]]*)\]")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Filter:
    """One condition; `condition_type` None means it was not sent (Magento then uses eq)."""

    field: str  #: column name, e.g. entity_id
    value: str | None  #: raw query value; None when not sent
    condition_type: str | None  #: eq, like, in, ... as sent


@dataclass(frozen=True)
class SortOrder:
    """One ORDER BY term."""

    field: str  #: column name
    direction: str  #: ASC or DESC, upper-cased like Magento's SortOrder::setDirection


@dataclass(frozen=True)
class SearchCriteria:
    """What the client asked for; `None` fields were not sent and are not echoed."""

    filter_groups: tuple[tuple[Filter, ...], ...] = ()  #: OR inside, AND across
    sort_orders: tuple[SortOrder, ...] | None = None  #: applied in order
    page_size: int | None = None  #: None or 0: every row
    current_page: int | None = None  #: 1-based; ignored without page_size


@dataclass(frozen=True)
class Collection:
    """A searchable table: its columns and how it reports a column it does not have."""

    columns: Mapping[str, Column]  #: filterable and sortable column names
    unknown_field: Callable[[str], MagentoError]  #: EAV says 400, flat tables say SQL 500
    #: The primary-key column, when rows are stored under its value (see magento_keyset)
    key: str | None = None


@dataclass(frozen=True)
class Paging:
    """Server-side paging settings of the simulated install."""

    overflow_mode: str = "empty"  #: "empty" (2.4), "repeat_last" (2.3) or "first" past the end
    max_page_size: int | None = None  #: input limits on: larger pageSize is a 400
    default_page_size: int = 20  #: input limits on: pageSize omitted gets this
    unsorted_reversed: bool = True  #: no sortOrders: reverse primary-key order (unspecified)


def to_snake(key: str) -> str:
    """`filterGroups` and `filter_groups` name the same setter; compare them in snake_case."""
    return _CAMEL_HUMP.sub("_", key).lower()


def parse_search_criteria(pairs: Iterable[tuple[str, str]]) -> SearchCriteria | None:
    """The searchCriteria in decoded query pairs, or None when the client sent none at all."""
    tree = _nest(pairs)
    if "searchCriteria" not in tree:
        return None
    root = tree["searchCriteria"]
    if isinstance(root, str):  # `searchCriteria=` alone asks for everything
        return SearchCriteria()
    props = _properties(root, "SearchCriteriaInterface")
    sort_orders = props.get("sort_orders")
    return SearchCriteria(
        filter_groups=tuple(_filter_group(g) for g in _items(props.get("filter_groups"))),
        sort_orders=None if sort_orders is None else tuple(map(_sort_order, _items(sort_orders))),
        page_size=_optional_int(props.get("page_size")),
        current_page=_optional_int(props.get("current_page")),
    )


def _nest(pairs: Iterable[tuple[str, str]]) -> Node:
    """Build PHP's nested array from searchCriteria bracket keys; later duplicates win."""
    tree: Node = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None or match.group(1) != "searchCriteria":
            continue
        path = [match.group(1), *_INDEX.findall(match.group(2))]
        if "" in path:
            # PHP appends a fresh element for each `[]`, splitting field from value.
            digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:13]
            raise internal_error(digest)
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):  # PHP lets the array win over a scalar
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return tree


def _properties(node: Node | str, interface: str) -> dict[str, Node | str]:
    """Snake-case property map of one object; unknown names fail like Magento's input processor."""
    if isinstance(node, str):
        raise invalid_type(node, f"Magento\\Framework\\Api\\{interface}")
    known = _PROPERTIES[interface]
    props: dict[str, Node | str] = {}
    for key, value in node.items():
        name = to_snake(key)
        if name not in known:
            raise _no_accessor(key, interface)
        props[name] = value
    return props


def _no_accessor(key: str, interface: str) -> MagentoError:
    """The 400 Magento gives for `searchCriteria[page_sizes]` and similar typos."""
    accessor = "get" + "".join(part.capitalize() for part in to_snake(key).split("_"))
    return MagentoError(
        400,
        'Property "%propertyName" does not have accessor method "%accessorMethod" '
        'in class "%className".',
        {
            "propertyName": key,
            "accessorMethod": accessor,
            "className": f"Magento\\Framework\\Api\\{interface}",
        },
    )


def _items(node: Node | str | None) -> list[Node | str]:
    """Elements of an indexed list, in index order (numeric indexes numerically)."""
    if node is None:
        return []
    if isinstance(node, str):
        raise invalid_type(node, "array")
    return [node[k] for k in sorted(node, key=_index_key)]


def _index_key(key: str) -> tuple[int, int, str]:
    """PHP keeps insertion order, but clients number from 0: order numerically, names last."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _filter_group(node: Node | str) -> tuple[Filter, ...]:
    """One filter group: its filters, to be OR'ed."""
    props = _properties(node, "Search\\FilterGroup")
    return tuple(_filter(f) for f in _items(props.get("filters")))


def _filter(node: Node | str) -> Filter:
    """One filter; a missing field is a required-field 400."""
    props = _properties(node, "Filter")
    field, value, condition = (props.get(k) for k in ("field", "value", "condition_type"))
    if not isinstance(field, str) or not field:
        raise MagentoError(
            400, '"%fieldName" is required. Enter and try again.', {"fieldName": "field"}
        )
    if isinstance(value, dict) or isinstance(condition, dict):
        raise invalid_type("Array", "string")
    return Filter(field=field, value=value, condition_type=condition or None)


def _sort_order(node: Node | str) -> SortOrder:
    """One sort term; Magento defaults the direction to DESC and rejects anything but ASC/DESC."""
    props = _properties(node, "SortOrder")
    field, direction = props.get("field"), props.get("direction") or "DESC"
    if not isinstance(field, str) or isinstance(direction, dict):
        raise invalid_type("Array", "string")
    if direction.upper() not in ("ASC", "DESC"):
        raise MagentoError(
            400,
            'The sort order "%1" is invalid. Verify the sort order and try again.',
            [direction],
        )
    return SortOrder(field=field, direction=direction.upper())


def _optional_int(node: Node | str | None) -> int | None:
    """pageSize/currentPage as int; non-numbers fail the service input type check."""
    if node is None:
        return None
    if isinstance(node, dict):
        raise invalid_type("Array", "int")
    if not re.fullmatch(r"\s*[+-]?\d+\s*", node):
        raise invalid_type(node, "int")
    return int(node)


def run_search(
    rows: Sequence[Mapping[str, Any]],
    criteria: SearchCriteria,
    collection: Collection,
    paging: Paging,
) -> dict[str, Any]:
    """The `{items, search_criteria, total_count}` envelope for rows given in primary-key order."""
    check_columns(criteria, collection)
    page_size = effective_page_size(criteria, paging)
    matched = [row for row in rows if matches_all(row, criteria, collection)]
    ordered = _sorted(matched, criteria.sort_orders or (), collection)
    if not criteria.sort_orders and paging.unsorted_reversed:
        ordered.reverse()
    start, stop = page_bounds(len(ordered), page_size, criteria.current_page, paging.overflow_mode)
    return {
        "items": ordered[start:stop],
        "search_criteria": echo(criteria),
        "total_count": len(matched),
    }


def check_columns(criteria: SearchCriteria, collection: Collection) -> None:
    """Unknown columns fail before any row is read, even on an empty table."""
    names = [f.field for group in criteria.filter_groups for f in group]
    names += [s.field for s in criteria.sort_orders or ()]
    for name in names:
        if name not in collection.columns:
            raise collection.unknown_field(name)


def effective_page_size(criteria: SearchCriteria, paging: Paging) -> int | None:
    """Effective page size; with input limits on, the limit and the default page size apply."""
    size = criteria.page_size
    if paging.max_page_size is None:
        return size or None
    if size is None:
        return paging.default_page_size
    if size > paging.max_page_size:
        raise MagentoError(
            400, "Maximum SearchCriteria pageSize is %max", {"max": paging.max_page_size}
        )
    if size < 1:
        raise MagentoError(400, "Minimum SearchCriteria pageSize is %min", {"min": 1})
    return size


def page_bounds(
    count: int, size: int | None, current: int | None, overflow: str
) -> tuple[int, int]:
    """Slice of one page among `count` rows; what lies past the end depends on the Magento
    version simulated."""
    if overflow not in ("empty", "repeat_last", "first"):
        raise ValueError(f"overflow_mode {overflow!r}: expected 'empty', 'repeat_last', 'first'")
    if size is None:
        return 0, count
    page = max(current or 1, 1)
    last_page = max((count + size - 1) // size, 1)
    if page > last_page and overflow == "repeat_last":
        page = last_page  # <=2.3 Data\Collection::getCurPage() clamps to the last page
    elif page > last_page and overflow == "first":
        page = 1  # storefront currentPageDetection, reintroduced by some repositories
    return min((page - 1) * size, count), min(page * size, count)


def echo(criteria: SearchCriteria) -> dict[str, Any]:
    """search_criteria as Magento serialises it back: snake_case, unsent values left out.

    `filter_groups` is always present (its getter returns []) and every filter carries
    `condition_type`, because Filter::getConditionType() falls back to "eq".
    """
    echoed: dict[str, Any] = {
        "filter_groups": [
            {"filters": [_echo_filter(f) for f in group]} for group in criteria.filter_groups
        ]
    }
    if criteria.sort_orders is not None:
        echoed["sort_orders"] = [
            {"field": s.field, "direction": s.direction} for s in criteria.sort_orders
        ]
    if criteria.page_size is not None:
        echoed["page_size"] = criteria.page_size
    if criteria.current_page is not None:
        echoed["current_page"] = criteria.current_page
    return echoed


def _echo_filter(item: Filter) -> dict[str, Any]:
    """One echoed filter; a value that was not sent stays absent (nulls are omitted)."""
    echoed = {"field": item.field, "condition_type": item.condition_type or "eq"}
    if item.value is not None:
        echoed["value"] = item.value
    return echoed


def matches_all(row: Mapping[str, Any], criteria: SearchCriteria, coll: Collection) -> bool:
    """AND across groups, OR within a group; an empty group matches everything."""
    return all(
        not group or any(_matches(row, f, coll) for f in group) for group in criteria.filter_groups
    )


def _matches(row: Mapping[str, Any], item: Filter, coll: Collection) -> bool:
    """One filter against one row."""
    return matches(coll.columns[item.field](row), item.condition_type or "eq", item.value)


def _sorted(
    rows: list[Mapping[str, Any]], orders: Sequence[SortOrder], coll: Collection
) -> list[Mapping[str, Any]]:
    """ORDER BY the terms left to right; NULLs first ascending, last descending, like MySQL."""
    result = list(rows)
    for order in reversed(orders):
        column = coll.columns[order.field]
        result.sort(key=lambda row: sort_key(column(row)), reverse=order.direction == "DESC")
    return result


def parse_fields(spec: str) -> dict[str, Any] | None:
    """Parse `fields=items[id,email,addresses[city]],total_count` into a nested dict.

    Returns None for an unbalanced spec: Magento's FieldsFilter then leaves the response whole.
    """
    stack: list[dict[str, Any]] = [{}]
    last: str | None = None
    for token in re.findall(r"[^,\[\]\s]+|[,\[\]]", spec):
        if token == "[":
            if last is None:
                return None
            stack[-1][last] = {}
            stack.append(stack[-1][last])
        elif token == "]":
            if len(stack) == 1:
                return None
            stack.pop()
        elif token != ",":
            stack[-1][token] = None
        last = None if token in ",[]" else token
    return stack[0] if len(stack) == 1 and stack[0] else None


def trim_fields(value: Any, tree: Mapping[str, Any]) -> Any:
    """Keep only the named keys, recursing into lists and nested objects; order is preserved."""
    if isinstance(value, list):
        return [trim_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: item if tree[key] is None else trim_fields(item, tree[key])
        for key, item in value.items()
        if key in tree
    }
