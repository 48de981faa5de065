"""Each store view's locale, read from Magento (GET /V1/store/storeConfigs, which the client
keeps for FA_SYNC_CONFIG_CACHE_SECONDS across runs).

The payload maps it to FreeAgent's own codes (countries.freeagent_locale); the profile's
`store.locales` mapping wins over it, and the profile's default locale covers the rest.
"""

from __future__ import annotations

from typing import Any

from daemon.context import RunContext
from daemon.errors import ApiError
from daemon.logs import get_logger

log = get_logger(__name__)


def store_locale_map(configs: Any) -> dict[int, str]:
    """store_id -> Magento locale ("fr_FR") from a storeConfigs body; odd entries ignored."""
    if not isinstance(configs, list):
        return {}
    return {
        item["id"]: item["locale"]
        for item in configs
        if isinstance(item, dict)
        and isinstance(item.get("id"), int)
        and not isinstance(item.get("id"), bool)
        and isinstance(item.get("locale"), str)
        and item["locale"].strip()
    }


async def read_store_locales(
    ctx: RunContext, default: str | None, magento: Any = None
) -> dict[int, str]:
    """The store views' locales for this run; {} (and a run warning) when Magento will not
    say: an integration without the Stores permission is refused storeConfigs but may still
    read customers, so this never stops the run."""
    if ctx.profile.connection_id is None:
        return {}
    try:
        magento = magento or await ctx.resources.magento(ctx.profile.connection_id)
        locales = store_locale_map(await magento.store_configs())
    except ApiError as exc:
        fallback = f"the default locale {default}" if default else "FreeAgent's default locale"
        message = (
            f"Magento store locales not read ({exc}); contacts get the store.locales mapping "
            f"or {fallback}"
        )
        log.warning("store_locales_unread", error=str(exc))
        ctx.counts.note("warning", message)
        return {}
    log.info("store_locales_read", stores=len(locales))
    return locales
