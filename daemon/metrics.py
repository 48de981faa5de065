"""Prometheus metrics, served on FA_SYNC_METRICS_ADDRESS:FA_SYNC_METRICS_PORT by `fa-sync run`
(port 0 = off). The address defaults to loopback: run names and counts are not for everyone."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from daemon.context import RunCounts


class Metrics:
    """One registry per process (not the global default), so tests can build their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "fa_sync_runs",
            "Finished runs by profile and status",
            ["profile", "status"],
            registry=self.registry,
        )
        self.records = Counter(
            "fa_sync_records",
            "Ledger outcomes by profile and outcome",
            ["profile", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "fa_sync_run_seconds", "Run duration by profile", ["profile"], registry=self.registry
        )

    def observe_run(self, profile: str, status: str, counts: RunCounts, seconds: float) -> None:
        """Count one finished run and its records."""
        self.runs.labels(profile, status).inc()
        for outcome, n in counts.as_dict().items():
            if n:
                self.records.labels(profile, outcome).inc(n)
        self.duration.labels(profile).observe(seconds)

    def serve(self, port: int, address: str = "127.0.0.1") -> WSGIServer:
        """Expose /metrics on address:port (a daemon thread of prometheus_client)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
