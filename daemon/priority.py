"""The daemon's side of the priority lane: Magento events in, runs woken or started.

    POST /webhooks/magento ─ on_event ─ profile type queues rows (priority) ─ NOTIFY
    NOTIFY fa_sync_priority (every replica) ─ notified ─┬─ a run of the profile here: wake it
                                                        └─ none anywhere: start a priority run

The NOTIFY is the only path from an accepted event to a run, so an event taken by one
replica wakes the run wherever it is; the claim and fence of the ledger keep replicas from
exporting a row twice. A priority run exports only the lane's rows (no collect, no backlog).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from daemon.context import RunOptions
from daemon.db.queries import QUERIES
from daemon.db.records import Profile, RunTrigger
from daemon.logs import get_logger
from daemon.runner import RunOutcome
from daemon.webhook import MagentoEvent
from profiles import event_queuer_for

if TYPE_CHECKING:
    from daemon.process import Daemon

log = get_logger(__name__)

CHANNEL = "fa_sync_priority"
#: What a run started for the priority lane does.
PRIORITY_RUN = RunOptions(collect=False, priority_only=True)


class PriorityDispatch:
    """Queues Magento events and gets their rows exported by a run, now."""

    def __init__(self, daemon: Daemon, clock: Callable[[], datetime]) -> None:
        self._daemon = daemon
        self._clock = clock
        self._pool = daemon.services.pool
        self._starting: set[int] = set()

    async def on_event(self, event: MagentoEvent) -> int:
        """The webhook's callback: queue the event for each profile of its connection and
        wake them; returns how many profiles got a row in their lane."""
        rows = await self._pool.fetch(QUERIES["profiles_of_connection"], event.connection_id)
        by_type: dict[str, list[Profile]] = defaultdict(list)
        for row in rows:
            profile = Profile.from_row(row)
            by_type[profile.type].append(profile)
        woken: list[int] = []
        for profile_type, profiles in by_type.items():
            queuer = event_queuer_for(profile_type)
            if queuer is not None:
                woken += await queuer(self._pool, self._daemon.services.factory, profiles, event)
        for profile_id in woken:
            await self._pool.execute(QUERIES["priority_notify"], str(profile_id))
        return len(woken)

    def notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """NOTIFY fa_sync_priority <profile id>: wake its run here, or start one."""
        try:
            profile_id = int(payload)
        except ValueError:
            return
        wake = self._daemon.runner.lanes.get(profile_id)
        if wake is not None:
            wake.set()
            return
        self.start(profile_id)

    def start(self, profile_id: int) -> None:
        """Start a priority run of the profile unless one is being started here already."""
        if self._daemon.stopping.is_set() or profile_id in self._starting:
            return
        self._starting.add(profile_id)
        self._daemon.track(
            asyncio.create_task(self._priority_run(profile_id), name=f"priority-{profile_id}")
        )

    async def _priority_run(self, profile_id: int) -> None:
        try:
            if await self._pool.fetchrow(QUERIES["run_active"], profile_id) is not None:
                return  # running on another replica: that one was woken by the same NOTIFY
            await self._daemon.run_fire(profile_id, self._clock(), RunTrigger.MANUAL, PRIORITY_RUN)
        finally:
            self._starting.discard(profile_id)

    async def resume(self) -> None:
        """(Re)started listening: rows that entered a lane meanwhile (a NOTIFY nobody heard,
        a restart) get a run, unless their profile's run is here already."""
        for row in await self._pool.fetch(QUERIES["priority_waiting_profiles"]):
            if row["profile_id"] not in self._daemon.runner.lanes:
                self.start(row["profile_id"])

    async def after_run(self, profile_id: int, outcome: RunOutcome) -> None:
        """A run ended: rows that entered the lane after its last look get a run of their own
        (not after a failed run: the breaker and the schedule decide when to try again)."""
        if outcome.status not in ("complete", "warning") or self._daemon.stopping.is_set():
            return
        if await self._pool.fetchval(QUERIES["entity_priority_waiting"], profile_id):
            log.info("priority_rows_left", profile_id=profile_id)
            self.start(profile_id)
