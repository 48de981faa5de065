"""Profile settings: numbers are finite and bounded, refused with a message naming the key."""

from __future__ import annotations

import pytest

from daemon.errors import ConfigError
from profiles.freeagent_contact_export.config import load_settings


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        # Used to pass and then raise OverflowError in the date maths on every run.
        ({"full_collect_every_hours": 1e300}, "full_collect_every_hours"),
        ({"full_collect_every_hours": float("inf")}, "full_collect_every_hours"),
        ({"full_collect_every_hours": float("nan")}, "full_collect_every_hours"),
        ({"full_collect_every_hours": 0.0001}, "full_collect_every_hours"),
        ({"collect_overlap_seconds": 1e300}, "collect_overlap_seconds"),
        ({"contact": {"default_payment_terms_in_days": 1e300}}, "default_payment_terms_in_days"),
        ({"store": {"store_ids": [10**12]}}, "store.store_ids"),
        ({"store": {"website_ids": [-1]}}, "store.website_ids"),
    ],
)  # fmt: skip
def test_out_of_range_numbers_are_refused(settings: dict[str, object], key: str) -> None:
    """A number outside its sane range is a ConfigError that names the setting."""
    with pytest.raises(ConfigError, match=key):
        load_settings("demo", settings)


@pytest.mark.parametrize("hours", [1, 24, 8760, None])
def test_sane_full_collect_intervals_are_accepted(hours: float | None) -> None:
    """An hour to a year, or never."""
    settings = load_settings("demo", {"full_collect_every_hours": hours})
    assert settings.full_collect_every_hours == hours
