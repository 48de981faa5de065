"""Access tokens expiring under three replicas: one refresh per expiry, never a reused token.

One scenario per module: FreeAgent issues access tokens that live a few seconds and rotates
the refresh token on every refresh, refusing a used one as a rotating server does. Three
daemons export one profile every second, with new customers arriving, until several tokens
have run out. Each test states one rule about the refreshes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.db.pool import create_pool
from simulators.magento import MagentoState
from simulators.stack import register, simulators
from tests.replicas.checks import ExportCheck, check_export
from tests.replicas.harness import (
    FAST,
    Cluster,
    Event,
    event_is,
    fast_freeagent,
    play_once,
)
from tests.secretkeys import sealing_box

#: Seconds an access token lives; fa-sync renews one after half of that.
TTL = 4.0
#: Refreshes to live through before stopping.
REFRESHES = 6
REPLICAS = ("t0", "t1", "t2")


@dataclass(frozen=True)
class Refreshed:
    refresh_count: int  #: successful refresh grants FreeAgent made
    reused_refresh_tokens: int  #: refreshes FreeAgent refused as already used
    refresh_times: list[float]  #: simulator clock of each successful grant
    events: list[Event]
    runs: list[dict[str, Any]]
    final: ExportCheck


async def _play(dsn: str, workdir: Path) -> Refreshed:
    pool = await create_pool(dsn, max_size=4)
    freeagent = fast_freeagent(latency=0.05, access_token_ttl=TTL)
    magento = MagentoState.seeded(customers=20, guest_orders=0)
    cluster = Cluster(dsn=dsn, workdir=workdir, settings=FAST)
    try:
        async with simulators(freeagent=freeagent, magento=magento) as s:
            stack = await register(pool, s, secrets=sealing_box(), schedule="* * * * * *")
            for name in REPLICAS:
                await cluster.start(name)
            since, added = 0, 0
            while len(cluster.select(event_is("token_refreshed"))) < REFRESHES:
                finished = await cluster.wait_for(event_is("run_finished"), since=since, within=60)
                since, added = finished["seq"] + 1, added + 1
                magento.add_customer(
                    email=f"token.{added}@example.com",
                    firstname="Token",
                    lastname=f"Customer{added}",
                )
            await cluster.stop_all()
            runs = [dict(r) for r in await pool.fetch("SELECT * FROM profile_run")]
            grants = [
                r.time
                for r in freeagent.requests
                if r.path == "/v2/token_endpoint" and r.status == 200
            ]
            return Refreshed(
                freeagent.refresh_count,
                freeagent.reused_refresh_token_attempts,
                grants,
                list(cluster.events),
                runs,
                await check_export(pool, stack.freeagent),
            )
    finally:
        await cluster.close()
        await pool.close()


@pytest.fixture(scope="module")
def refreshed(
    pg_server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Refreshed:
    """The scenario, played once for the module's tests."""
    return play_once(pg_server_dsn, template_db, tmp_path_factory.mktemp("tokens"), _play)


def test_a_used_refresh_token_is_never_sent_again(refreshed: Refreshed) -> None:
    """Whichever replica refreshes, it presents the newest refresh token."""
    assert refreshed.refresh_count >= REFRESHES
    assert refreshed.reused_refresh_tokens == 0


def test_each_expiry_is_refreshed_once(refreshed: Refreshed) -> None:
    """Replicas adopt the token another one obtained: refreshes are a token's lifetime apart,
    never two for one expiry, and every rotation FreeAgent made was stored."""
    gaps = [b - a for a, b in itertools.pairwise(refreshed.refresh_times)]
    assert min(gaps) > TTL / 4, gaps  # a second refresh of the same expiry would come at once
    logged = len([e for e in refreshed.events if e.get("event") == "token_refreshed"])
    assert logged == refreshed.refresh_count


#: Words of an authorisation failure in a run's error summary.
AUTH_WORDS = ("token", "authoris", "401", "access denied")


def test_no_run_fails_for_want_of_a_token(refreshed: Refreshed) -> None:
    """Expiring tokens never surface as errors: no failed run, no record refused with 401."""
    errors = [r["error_summary"] or "" for r in refreshed.runs if r["status"] == "error"]
    assert [e for e in errors if any(w in e.lower() for w in AUTH_WORDS)] == []
    assert [e for e in refreshed.events if e.get("event") in ("run_failed", "run_crashed")] == []
    assert refreshed.final.problems == []
    assert refreshed.final.duplicates == {}
