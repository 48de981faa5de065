"""`python -m bench --quick` as CI's smoke test: the cheapest measures end to end.

ratio covers the simulator process, the bare client, fa-sync's in-process export and its
query count; relink two exports around a ledger started afresh; reload a `fa-sync run`
subprocess and its log events. Times are never asserted (on shared machines they are noise),
only that each measure produced its rows; relink's figure is a count of writes, and is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_quick_table_runs(pg_server_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FA_SYNC_")}
    env["FA_SYNC_TEST_DSN"] = pg_server_dsn
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "ratio", "--only", "relink",
         "--only", "reload", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=85, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    names = [row["measure"] for row in rows]
    assert any(n.startswith("bare-client ratio") for n in names), names
    assert any(n.startswith("PostgreSQL round trips") for n in names), names
    assert any(n.startswith("reload latency") for n in names), names
    relink = next(row for row in rows if row["measure"].startswith("relinking"))
    assert relink["ok"] is True, relink  # only the changed customers were written
    for row in rows:
        assert row["figure"] not in ("", "-"), row
        # a row with a target says whether it was met; others only inform (CPU per record)
        assert isinstance(row["ok"], bool) or not row["target"], row
