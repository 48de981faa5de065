"""Alerts reach a webhook receiver and an SMTP server on loopback: each condition once, repeats
suppressed, warnings batched into a summary, one message however many replicas tick.

Time is driven by passing `now` to AlertDispatcher.tick(); nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon.alerts.dispatcher import AlertDispatcher, configured_dispatcher
from daemon.cli_contacts import run_once
from daemon.context import RunOptions
from daemon.db.pool import create_pool
from daemon.errors import ConfigError
from daemon.metrics import Metrics
from daemon.process import Daemon, Services
from daemon.resources import ClientFactory
from daemon.settings import Settings
from tests.clirun import fa_sync
from tests.daemon.alertrig import (
    HOOK_SECRET,
    SMTP_PASSWORD,
    T0,
    Mailbox,
    Receiver,
    add_client,
    add_profile,
    add_run,
    dead_letters,
    error_run,
    failed_run,
    finish,
    minutes,
    refuse,
)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/services/T0/{rest:.*}", rx.handle)
    server = await aiohttp_server(app)
    rx.url = str(server.make_url(f"/services/T0/{HOOK_SECRET}"))
    return rx


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, hostname="mail.test", authenticator=box.authenticate,
                     auth_require_tls=False),
        "127.0.0.1", 0,
    )  # fmt: skip
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


@pytest.fixture
def alert_settings(settings: Settings, receiver: Receiver, mailbox: Mailbox) -> Settings:
    return settings.model_copy(update={
        "alert_webhook_url": SecretStr(receiver.url),
        "alert_smtp_host": "127.0.0.1", "alert_smtp_port": mailbox.port,
        "alert_smtp_security": "none", "alert_smtp_username": "fa-sync",
        "alert_smtp_password": SecretStr(SMTP_PASSWORD),
        "alert_email_from": "fa-sync@shop.test", "alert_email_to": "ops@shop.test, cfo@shop.test",
        "alert_timeout": 5.0,
    })  # fmt: skip


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def dispatcher(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, alert_settings: Settings
) -> AlertDispatcher:
    d = configured_dispatcher(pool, session, alert_settings, Metrics())
    assert d is not None
    return d


async def test_each_condition_reaches_both_channels_once(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver, mailbox: Mailbox
) -> None:
    """Critical alerts go out at the next tick, warnings in the summary; each exactly once."""
    client = await add_client(pool)
    shop = await add_profile(pool, "shop-uk", client)
    run = await add_run(pool, shop, "warning")
    await dead_letters(pool, shop, run, 3)
    await finish(dispatcher, failed_run(shop, "shop-uk", run), T0)
    await finish(dispatcher, error_run(shop, "shop-uk", run + 1), T0)
    await refuse(pool, client)

    assert await dispatcher.tick(T0) == 2
    assert sorted(receiver.kinds()) == [["reauth_needed"], ["run_error"]]
    assert len(mailbox.messages) == 2
    assert all(m["To"] == "ops@shop.test, cfo@shop.test" for m in mailbox.messages)
    assert mailbox.logins == [("fa-sync", SMTP_PASSWORD)] * 2

    for later in (minutes(1), minutes(30)):  # nothing new, summary not due
        assert await dispatcher.tick(T0 + later) == 0
    assert await dispatcher.tick(T0 + minutes(60)) == 1
    summary = receiver.bodies[-1]
    assert summary["fa_sync"]["type"] == "summary"
    assert sorted(receiver.kinds()[-1]) == ["dead_letter", "failure_rate"]
    dead = next(a for a in summary["fa_sync"]["alerts"] if a["kind"] == "dead_letter")
    assert dead["records"] == 3 and dead["details"]["exhausted_attempts"] == 3
    assert "3 record(s) reached the dead letter" in summary["text"]
    assert mailbox.subjects()[-1] == "[fa-sync] summary: 2 alert(s)"

    assert await dispatcher.tick(T0 + minutes(200)) == 0
    assert len(receiver.bodies) == len(mailbox.messages) == 3

    await dispatcher.purge(T0 + timedelta(days=1))  # housekeeping keeps the open reauth key
    assert await pool.fetchval("SELECT count(*) FROM alert_message") == 0
    assert await pool.fetchval("SELECT count(*) FROM alert") == 0
    keys = [r["dedup_key"] for r in await pool.fetch("SELECT dedup_key FROM alert_dedup")]
    assert keys == [f"reauth_needed:client:{client}:v0"]


async def test_webhook_body_is_slack_compatible_json(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver
) -> None:
    """A top-level "text" for Slack, our structured "fa_sync" object beside it."""
    shop = await add_profile(pool, "shop-uk")
    await finish(dispatcher, error_run(shop, "shop-uk", 41), T0)
    await dispatcher.tick(T0)
    body = receiver.bodies[0]
    assert body["text"].startswith("fa-sync CRITICAL: profile shop-uk: run 41 ended in error")
    assert "error: FreeAgent is down: HTTP 503" in body["text"]
    (alert,) = body["fa_sync"]["alerts"]
    assert alert["kind"] == "run_error" and alert["severity"] == "critical"
    assert alert["profile"] == "shop-uk" and alert["details"]["run_id"] == 41


async def test_a_repeated_condition_is_not_resent_within_the_interval(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver
) -> None:
    """The same run error of the same profile is sent once per interval, not per run."""
    shop, other = await add_profile(pool, "shop-uk"), await add_profile(pool, "shop-de")
    for minute in (0, 15, 30, 45):
        await finish(dispatcher, error_run(shop, "shop-uk", minute), T0 + minutes(minute))
        await dispatcher.tick(T0 + minutes(minute))
    await finish(dispatcher, error_run(other, "shop-de", 99), T0)
    await dispatcher.tick(T0 + minutes(46))
    assert [b["fa_sync"]["alerts"][0]["profile"] for b in receiver.bodies] == [
        "shop-uk", "shop-de"
    ]  # fmt: skip
    await finish(dispatcher, error_run(shop, "shop-uk", 61), T0 + minutes(61))
    await dispatcher.tick(T0 + minutes(61))
    assert receiver.bodies[-1]["fa_sync"]["alerts"][0]["details"]["run_id"] == 61


async def test_refused_token_is_alerted_once_until_it_clears(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver
) -> None:
    """invalid_grant on every run: one alert; re-authorised and refused again: a new one."""
    client = await add_client(pool)
    await add_profile(pool, "shop-uk", client)
    await refuse(pool, client)
    for hour in range(5):
        await dispatcher.tick(T0 + timedelta(hours=hour))
    assert receiver.kinds() == [["reauth_needed"]]
    assert receiver.bodies[0]["fa_sync"]["alerts"][0]["details"]["profiles"] == ["shop-uk"]
    # `fa-sync client authorize` stores a new pair (token_version moves on) ...
    await pool.execute(
        "UPDATE freeagent_client SET token_version = token_version + 1 WHERE id = $1", client
    )
    await dispatcher.tick(T0 + timedelta(hours=6))
    assert len(receiver.bodies) == 1
    await refuse(pool, client)  # ... which FreeAgent refuses in turn
    await dispatcher.tick(T0 + timedelta(hours=6, minutes=5))
    assert receiver.kinds() == [["reauth_needed"], ["reauth_needed"]]


async def test_warnings_wait_for_one_summary_and_repeats_merge(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver
) -> None:
    """Failure-share warnings of a whole interval arrive as one summary; repeats are counted."""
    uk, de = await add_profile(pool, "shop-uk"), await add_profile(pool, "shop-de")
    await dispatcher.tick(T0)  # the first tick starts the summary clock
    for minute in (5, 20, 35):
        await finish(dispatcher, failed_run(uk, "shop-uk", minute, failed=4), T0 + minutes(minute))
        assert await dispatcher.tick(T0 + minutes(minute)) == 0
    await finish(dispatcher, failed_run(de, "shop-de", 7), T0)
    # below the share, and too few records to count: no alert
    await finish(dispatcher, failed_run(de, "shop-de", 8, 3, 20), T0)
    await finish(dispatcher, failed_run(de, "shop-de", 9, 5, 5), T0)
    assert await dispatcher.tick(T0 + minutes(60)) == 1
    (summary,) = receiver.bodies
    alerts = {a["profile"]: a for a in summary["fa_sync"]["alerts"]}
    assert set(alerts) == {"shop-uk", "shop-de"}
    assert alerts["shop-uk"]["occurrences"] == 3 and alerts["shop-uk"]["records"] == 12
    assert "raised 3 times, 12 records in all" in summary["text"]
    assert await dispatcher.tick(T0 + minutes(120)) == 0  # nothing new: no empty summary


async def test_two_replicas_on_one_database_send_each_alert_once(
    database_dsn: str,
    session: aiohttp.ClientSession,
    alert_settings: Settings,
    receiver: Receiver,
    mailbox: Mailbox,
    pool: asyncpg.Pool,
) -> None:
    """Two dispatchers (own pools, same database) ticking together: one message each time."""
    client = await add_client(pool)
    shop = await add_profile(pool, "shop-uk", client)
    pools = [await create_pool(database_dsn, max_size=4) for _ in range(2)]
    try:
        pair = [
            configured_dispatcher(p, session, alert_settings.model_copy(
                update={"replica_id": f"replica-{i}"}), Metrics())
            for i, p in enumerate(pools)
        ]  # fmt: skip
        a, b = [d for d in pair if d is not None]
        await asyncio.gather(a.tick(T0), b.tick(T0))  # start the summary clock
        await refuse(pool, client)
        await asyncio.gather(
            *(finish(d, failed_run(shop, "shop-uk", 1), T0)
              for d in (a, b))
        )  # fmt: skip
        sent = await asyncio.gather(a.tick(T0 + minutes(1)), b.tick(T0 + minutes(1)))
        assert sorted(sent) == [0, 1]
        sent = await asyncio.gather(a.tick(T0 + minutes(61)), b.tick(T0 + minutes(61)))
        assert sorted(sent) == [0, 1]
        assert receiver.kinds() == [["reauth_needed"], ["failure_rate"]]
        assert len(mailbox.messages) == 2
    finally:
        for p in pools:
            await p.close()


async def test_failed_delivery_retries_with_backoff_and_never_logs_the_secret(
    pool: asyncpg.Pool, dispatcher: AlertDispatcher, receiver: Receiver, mailbox: Mailbox
) -> None:
    """A 500 from the webhook: retried after 30 s, then 60 s; e-mail, already sent, is not
    sent again; the URL's secret path and the SMTP password appear in no log line."""
    shop = await add_profile(pool, "shop-uk")
    receiver.fail_next = 2
    with capture_logs() as logs:
        await finish(dispatcher, error_run(shop, "shop-uk", 7), T0)
        assert await dispatcher.tick(T0) == 0
        assert await dispatcher.tick(T0 + timedelta(seconds=29)) == 0
        assert await dispatcher.tick(T0 + timedelta(seconds=30)) == 0  # second 500
        assert await dispatcher.tick(T0 + timedelta(seconds=89)) == 0
        assert await dispatcher.tick(T0 + timedelta(seconds=90)) == 1
    assert len(receiver.bodies) == 1 and len(mailbox.messages) == 1
    failures = [e for e in logs if e["event"] == "alert_delivery_failed"]
    assert [f["attempts"] for f in failures] == [1, 2]
    assert "webhook answered HTTP 500" in failures[0]["error"]
    text = repr(logs)
    assert HOOK_SECRET.split("/")[0] not in text and SMTP_PASSWORD not in text
    metrics = dispatcher._metrics
    assert metrics is not None
    assert metrics.alert_deliveries.labels("webhook", "failed")._value.get() == 2
    assert metrics.alert_deliveries.labels("email", "sent")._value.get() == 1


async def test_a_message_is_given_up_after_its_attempts(
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    alert_settings: Settings,
    receiver: Receiver,
) -> None:
    """An unreachable channel is tried alert_delivery_attempts times, then left failed."""
    settings = alert_settings.model_copy(update={"alert_delivery_attempts": 2})
    dispatcher = configured_dispatcher(pool, session, settings, Metrics())
    assert dispatcher is not None
    shop = await add_profile(pool, "shop-uk")
    receiver.fail_next = 10
    await finish(dispatcher, error_run(shop, "shop-uk", 7), T0)
    for hour in range(4):
        await dispatcher.tick(T0 + timedelta(hours=hour))
    assert receiver.fail_next == 8
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM alert_message")
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert HOOK_SECRET not in row["last_error"]


async def test_a_run_once_command_sends_its_critical_alert_before_returning(
    pool: asyncpg.Pool,
    database_dsn: str,
    alert_settings: Settings,
    factory: ClientFactory,
    session: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    """`contact export` (run once): a real run that fails (no FreeAgent client) raises
    run_error through the runner's hook, and it is delivered before the command returns."""
    await add_profile(pool, "shop-uk")
    services = Services(alert_settings, database_dsn, pool, factory, session)
    outcome = await run_once(services, "shop-uk", RunOptions(), clock=lambda: T0)
    assert outcome.status == "error" and outcome.error
    assert receiver.kinds() == [["run_error"]]
    assert receiver.bodies[0]["fa_sync"]["alerts"][0]["details"]["error"] == outcome.error


async def test_the_daemon_sends_critical_alerts_at_once(
    pool: asyncpg.Pool,
    database_dsn: str,
    alert_settings: Settings,
    factory: ClientFactory,
    session: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    """The daemon's "alerts" task is woken by a failed run; no poll interval is waited."""
    shop = await add_profile(pool, "shop-uk")
    settings = alert_settings.model_copy(update={"alert_poll_seconds": 3600.0})
    daemon = Daemon(Services(settings, database_dsn, pool, factory, session))
    stop = asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop))
    try:
        await daemon.fire(shop, datetime.now(UTC))
        await asyncio.wait_for(receiver.arrived.wait(), 10)
        assert receiver.kinds() == [["run_error"]]
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


async def test_alerts_test_command_says_which_channel_worked(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox
) -> None:
    """`fa-sync alerts test` sends to each channel and names the one that failed (exit 1),
    without printing the webhook URL or the SMTP password."""
    env = {
        "FA_SYNC_ALERT_WEBHOOK_URL": receiver.url,
        "FA_SYNC_ALERT_SMTP_HOST": "127.0.0.1", "FA_SYNC_ALERT_SMTP_PORT": str(mailbox.port),
        "FA_SYNC_ALERT_SMTP_SECURITY": "starttls",  # this server offers no STARTTLS: refused
        "FA_SYNC_ALERT_SMTP_USERNAME": "fa-sync", "FA_SYNC_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
        "FA_SYNC_ALERT_EMAIL_FROM": "fa-sync@shop.test", "FA_SYNC_ALERT_EMAIL_TO": "ops@shop.test",
    }  # fmt: skip
    unused = "postgresql://nobody@127.0.0.1:1/none"  # the command needs no database
    code, out, err = await fa_sync("alerts", "test", dsn=unused, cwd=tmp_path, env=env)
    assert code == 1, err
    assert "webhook: ok" in out and "email: failed" in out
    assert receiver.bodies[0]["fa_sync"]["type"] == "test" and not mailbox.messages
    assert HOOK_SECRET.split("/")[0] not in out + err and SMTP_PASSWORD not in out + err


def test_alerts_are_off_when_nothing_is_configured(settings: Settings) -> None:
    """No webhook, no SMTP host: no dispatcher, no background task."""
    assert configured_dispatcher(None, None, settings, Metrics()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("update", "names"),
    [
        ({"alert_smtp_host": "mail.test"}, "FA_SYNC_ALERT_EMAIL_FROM, FA_SYNC_ALERT_EMAIL_TO"),
        ({"alert_smtp_host": "mail.test", "alert_email_from": "a@b.test",
          "alert_email_to": "ops@b.test\nBcc: x@evil.test"}, "FA_SYNC_ALERT_EMAIL_TO"),
        ({"alert_webhook_url": SecretStr("ftp://hooks.test/secret")}, "FA_SYNC_ALERT_WEBHOOK_URL"),
    ],
)  # fmt: skip
def test_half_configured_alerts_refuse_to_start(
    settings: Settings, update: dict[str, Any], names: str
) -> None:
    """A channel missing what it needs is a ConfigError naming the variables, not the values."""
    with pytest.raises(ConfigError) as caught:
        configured_dispatcher(None, None, settings.model_copy(update=update), Metrics())  # type: ignore[arg-type]
    assert names in str(caught.value)
    assert "secret" not in str(caught.value) and "evil" not in str(caught.value)
