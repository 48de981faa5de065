"""FreeAgent's real limits, 120 a minute and 3,600 an hour, with both windows scaled down
together by SCALE so that ten minute-windows pass in 30 s. The simulator enforces them; fa-sync
is told the same windows."""

from __future__ import annotations

from typing import Any

from bench.stack import UNLIMITED_IP

SCALE = 20
MINUTE, HOUR = 60 / SCALE, 3600 / SCALE
PER_MINUTE = 120


def simulator() -> dict[str, Any]:
    return {"minute_window": MINUTE, "hour_window": HOUR, "per_ip_per_minute": UNLIMITED_IP}


def fa_sync() -> dict[str, Any]:
    return {
        "rate_minute_window": MINUTE,
        "rate_hour_window": HOUR,
        "rate_latency_allowance": 5.0 / SCALE,
    }
