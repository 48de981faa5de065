"""Operator screens: `status`, `history` and `profile list` at 80 columns."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from rich.console import Console

from daemon.describe import ago, describe_cron
from daemon.screens import gather_egress, gather_status, render_status
from tests.fakes import FakeNow

NOW = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)  # a Monday
USER = "https://api.freeagent.com/v2/users/1"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def seed(pool: asyncpg.Pool, now: datetime) -> None:
    """Three profiles: one healthy, one whose client was revoked, one failing."""
    await pool.execute(
        """
        INSERT INTO freeagent_client (name, client_id, client_secret, access_token,
            access_token_expires_at, refresh_token, refresh_token_expires_at, user_url)
        VALUES ('acme', 'id1', 's1', 'a1', $1, 'r1', $2, $3),
               ('revoked', 'id2', 's2', 'a2', $4, 'r2', NULL, NULL);
        INSERT INTO magento_connection (name, base_url, access_token)
        VALUES ('shop', 'https://shop.example.com', 'm1');
        """.replace("$1", f"'{now + minutes(42)}'")
        .replace("$2", f"'{now + timedelta(days=20)}'")
        .replace("$3", f"'{USER}'")
        .replace("$4", f"'{now - minutes(5)}'")
    )
    await pool.execute(
        """
        INSERT INTO profile (name, type, enabled, schedule, timezone, client_id, connection_id)
        SELECT v.name, 'freeagent_contact_export', v.enabled, v.schedule, v.tz, c.id, m.id
          FROM (VALUES ('shop-uk', true, '*/15 * * * *', 'Europe/London', 'acme'),
                       ('weekdays', false, '0 9 * * 1-5', 'America/New_York', 'revoked'),
                       ('monthly', true, '0 9 1 * 1', 'UTC', 'acme'))
               AS v(name, enabled, schedule, tz, client)
          JOIN freeagent_client c ON c.name = v.client, magento_connection m;
        INSERT INTO freeagent_client_reauth (client_id, token_version, reason)
        SELECT id, token_version, 'refresh token refused' FROM freeagent_client
         WHERE name = 'revoked';
        """
    )
    runs = [
        ("shop-uk", "complete", 13, 12, 60, 58, 2, None),
        (
            "monthly",
            "error",
            181,
            180,
            0,
            0,
            0,
            "FreeAgent answered 503 Service Unavailable to every retry; "
            "the breaker holds the next fires",
        ),
    ]
    for name, status, start, end, seen, new, failed, error in runs:
        await pool.execute(
            """INSERT INTO profile_run (profile_id, trigger, scheduled_for, started_at,
                   finished_at, status, collected, created, failed, error_summary)
               SELECT id, 'schedule', $2, $2, $3, $4, $5, $6, $7, $8
                 FROM profile WHERE name = $1""",
            name,
            now - minutes(start),
            now - minutes(end),
            status,
            seen,
            new,
            failed,
            error,
        )
    await pool.execute(
        """INSERT INTO contact_entity (profile_id, source_key, status)
           SELECT p.id, 'customer:' || g, (CASE WHEN g <= 58 THEN 'created'
                  WHEN g <= 60 THEN 'failed' ELSE 'pending' END)::entity_status
             FROM profile p, generate_series(1, 63) g WHERE p.name = 'shop-uk'"""
    )
    await pool.execute(
        """INSERT INTO profile_breaker (profile_id, failures, open_until, reason)
           SELECT id, 2, $1, 'outage' FROM profile WHERE name = 'monthly'""",
        now + minutes(30),
    )
    await pool.executemany(
        "INSERT INTO rate_event (budget_key, at) VALUES ($1, $2)",
        [
            # The minute's 12 reach 25 s ahead, so a CLI that starts late on a loaded
            # machine still counts them all in its own last minute.
            (f"user:{USER}", now - timedelta(seconds=s))
            for s in [*range(-25, 35, 5), *range(90, 3000, 100)]
        ],
    )


def rendered(renderable: object) -> str:
    """Plain text as an 80-column terminal shows it (trailing blanks dropped)."""
    console = Console(width=80, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


EXPECTED_STATUS = """\
fa-sync status  2026-03-02 10:07 UTC  3 profiles

monthly  enabled  FreeAgent acme, Magento shop
schedule  09:00 on day 1 or on Mon (UTC)
next      Mon 09 Mar 09:00 UTC (in 6d); held back for 30m after errors
last run  error 3h ago - FreeAgent answered 503 Service Unavailable to every
          retry; the breaker holds the next fires
queue     empty
rate      12/120 in the last minute, 42/3600 in the last hour
token     access token expires in 42m, refresh token in 20d

shop-uk  enabled  FreeAgent acme, Magento shop
schedule  every 15 minutes (Europe/London)
next      Mon 02 Mar 10:15 GMT (in 7m)
last run  complete 12m ago: 60 seen, 58 new, 2 fail
queue     3 pending, 58 created, 2 failed
rate      12/120 in the last minute, 42/3600 in the last hour
token     access token expires in 42m, refresh token in 20d

weekdays  disabled  FreeAgent revoked, Magento shop
schedule  09:00 on Mon-Fri (America/New_York)
next      not scheduled (disabled)
last run  never run
queue     empty
rate      0/120 in the last minute, 0/3600 in the last hour
token     needs re-authorisation (fa-sync client authorize)
"""


async def test_status_screen_snapshot_at_80_columns(pool: asyncpg.Pool) -> None:
    """`status` shows every profile's schedule, next fire, last run, queue, rate and token."""
    clock = FakeNow(NOW)
    await seed(pool, clock())
    text = rendered(render_status(await gather_status(pool, clock()), clock()))
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text == EXPECTED_STATUS


async def test_status_command_fits_80_columns(pool: asyncpg.Pool, cli80) -> None:
    """`fa-sync status` on an 80-column terminal: every profile, no line over 80."""
    await seed(pool, datetime.now(UTC))
    code, out, err = await cli80("status")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    for needed in ["shop-uk", "every 15 minutes", "needs re-authorisation", "3 pending"]:
        assert needed in out
    code, raw, err = await cli80("status", "--json")
    assert code == 0, err
    shop = next(p for p in json.loads(raw)["profiles"] if p["name"] == "shop-uk")
    assert shop["queue"] == {"created": 58, "failed": 2, "pending": 3}
    assert shop["last_run"]["status"] == "complete"
    assert shop["client"]["used_minute"] == 12


async def test_history_fits_80_columns_with_key_fields(pool: asyncpg.Pool, cli80) -> None:
    """`history` at 80 columns: run, profile, relative time, status, compact counts."""
    await seed(pool, datetime.now(UTC))
    code, out, err = await cli80("history")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    for needed in ["shop-uk", "13m ago", "complete", "58 new", "2 fail", "monthly", "error"]:
        assert needed in out
    code, wide, err = await cli80("history", "--json")
    assert code == 0, err
    assert {"trigger", "scheduled_for", "retrying", "error_summary"} <= set(json.loads(wide)[0])


async def test_profile_list_fits_80_columns_with_key_fields(pool: asyncpg.Pool, cli80) -> None:
    """`profile list` at 80 columns: name, on/off, schedule in words, client and shop."""
    await seed(pool, datetime.now(UTC))
    code, out, err = await cli80("profile", "list")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    for needed in ["shop-uk", "weekdays", "09:00 on Mon-Fri", "acme / shop", "yes", "no"]:
        assert needed in out
    code, raw, err = await cli80("profile", "list", "--json")
    assert code == 0, err
    assert {"batch_size", "collect_mode", "client_name"} <= set(json.loads(raw)[0])


async def test_profile_show_lists_five_next_fires(pool: asyncpg.Pool, cli80) -> None:
    """`profile show` gives the next 5 fire times in the profile's zone."""
    await seed(pool, datetime.now(UTC))
    code, raw, err = await cli80("profile", "show", "weekdays", "--json")
    assert code == 0, err
    fires = json.loads(raw)[0]["next_fires"]
    assert len(fires) == 5
    assert all(f[11:16] == "09:00" for f in fires)


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("*/15 * * * *", "every 15 minutes"),
        ("0 9 * * 1-5", "09:00 on Mon-Fri"),
        ("0 9 1 * 1", "09:00 on day 1 or on Mon"),  # crontab ORs day-of-month and weekday
        ("* * * * *", "every minute"),
        ("30 * * * *", "hourly at :30"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("0 9,17 * * *", "09:00, 17:00 every day"),
        ("0 0 1 1 *", "00:00 on day 1 in Jan"),
        ("0 30 2 * * sun", "02:30 on Sun"),  # six fields, seconds 0
        ("15 30 2 * * *", "15 30 2 * * *"),  # seconds other than 0: the cron text
        ("*/5 9-17 * * *", "*/5 9-17 * * *"),  # not a known pattern: the cron text
        ("0 9 * * 8", "0 9 * * 8"),  # out of range: never invented words
    ],
)
def test_schedule_in_words(cron: str, words: str) -> None:
    """Common crontab patterns read as words; anything else is shown as written."""
    assert describe_cron(cron) == words


def test_ages_are_compact() -> None:
    """Relative times use the largest whole unit."""
    now = NOW
    assert [ago(now - timedelta(seconds=s), now) for s in (0, 42, 180, 7200, 3 * 86400)] == [
        "just now",
        "42s ago",
        "3m ago",
        "2h ago",
        "3d ago",
    ]


async def test_status_shows_the_addresss_egress_budget(pool: asyncpg.Pool, cli80) -> None:
    """The header says what every user sending from this address used of its minute (the
    grants of the last minute under the egress key, not older ones), and a 429's pause."""
    clock = FakeNow(NOW)
    await seed(pool, clock())
    await pool.execute(
        """INSERT INTO rate_event (budget_key, egress_key, at, n)
           VALUES ('user:a', 'egress:shared', $1, 30), ('user:b', 'egress:shared', $2, 7),
                  ('user:a', 'egress:shared', $3, 500), ('user:a', 'egress:other', $1, 9);
           """.replace("$1", f"'{NOW - timedelta(seconds=10)}'")
        .replace("$2", f"'{NOW - timedelta(seconds=50)}'")
        .replace("$3", f"'{NOW - timedelta(seconds=90)}'")
    )
    await pool.execute(
        "INSERT INTO rate_budget (budget_key, blocked_until) VALUES ('egress:shared', $1)",
        NOW + minutes(2),
    )
    egress = await gather_egress(pool, clock(), "shared", 1000)
    assert egress is not None and egress.used_minute == 37
    text = rendered(render_status(await gather_status(pool, clock()), clock(), egress))
    line = text.splitlines()[1]
    assert line == "egress shared: 37/1000 in the last minute, all users; paused by a 429 in 2m"
    assert await gather_egress(pool, clock(), "shared", 0) is None  # the budget is off
    code, raw, err = await cli80("status", "--json")
    assert code == 0, err
    assert json.loads(raw)["egress"]["name"] == "shared"
