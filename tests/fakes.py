"""Hand-moved clocks shared by the tests: expiry and rate windows without sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """A monotonic clock tests move by hand (the FreeAgent simulator's `clock`)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now
