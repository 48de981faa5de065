"""Hand-moved clocks shared by the tests: expiry and rate windows without sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class FakeClock:
    """A monotonic clock tests move by hand (the FreeAgent simulator's `clock`)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeNow:
    """A wall clock (aware UTC datetimes) tests move by hand: the Runner's and the FreeAgent
    simulator's `wall_clock`, so settle windows pass without waiting."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward (FreeAgent's created_at and our intents follow)."""
        self.now += timedelta(seconds=seconds)
