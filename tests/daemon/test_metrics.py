"""The metrics endpoint listens on loopback unless told otherwise."""

from __future__ import annotations

import urllib.request

from daemon.metrics import Metrics
from daemon.settings import Settings


def test_metrics_address_defaults_to_loopback() -> None:
    """FA_SYNC_METRICS_ADDRESS is 127.0.0.1 unless set."""
    assert Settings(_env_file=None).metrics_address == "127.0.0.1"  # type: ignore[call-arg]


def test_metrics_server_binds_loopback_by_default() -> None:
    """serve() without an address listens on 127.0.0.1 only, and answers /metrics there."""
    server = Metrics().serve(0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert b"fa_sync_runs" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
