"""Profile types: each sub-package turns a profile row into work.

The daemon looks a type up here by the profile's `type` column and knows nothing else of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from daemon.context import Resources, RunContext
from daemon.db.records import Profile
from daemon.errors import ConfigError
from daemon.scheduler import parse_cron

if TYPE_CHECKING:
    from daemon.webhook import MagentoEvent

ProfileExecutor = Callable[[RunContext], Awaitable[None]]
#: Queues a Magento event for profiles of one type; returns the ids of profiles to wake.
EventQueuer = Callable[
    [asyncpg.Pool, Resources, list[Profile], "MagentoEvent"], Awaitable[list[int]]
]


def executor_for(profile_type: str) -> ProfileExecutor | None:
    """The executor of a profile type, or None for a type this version does not know."""
    if profile_type == "freeagent_contact_export":
        from profiles.freeagent_contact_export.job import execute

        return execute
    return None


def event_queuer_for(profile_type: str) -> EventQueuer | None:
    """How a profile type takes Magento events (POST /webhooks/magento), or None."""
    if profile_type == "freeagent_contact_export":
        from profiles.freeagent_contact_export.events import queue_event

        return queue_event
    return None


def validate_profile(profile: Profile) -> str | None:
    """Why this row cannot run (bad or never-firing schedule, unknown type, bad settings),
    or None."""
    try:
        parse_cron(profile.schedule, profile.timezone)
    except ConfigError as exc:
        return f"profile {profile.name}: {exc}"
    if profile.type == "freeagent_contact_export":
        from profiles.freeagent_contact_export.config import load_settings

        try:
            load_settings(profile.name, profile.settings)
        except ConfigError as exc:
            return str(exc)
        return None
    return f"profile {profile.name}: unknown type {profile.type!r}"


def profile_warnings(profile: Profile, client_name: str, config: Mapping[str, Any]) -> list[str]:
    """What the profile's settings ask that its FreeAgent company (the configuration data
    `fa-sync client config` cached) would not go along with; [] when nothing is cached or
    the settings are invalid (validate_profile reports those)."""
    if profile.type != "freeagent_contact_export" or not config:
        return []
    from profiles.freeagent_contact_export.config import load_settings
    from profiles.freeagent_contact_export.config_checks import settings_warnings

    try:
        settings = load_settings(profile.name, profile.settings)
    except ConfigError:
        return []
    found = settings_warnings(settings, config, client_name)
    return [f"profile {profile.name}: {warning}" for warning in found]
