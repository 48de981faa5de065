"""Fixtures for multi-process tests: clusters of `fa-sync run` daemons on a test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.replicas.harness import FAST, Cluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long chaos runs only when asked for (`-m chaos`), so a plain `pytest` stays quick."""
    if "chaos" in (config.option.markexpr or ""):
        return
    long_runs = [item for item in items if item.get_closest_marker("chaos")]
    if long_runs:
        config.hook.pytest_deselected(items=long_runs)
        items[:] = [item for item in items if item not in long_runs]


@pytest.fixture
async def cluster_factory(
    database_dsn: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Cluster]]:
    """Build clusters on this test's database (FAST settings, overridable); whatever still
    runs at teardown is killed."""
    clusters: list[Cluster] = []

    def make(dsn: str | None = None, **settings: Any) -> Cluster:
        cluster = Cluster(
            dsn=dsn or database_dsn,
            workdir=tmp_path / f"cluster{len(clusters)}",
            settings={**FAST, **settings},
        )
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        await cluster.close()
