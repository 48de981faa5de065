"""An embedded PostgreSQL (the `pgserver` package) for machines without a database service.

Used when DATABASE_URL is unset: the daemon, the demo and the tests need no installed server.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a server keeping its files in data_dir; return (dsn, server handle).

    pgserver shares one postmaster per data folder between processes and stops it when the
    last user exits, so several fa-sync processes may call this with the same folder.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); not our concern.
        warnings.simplefilter("ignore")
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        get_server = pgserver.get_server  # type: ignore[attr-defined]
        server = get_server(str(data_dir.resolve()), cleanup_mode="stop")
    return server.get_uri(), server
