"""`fa-sync profile show NAME`: one profile as labelled lines at 80 columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from daemon.profile_screen import gather_profile, render_profile
from tests.daemon.test_screens import NOW, rendered, seed

SETTINGS = {
    "contact": {"default_payment_terms_in_days": 30, "charge_sales_tax": "Auto"},
    "store": {"locales": {"2": "fr_FR"}},
    "remote": {"api_key": "do-not-show-me", "label": "[bold]as written[/bold]"},
}

EXPECTED = """\
shop-uk  enabled  freeagent_contact_export
schedule   every 15 minutes (*/15 * * * *, Europe/London)
next       Mon 02 Mar 2026 10:15 GMT (in 7m)
           Mon 02 Mar 2026 10:30 GMT (in 22m)
           Mon 02 Mar 2026 10:45 GMT (in 37m)
           Mon 02 Mar 2026 11:00 GMT (in 52m)
           Mon 02 Mar 2026 11:15 GMT (in 1h)
FreeAgent  acme
Magento    shop
export     upsert, batches of 100
collect    append, pages of 100
retry      up to 3 attempts; history kept
settings   contact.charge_sales_tax = Auto
           contact.default_payment_terms_in_days = 30
           remote.api_key = [redacted]
           remote.label = [bold]as written[/bold]
           store.locales.2 = fr_FR
checked    not checked: no configuration data
queue      3 pending, 58 created, 2 failed
runs       #1 complete 13m ago (1m): 60 seen, 58 new, 2 fail
"""


async def test_profile_show_snapshot_at_80_columns(pool: asyncpg.Pool) -> None:
    """Schedule in words, the next 5 fires in the profile's zone, names (no secrets),
    settings one per line with secret keys redacted, queue by status, last runs."""
    await seed(pool, NOW)
    await pool.execute("UPDATE profile SET settings = $1 WHERE name = 'shop-uk'", SETTINGS)
    detail = await gather_profile(pool, "shop-uk")
    text = rendered(render_profile(detail, NOW, checked="not checked: no configuration data"))
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text == EXPECTED


async def test_profile_show_says_why_a_profile_does_not_fire(pool: asyncpg.Pool) -> None:
    """A disabled profile says so above the fires it would have; a flagged one shows its
    problem instead of fires; a failed run shows its error."""
    await seed(pool, NOW)
    weekdays = rendered(render_profile(await gather_profile(pool, "weekdays"), NOW))
    assert "disabled" in weekdays.splitlines()[0]
    assert "not scheduled while disabled; would fire:" in weekdays
    assert "Mon 02 Mar 2026 09:00 EST (in 3h)" in weekdays
    assert "runs       never run" in weekdays
    await pool.execute(
        "INSERT INTO profile_state (profile_id, config_error) SELECT id, 'bad cron' FROM profile"
        " WHERE name = 'monthly' ON CONFLICT (profile_id) DO UPDATE SET config_error = 'bad cron'"
    )
    monthly = rendered(render_profile(await gather_profile(pool, "monthly"), NOW))
    assert "problem    bad cron" in monthly
    assert "none while the problem above stands" in monthly
    assert "error 3h ago (1m): - FreeAgent answered 503" not in monthly
    assert "error 3h ago (1m) - FreeAgent answered 503" in monthly


async def test_profile_show_command(pool: asyncpg.Pool, cli80) -> None:  # type: ignore[no-untyped-def]
    """The command prints the screen within 80 columns; --json keeps every column, with
    settings redacted and the last runs."""
    await seed(pool, datetime.now(UTC))
    await pool.execute("UPDATE profile SET settings = $1 WHERE name = 'shop-uk'", SETTINGS)
    code, out, err = await cli80("profile", "show", "shop-uk")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "every 15 minutes" in out and "3 pending" in out and "do-not-show-me" not in out
    assert "checked    not checked: no configuration data (fa-sync client config acme)" in out
    code, raw, err = await cli80("profile", "show", "shop-uk", "--json")
    assert code == 0, err
    (doc,) = json.loads(raw)
    assert doc["settings"]["remote"]["api_key"] == "[redacted]"
    assert doc["last_runs"][0]["status"] == "complete"
    assert {"batch_size", "client_name", "magento_name", "ledger"} <= set(doc)
