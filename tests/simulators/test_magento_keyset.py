"""Specification of the Magento simulator's key index (simulators/magento_keyset.py): its
answers are the full scan's (`run_search`), for any query and data, before and after writes."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.magento import CUSTOMERS, ORDERS, MagentoState
from simulators.magento_errors import MagentoError
from simulators.magento_keyset import Table, keyset_search, search_table
from simulators.magento_search import (
    Filter,
    Paging,
    SearchCriteria,
    SortOrder,
    parse_search_criteria,
    run_search,
)

STAMPS = ("2024-01-01 00:00:00", "2024-06-01 12:00:00", "2025-01-01 00:00:00")
KEYSET_SORT = (SortOrder("entity_id", "ASC"),)

# Rows with the columns the filters below read; None values are SQL NULL.
rows = st.fixed_dictionaries(
    {
        "website_id": st.sampled_from([1, 2, None]),
        "updated_at": st.sampled_from(STAMPS),
        "email": st.sampled_from(["a@x.io", "B@x.io", "zoë@x.io", ""]),
    }
)
tables = st.dictionaries(st.integers(1, 12), rows, max_size=12)
# Values as a client may send them: ids (most of them stored), junk MySQL reads by its
# numeric prefix, decimals, blanks.
key_values = st.one_of(
    st.integers(-1, 13).map(str), st.sampled_from(["", "abc", "7abc", " 12", "4.5", "+3", "-0"])
)
key_conditions = st.sampled_from(
    ["gt", "gteq", "moreq", "from", "lt", "lteq", "to", "eq", "GT", "Lteq", None, "in", "neq"]
)
bounds = st.builds(Filter, st.just("entity_id"), key_values, key_conditions)
others = st.builds(
    Filter,
    st.sampled_from(["website_id", "updated_at", "email", "entity_id"]),
    st.sampled_from(["1", "2", "1,2", STAMPS[1], "%x.io", "b@X.IO", None]),
    st.sampled_from(["eq", "neq", "gteq", "lt", "in", "nin", "like", "null", "notnull", None]),
)
groups = st.one_of(
    bounds.map(lambda f: (f,)),
    st.lists(others, max_size=2).map(tuple),
    st.tuples(bounds, others),  # a bound OR'ed with something else is no bound
)
sorts = st.one_of(
    st.just(KEYSET_SORT),
    st.sampled_from(
        [
            None,
            (),
            (SortOrder("entity_id", "DESC"),),
            (SortOrder("email", "ASC"),),
            (*KEYSET_SORT, SortOrder("email", "DESC")),
        ]
    ),
)
criteria = st.builds(
    SearchCriteria,
    filter_groups=st.lists(groups, max_size=3).map(tuple),
    sort_orders=sorts,
    page_size=st.one_of(st.none(), st.integers(-3, 12), st.just(400)),
    current_page=st.one_of(st.none(), st.integers(-1, 12)),
)
pagings = st.builds(
    Paging,
    overflow_mode=st.sampled_from(["empty", "repeat_last", "first"]),
    max_page_size=st.sampled_from([None, 5, 300]),
    default_page_size=st.integers(1, 6),
    unsorted_reversed=st.booleans(),
)


def table_of(data: dict[int, dict[str, Any]]) -> Table:
    """Customers stored under their ids, as MagentoState holds them."""
    return Table({key: {"id": key, **row} for key, row in data.items()})


def outcome(search: Any, *args: Any) -> Any:
    """The answer, or the refusal as comparable data."""
    try:
        return search(*args)
    except MagentoError as exc:
        return ("refused", exc.status, exc.body())
    except ValueError as exc:
        return ("error", str(exc))


def scan(table: Table, query: SearchCriteria, paging: Paging) -> Any:
    """The reference: every row, in key order, filtered and sorted by run_search."""
    ordered = [table[key] for key in sorted(table)]
    return outcome(run_search, ordered, query, CUSTOMERS, paging)


def assert_same(table: Table, query: SearchCriteria, paging: Paging) -> None:
    assert outcome(search_table, table, query, CUSTOMERS, paging) == scan(table, query, paging)


@settings(max_examples=400, deadline=None)
@given(data=tables, query=criteria, paging=pagings)
def test_any_query_gets_the_scans_answer(data, query, paging):
    """Indexed or not, every query gets exactly what the full scan returns, refusals included."""
    assert_same(table_of(data), query, paging)


@settings(max_examples=300, deadline=None)
@given(
    data=tables,
    bound=bounds,
    extra=st.lists(st.lists(others, min_size=1, max_size=2).map(tuple), max_size=2),
    size=st.integers(1, 12),
    current=st.integers(1, 4),
    paging=pagings,
)
def test_keyset_pages_are_read_from_the_index(data, bound, extra, size, current, paging):
    """A keyset page (a key bound, sorted by key ascending) is answered by the index, and
    its answer is the scan's."""
    query = SearchCriteria(((bound,), *extra), KEYSET_SORT, size, current)
    table = table_of(data)
    if bound.condition_type not in (None, "in", "neq"):
        assert outcome(keyset_search, table, query, CUSTOMERS, Paging(max_page_size=None))
    assert_same(table, query, paging)


# One write each: (kind, key, value). Values are row fields; in-place edits leave the key.
writes = st.tuples(
    st.sampled_from(["set", "del", "pop", "setdefault", "update", "ior", "edit", "clear"]),
    st.integers(1, 14),
    rows,
)


def apply(table: Table, write: tuple[str, int, dict[str, Any]]) -> None:
    """Apply one write the way a test or the state's methods might."""
    kind, key, fields = write
    row = {"id": key, **fields}
    if kind == "set":
        table[key] = row
    elif kind == "del" and key in table:
        del table[key]
    elif kind == "pop":
        table.pop(key, None)
    elif kind == "setdefault":
        table.setdefault(key, row)
    elif kind == "update":
        table.update({key: row, key + 1: {**row, "id": key + 1}})
    elif kind == "ior":
        table |= {key: row}
    elif kind == "edit" and table:
        next(iter(table.values())).update(fields)  # in place: not a write the table sees
    elif kind == "clear" and key % 7 == 0:
        table.clear()


@settings(max_examples=200, deadline=None)
@given(
    data=tables,
    steps=st.lists(st.tuples(writes, criteria), min_size=1, max_size=12),
    paging=pagings,
)
def test_answers_follow_every_write(data, steps, paging):
    """After any sequence of writes (in-place edits too), indexed answers are still the scan's."""
    table = table_of(data)
    for write, query in steps:
        apply(table, write)
        assert_same(table, query, paging)
        keyset = SearchCriteria(((Filter("entity_id", str(write[1] // 2), "gt"),),), KEYSET_SORT, 5)
        assert_same(table, keyset, paging)


def test_a_row_stored_under_another_id_turns_the_index_off():
    """A key that is not its row's id (hostile data) leaves only the scan, which stays exact."""
    table = table_of({n: {"website_id": 1} for n in range(1, 6)})
    table[9] = {"id": 3, "website_id": 1}
    query = SearchCriteria(((Filter("entity_id", "2", "gt"),),), KEYSET_SORT, 2)
    assert keyset_search(table, query, CUSTOMERS, Paging()) is None
    assert [r["id"] for r in search_table(table, query, CUSTOMERS, Paging())["items"]] == [3, 3]


@pytest.mark.parametrize(
    "clone",
    [copy.copy, copy.deepcopy, lambda t: pickle.loads(pickle.dumps(t))],  # noqa: S301
    ids=["copy", "deepcopy", "pickle"],
)
def test_a_copied_table_keeps_its_rows_and_notices_writes(clone):
    """Copies hold the same rows and index their own writes."""
    table = table_of({n: {"website_id": 1} for n in range(1, 6)})
    query = SearchCriteria(((Filter("entity_id", "3", "gt"),),), KEYSET_SORT, 10)
    search_table(table, query, CUSTOMERS, Paging())  # builds the index before the copy
    copied = clone(table)
    copied[7] = {"id": 7}
    del copied[4]
    assert [r["id"] for r in search_table(copied, query, CUSTOMERS, Paging())["items"]] == [5, 7]
    assert [r["id"] for r in search_table(table, query, CUSTOMERS, Paging())["items"]] == [4, 5]


def test_the_state_keeps_tables_through_its_writes():
    """Customers and orders added, saved and deleted through MagentoState page as the scan does."""
    state = MagentoState.seeded(customers=30, guest_orders=8)
    assert isinstance(state.customers, Table) and isinstance(state.orders, Table)
    first = min(state.customers)
    state.update_customer(first, lastname="Saved")
    state.delete_customer(first + 1)
    state.add_customer(email="new@example.com", firstname="New", lastname="Customer")
    state.add_customer_order(first + 2)
    pairs = [
        ("searchCriteria[filter_groups][0][filters][0][field]", "entity_id"),
        ("searchCriteria[filter_groups][0][filters][0][value]", str(first)),
        ("searchCriteria[filter_groups][0][filters][0][condition_type]", "gteq"),
        ("searchCriteria[sortOrders][0][field]", "entity_id"),
        ("searchCriteria[sortOrders][0][direction]", "ASC"),
        ("searchCriteria[pageSize]", "7"),
    ]
    query = parse_search_criteria(pairs)
    assert query is not None
    for table, collection in ((state.customers, CUSTOMERS), (state.orders, ORDERS)):
        answer = keyset_search(table, query, collection, state.paging())
        ordered = [table[key] for key in sorted(table)]
        assert answer == run_search(ordered, query, collection, state.paging())


def test_a_plain_dict_given_to_the_state_becomes_a_table():
    """MagentoState(customers={...}) still works: the rows are copied into a Table."""
    state = MagentoState(customers={5: {"id": 5, "email": "a@x.io"}})
    assert isinstance(state.customers, Table) and list(state.customers) == [5]
