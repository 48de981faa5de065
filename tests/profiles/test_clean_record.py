"""clean_record: the plain-record shortcut gives exactly what the noting walk gives.

``_reference_clean_record`` below is clean_record as it was before the shortcut: every value
walked with its dotted path. The shortcut is only allowed to be faster, so the two must agree
on the cleaned value (types included) and on every note, for any JSON-like value.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.freeagent_contact_export import clean
from profiles.freeagent_contact_export.clean import MAX_NOTES, Note, clean_record, clean_text
from profiles.freeagent_contact_export.models import MAX_STORED_TEXT
from tests.strategies import guest_orders, hostile_customers, magento_customers


def _reference_clean_record(value: Any) -> tuple[Any, list[Note]]:
    notes: list[Note] = []
    cleaned = _reference_walk(value, "", notes)
    if len(notes) > MAX_NOTES:
        notes = [*notes[: MAX_NOTES - 1], {"field": "*", "change": f"{len(notes)} changes"}]
    return cleaned, notes


def _reference_walk(value: Any, where: str, notes: list[Note]) -> Any:
    if isinstance(value, str):
        text, changes = clean_text(value)
        notes.extend({"field": where or "(value)", "change": c} for c in changes)
        return text
    if isinstance(value, dict):
        return {
            _reference_key(key, where, notes): _reference_walk(
                item, _reference_at(where, key), notes
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            _reference_walk(item, _reference_at(where, index), notes)
            for index, item in enumerate(value)
        ]
    if isinstance(value, float) and not math.isfinite(value):
        notes.append({"field": where or "(value)", "change": f"{value} replaced by null"})
        return None
    return value


def _reference_key(key: Any, where: str, notes: list[Note]) -> str:
    text, changes = clean_text(key if isinstance(key, str) else str(key))
    if changes or not isinstance(key, str):
        change = "key: " + (", ".join(changes) or "made text")
        notes.append({"field": _reference_at(where, text), "change": change})
    return text


def _reference_at(where: str, key: Any) -> str:
    text = clean_text(str(key))[0][:80]
    return f"{where}.{text}" if where else text


class _Text(str):
    """A str subclass: JSON never makes one, but clean_record must not care."""


_hostile_char = st.one_of(
    st.characters(),
    st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]),
    st.sampled_from("\x00\t\n\r\x7f\x85\x9f\ud800\udfff"),
)
_long_text = st.builds(
    lambda unit, extra: unit * (MAX_STORED_TEXT // len(unit) + extra),
    st.text(_hostile_char, min_size=1, max_size=3),
    st.integers(-2, 2),
)
_texts = st.one_of(
    st.text(max_size=20),
    st.text(_hostile_char, max_size=12),
    _long_text,
    st.text(max_size=8).map(_Text),
)
_leaves = st.one_of(
    _texts,
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),  # NaN and infinities included
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
)
_keys = st.one_of(
    _texts,
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.sampled_from([1.5, math.nan, math.inf]),
    st.tuples(st.integers(0, 2)),
)


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_keys, children, max_size=5),
    )


_values = st.recursive(_leaves, _nested, max_leaves=40)

#: Storable text only, so that whole records take the shortcut and its copy is compared too.
_plain_texts = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=20)
_plain_values = st.recursive(
    st.one_of(_plain_texts, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_plain_texts, children, max_size=5)
    ),
    max_leaves=40,
)


def _same(value: Any) -> None:
    got, notes = clean_record(value)
    want, want_notes = _reference_clean_record(value)
    assert (got, notes) == (want, want_notes)
    assert repr(got) == repr(want)  # == alone takes True for 1 and (1,) apart only by luck


@settings(max_examples=1000)
@given(st.one_of(_values, _plain_values))
def test_any_value_is_cleaned_as_the_noting_walk_cleans_it(value: Any) -> None:
    """Cleaned value and notes equal the path-noting walk's, for any nested value."""
    _same(value)


@settings(max_examples=300)
@given(st.one_of(magento_customers(), guest_orders(), hostile_customers()))
def test_magento_records_are_cleaned_as_the_noting_walk_cleans_them(record: Any) -> None:
    """Shaped Magento records, plain or hostile, clean as the path-noting walk cleans them."""
    _same(record)


def test_a_plain_record_is_a_fresh_copy() -> None:
    """The shortcut copies like the walk: changing the result leaves the input alone."""
    record = {"addresses": [{"street": ["1 High St"]}], "email": "a@b.co"}
    cleaned, notes = clean_record(record)
    cleaned["addresses"][0]["street"].append("x")
    assert notes == []
    assert record == {"addresses": [{"street": ["1 High St"]}], "email": "a@b.co"}


def test_notes_past_the_limit_are_summed_up() -> None:
    """A record with more changes than MAX_NOTES keeps MAX_NOTES notes, the last a count."""
    record = {f"k{i}": "\x00" for i in range(MAX_NOTES + 5)}
    cleaned, notes = clean_record(record)
    assert set(cleaned.values()) == {""}
    assert len(notes) == MAX_NOTES
    assert notes[-1] == {"field": "*", "change": f"{MAX_NOTES + 5} changes"}
    assert notes[0] == {"field": "k0", "change": "removed 1 NUL"}


def test_the_shortcut_leaves_unusual_values_to_the_walk() -> None:
    """A tuple, a non-str key or NaN are not plain: the noting walk decides them."""
    for value in ((1,), {1: "a"}, [math.nan], {"a": _Text("x")}):
        try:
            clean._plain_copy(value)
        except clean._NeedsWalk:
            continue
        raise AssertionError(f"{value!r} taken as plain")
