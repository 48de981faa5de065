"""Depth checks on parsed answers: the bracket count and the level walk decide as the
plain depth-first walk did."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from daemon.clients.bodies import MAX_JSON_DEPTH, nested_deeper_than, parse_body


def _reference_nested_deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab', max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=60,
)


@given(_json, st.integers(0, 12))
def test_the_level_walk_agrees_with_the_depth_first_walk(value: Any, limit: int) -> None:
    """nested_deeper_than answers as the depth-first walk for any value and limit."""
    assert nested_deeper_than(value, limit) == _reference_nested_deeper_than(value, limit)


def test_depth_is_counted_from_one_at_the_top() -> None:
    """A value exactly limit levels deep passes; one level more does not."""
    assert not nested_deeper_than(_nested(5), 5)
    assert nested_deeper_than(_nested(6), 5)
    assert not nested_deeper_than("[[[[[[", 0)
    assert nested_deeper_than([], 0)


def test_brackets_inside_strings_do_not_reject_a_shallow_answer() -> None:
    """A shallow answer whose strings hold many brackets is still parsed."""
    value = {"note": "[{" * MAX_JSON_DEPTH, "items": [{"street": ["1 [High] St"]}]}
    assert parse_body("application/json", json.dumps(value).encode()) == value


def test_an_answer_just_past_the_limit_is_caught() -> None:
    """MAX_JSON_DEPTH + 1 levels come back as text, MAX_JSON_DEPTH levels as JSON."""
    deep = json.dumps(_nested(MAX_JSON_DEPTH + 1))
    assert parse_body("application/json", deep.encode()) == deep
    at_limit = _nested(MAX_JSON_DEPTH)
    assert parse_body("application/json", json.dumps(at_limit).encode()) == at_limit


def test_a_deep_answer_with_few_brackets_per_level_is_caught() -> None:
    """Depth past the limit inside a wide answer is found by the walk, not missed."""
    wide = {"items": [{"id": n, "tags": ["a", "b"]} for n in range(100)]}
    wide["items"].append(_nested(MAX_JSON_DEPTH))
    text = json.dumps(wide)
    assert parse_body("application/json", text.encode()) == text
