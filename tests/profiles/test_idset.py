"""Specification of IdSet: a set of ints, kept in 8 bytes each."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from profiles.freeagent_contact_export.idset import IdSet

ids = st.integers(-(2**63), 2**63 - 1)


@given(added=st.lists(st.lists(ids, max_size=20), max_size=8), probes=st.lists(ids, max_size=20))
def test_it_holds_exactly_what_a_set_would(added, probes):
    """Membership and size match a Python set's after any adds, in any order, repeats included."""
    compact, reference = IdSet(), set()
    for batch in added:
        compact.update(batch)
        reference.update(batch)
        for item in [*batch, *probes]:
            assert (item in compact) == (item in reference)
        assert len(compact) == len(reference)


def test_it_holds_only_ints():
    """Something that is not an int is never a member (asking does not raise)."""
    compact = IdSet()
    compact.add(3)
    assert 3 in compact and "3" not in compact and None not in compact
