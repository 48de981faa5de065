"""`python -m bench [--quick] [--only NAME] [--json]`: every measure of issue 10, one table.

Each measure is a module bench/<name>.py with `async def measure(quick) -> list[Row]`. Times
are never asserted: the exit code is 1 only when a measure crashed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from pathlib import Path

from bench.stack import drop_scratch_databases
from bench.table import Row, as_json, render
from daemon.loop import run as run_loop

# ruff: noqa: T201  (a benchmark prints its figures)

#: In the order of the issue; freshness is measured only where bench/freshness.py exists.
MEASURES = (
    "ratio",
    "seed",
    "relink",
    "utilisation",
    "freshness",
    "memory",
    "shops",
    "reload",
)
HERE = Path(__file__).resolve().parent


async def run_one(name: str, quick: bool) -> tuple[list[Row], bool]:
    """The measure's rows, and whether it crashed."""
    if not (HERE / f"{name}.py").exists():
        reason = "event endpoint missing" if name == "freshness" else "no module"
        return [Row(f"{name}: not measured ({reason})", "-")], False
    module = importlib.import_module(f"bench.{name}")
    started = time.perf_counter()
    try:
        rows = await module.measure(quick)
    except Exception as exc:  # one broken measure must not hide the others
        traceback.print_exc(file=sys.stderr)
        return [Row(f"{name}: crashed", "-", raw=f"{type(exc).__name__}: {exc}"[:200])], True
    # Progress on stderr, so a long run that is cut short still shows what it measured.
    print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for row in rows:
        print(f"  {row.measure}: {row.figure} ({row.raw})", file=sys.stderr)
    return rows, False


async def run(names: list[str], quick: bool) -> tuple[list[Row], bool]:
    rows: list[Row] = []
    crashed = False
    try:
        for name in names:
            measured, broke = await run_one(name, quick)
            rows += measured
            crashed |= broke
    finally:
        await drop_scratch_databases()
    return rows, crashed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    parser.add_argument("--only", action="append", choices=MEASURES, help="this measure only")
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    rows, crashed = run_loop(run(args.only or list(MEASURES), args.quick))
    print(as_json(rows) if args.json else render(rows))
    if not args.json:
        mode = "quick" if args.quick else "full"
        print(f"\n{mode} run, {time.perf_counter() - started:.0f} s wall")
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
