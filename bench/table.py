"""One row per figure, and the one table they make."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Row:
    """A figure taken in one run: a ratio or a count, its target, the raw numbers behind it."""

    measure: str  #: e.g. "ratio: fa-sync / bare client"
    figure: str  #: the ratio or count, formatted
    target: str = ""  #: e.g. ">= 0.5x"; empty when there is none
    raw: str = ""  #: the numbers the figure comes from
    ok: bool | None = None  #: target met; None when there is no target or nothing measured


def mark(ok: bool | None) -> str:
    return {True: "ok", False: "MISS", None: "-"}[ok]


def render(rows: list[Row]) -> str:
    """A plain-text table: measure, figure, target, met, raw numbers."""
    header = ("measure", "figure", "target", "met", "raw")
    cells = [header] + [(r.measure, r.figure, r.target, mark(r.ok), r.raw) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 3)
    return "\n".join(lines)


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]
