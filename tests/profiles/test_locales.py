"""Locales: each store view's Magento locale becomes FreeAgent's own code, read once per run."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from profiles.freeagent_contact_export.locales import store_locale_map
from simulators.stack import Stack

#: Store views of the simulated `world` website: Magento locale -> what FreeAgent must get.
WORLD = {
    4: "cz",  # cs_CZ
    5: "dk",  # da_DK
    6: "se",  # sv_SE
    7: "nk",  # nb_NO
    8: "rs",  # sr_RS
    9: "en-US",  # en_US
    10: "fr-BE",  # fr_BE
    11: "nl-BE",  # nl_BE
}


async def _settings(pool: asyncpg.Pool, settings: dict[str, Any]) -> None:
    await pool.execute("UPDATE profile SET settings = $1", settings)


def _add(stack: Stack, store_id: int) -> str:
    email = f"store{store_id}@example.com"
    stack.magento.add_customer(
        email=email, firstname="Store", lastname=f"View{store_id}", website_id=3, store_id=store_id
    )
    return email


async def test_store_locales_become_freeagents_codes(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Magento's storeConfigs locale decides each contact's locale, in FreeAgent's spelling;
    the explicit mapping wins; a locale FreeAgent lacks gets the default, noted on the row."""
    emails = {store: _add(stack, store) for store in [*WORLD, 12]}
    await _settings(pool, {"contact": {"locale": "en"}, "store": {"locales": {"11": "nl"}}})
    outcome = await run_profile(stack.profile_id)
    assert outcome.counts.failed == 0
    by_email = {c.get("email"): c for c in stack.freeagent.contacts_list()}
    expected = {**WORLD, 11: "nl", 12: "en"}
    assert {s: by_email[e].get("locale") for s, e in emails.items()} == expected
    fallback = await pool.fetchrow(
        "SELECT metadata FROM contact_entity WHERE email = $1", emails[12]
    )
    (note,) = [n for n in fallback["metadata"]["adjusted"] if n["field"] == "locale"]
    assert "pt_PT" in note["change"] and "default en" in note["change"]
    configs = [r for r in stack.magento.requests if r.path.endswith("/store/storeConfigs")]
    assert len(configs) == 1  # once per run, not per record


async def test_unreadable_store_configs_warn_and_export_with_the_default(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """Magento refusing storeConfigs is a run warning, not a failed run."""
    email = _add(stack, 4)
    stack.magento.denied_resources.add("Magento_Backend::stores")
    await _settings(pool, {"contact": {"locale": "en"}})
    outcome = await run_profile(stack.profile_id)
    assert outcome.error is None and outcome.counts.failed == 0
    assert any("store locales not read" in m["message"] for m in outcome.counts.messages)
    by_email = {c.get("email"): c for c in stack.freeagent.contacts_list()}
    assert by_email[email]["locale"] == "en"


async def test_magento_locales_can_be_turned_off(
    pool: asyncpg.Pool, stack: Stack, run_profile
) -> None:
    """store.locales_from_magento false: the mapping and the default only; no storeConfigs."""
    email = _add(stack, 4)
    await _settings(pool, {"contact": {"locale": "en"}, "store": {"locales_from_magento": False}})
    await run_profile(stack.profile_id)
    by_email = {c.get("email"): c for c in stack.freeagent.contacts_list()}
    assert by_email[email]["locale"] == "en"
    assert not [r for r in stack.magento.requests if r.path.endswith("/store/storeConfigs")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([{"id": 2, "locale": "fr_FR"}], {2: "fr_FR"}),
        ([{"id": "2", "locale": "fr_FR"}], {}),  # an id that is not a number is ignored
        ([{"id": 3, "locale": ""}, {"id": 4}], {}),  # no locale: nothing to map
        ({"message": "not a list"}, {}),  # an error body where a list belongs
    ],
)
def test_store_locale_map_ignores_odd_entries(body: Any, expected: dict[int, str]) -> None:
    """Only well-formed storeConfigs entries are used."""
    assert store_locale_map(body) == expected
