"""The fa-sync command line, run as a user runs it: a subprocess against the test database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from simulators.stack import DEMO_CLIENT_SECRET, DEMO_MAGENTO_TOKEN, Stack
from tests.clirun import fa_sync
from tests.secretkeys import sealing_box


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(database_dsn: str, tmp_path):  # type: ignore[no-untyped-def]
    """Run `fa-sync ARGS` with DATABASE_URL pointing at this test's database."""
    logs = {"FA_SYNC_REQUEST_LOG_DIR": str(tmp_path / "logs")}

    async def run(*args: str, **extra_env: str) -> Result:
        code, out, err = await fa_sync(
            *args, dsn=database_dsn, cwd=tmp_path, env={**logs, **extra_env}
        )
        return Result(code, out, err)

    return run


async def _secrets(pool: asyncpg.Pool) -> list[str]:
    row = await pool.fetchrow("SELECT access_token, refresh_token FROM freeagent_client")
    tokens = [sealing_box().open(row[k]) for k in ("access_token", "refresh_token")]
    return [*tokens, DEMO_CLIENT_SECRET, DEMO_MAGENTO_TOKEN]


async def test_profile_set_changes_columns(pool: asyncpg.Pool, stack: Stack, cli) -> None:
    """`profile set` edits any column."""
    result = await cli(
        "profile",
        "set",
        "demo",
        "--schedule",
        "*/5 * * * *",
        "--batch-size",
        "200",
        "--set",
        "contact.default_payment_terms_in_days=14",
    )
    assert result.code == 0, result.err
    row = await pool.fetchrow("SELECT * FROM profile WHERE name = 'demo'")
    assert (row["schedule"], row["batch_size"]) == ("*/5 * * * *", 200)
    assert row["settings"]["contact"]["default_payment_terms_in_days"] == 14


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "2000"], "batch_size must be between 1 and 1000"),
        (["--schedule", "61 * * * *"], "61"),
        (["--schedule", "0 0 31 2 *"], "never fires"),
        (["--schedule", "0 0 30 2 *", "--timezone", "Europe/London"], "never fires"),
        (["--api-behaviour", "merge"], "api_behaviour must be upsert, create, update or mirror"),
        (["--set", "contact.charge_sales_tax=Sometimes"], "charge_sales_tax"),
        (["--set", "contcat.status=Active"], "contcat"),
    ],
)
async def test_bad_values_are_refused_with_one_clear_line(
    pool: asyncpg.Pool, stack: Stack, cli, args: list[str], message: str
) -> None:
    """Bad input exits 1 with a readable message, no traceback, and changes nothing."""
    result = await cli("profile", "set", "demo", *args)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err + result.out
    row = await pool.fetchrow(
        "SELECT batch_size, schedule, settings FROM profile WHERE name = 'demo'"
    )
    assert (row["batch_size"], row["schedule"], row["settings"]) == (100, "*/15 * * * *", {})


async def test_dry_run_lists_actions_and_sends_nothing(stack: Stack, cli) -> None:
    """`contact export --dry-run` gives totals and each row's action, and makes no write call."""
    result = await cli("contact", "export", "--profile", "demo", "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = result.json()
    assert plan["dry_run"] is True and plan["cannot_predict"]
    actions = [r["action"] for r in plan["records"]]
    assert plan["totals"]["created"] == actions.count("create") > 0
    assert plan["totals"]["skipped"] == actions.count("skip")
    assert stack.freeagent.write_count() == 0
    text = await cli("contact", "export", "--profile", "demo", "--dry-run")
    assert f"would create {plan['totals']['created']}," in text.out
    assert stack.freeagent.contacts_list() == []


async def test_client_config_caches_company_and_warns_about_settings(
    pool: asyncpg.Pool, stack: Stack, cli, run_profile
) -> None:
    """`client config` caches company and user, prints them in 80 columns and warns about
    settings the company would not go along with, as do `profile show` and the run;
    `--delete` clears the cache."""
    stack.freeagent.company["sales_tax_registration_status"] = "Not registered"
    await pool.execute(
        """UPDATE profile SET settings = '{"contact": {"charge_sales_tax": "Always"}}'"""
    )
    result = await cli("client", "config", "demo-freeagent", COLUMNS="80")
    assert result.code == 0, result.err
    assert "Demo Trading Ltd" in result.out and "Not registered" in result.out
    assert "charge_sales_tax is Always" in result.out
    assert max(len(line) for line in result.out.splitlines()) <= 80
    cached = await pool.fetchrow("SELECT config_data, config_collected_at FROM freeagent_client")
    assert cached["config_data"]["company"]["currency"] == "GBP"
    assert cached["config_data"]["user"]["permission_level"] == 8
    shown = (await cli("profile", "show", "demo", "--json")).json()
    assert any("charge_sales_tax" in w for w in shown[0]["warnings"])
    outcome = await run_profile(stack.profile_id, export=False)
    assert any("charge_sales_tax" in m["message"] for m in outcome.counts.messages)
    assert (await cli("client", "config", "demo-freeagent", "--delete")).code == 0
    cleared = await pool.fetchrow("SELECT config_data, config_collected_at FROM freeagent_client")
    assert (cleared["config_data"], cleared["config_collected_at"]) == ({}, None)


async def test_export_then_history_and_queue(pool: asyncpg.Pool, stack: Stack, cli) -> None:
    """`contact export` runs the profile once; history and queue show the result."""
    result = await cli("contact", "export", "--profile", "demo", "--json")
    assert result.code == 0, result.err
    (run,) = result.json()
    assert run["status"] in ("complete", "warning") and run["created"] > 0
    history = (await cli("history", "--profile", "demo", "--json")).json()
    assert history[0]["trigger"] == "cli" and history[0]["created"] == run["created"]
    queue = (await cli("queue", "list", "--status", "created", "--json")).json()
    assert len(queue) == run["created"]


async def test_export_without_a_profile_runs_every_enabled_one_or_the_rows_given(
    pool: asyncpg.Pool, stack: Stack, cli
) -> None:
    """As the original's `fa_contact:export`: no --profile exports every enabled profile
    (a disabled one is left alone), `--id N` alone the profiles of those ledger rows and only
    those rows, `--profile 1` takes an id; an unknown row is a clear error."""
    await pool.execute(
        """INSERT INTO profile (name, type, enabled, client_id, connection_id)
           SELECT 'off', type, false, client_id, connection_id FROM profile WHERE name = 'demo'"""
    )
    result = await cli("contact", "export", "--json")
    assert result.code == 0, result.err
    (run,) = result.json()
    assert run["profile"] == "demo" and run["created"] > 0
    off = await pool.fetchval("SELECT count(*) FROM contact_entity e JOIN profile p "
                              "ON p.id = e.profile_id WHERE p.name = 'off'")  # fmt: skip
    assert off == 0
    customer = stack.magento.add_customer(email="late@example.com", firstname="La", lastname="Te")
    other = stack.magento.add_customer(email="later@example.com", firstname="La", lastname="Ter")
    by_id = await cli("contact", "export", "--profile", str(stack.profile_id), "--json")
    assert by_id.code == 0, by_id.err
    assert by_id.json()[0]["created"] == 2  # collected and exported both
    await pool.execute(
        "UPDATE contact_entity SET status = 'failed' WHERE source_key = ANY($1)",
        [f"customer:{customer['id']}", f"customer:{other['id']}"],
    )
    row = await pool.fetchval(
        "SELECT id FROM contact_entity WHERE source_key = $1", f"customer:{customer['id']}"
    )
    await pool.execute("UPDATE contact_entity SET status = 'pending' WHERE id = $1", row)
    only = await cli("contact", "export", "--id", str(row), "--json")
    assert only.code == 0, only.err
    (run,) = only.json()
    assert run["profile"] == "demo"
    statuses = dict(await pool.fetch(
        "SELECT source_key, status::text FROM contact_entity WHERE source_key = ANY($1)",
        [f"customer:{customer['id']}", f"customer:{other['id']}"],
    ))  # fmt: skip
    assert statuses[f"customer:{other['id']}"] == "failed"  # not named: left alone
    assert statuses[f"customer:{customer['id']}"] in ("unchanged", "updated")  # exported
    missing = await cli("contact", "export", "--id", "987654321")
    assert missing.code == 1 and "987654321" in missing.out + missing.err
    assert "Traceback" not in missing.out + missing.err


async def test_cli_output_never_shows_secrets(pool: asyncpg.Pool, stack: Stack, cli) -> None:
    """Client listings, exports and their logs keep tokens and secrets out."""
    outputs = [
        await cli("client", "list", "--json"),
        await cli("client", "show", "demo-freeagent", "--json"),
        await cli("magento", "list", "--json"),
        await cli("contact", "export", "--profile", "demo"),
    ]
    assert all(r.code == 0 for r in outputs), [r.err for r in outputs]
    text = "".join(r.out + r.err for r in outputs)
    for secret in await _secrets(pool):
        assert secret not in text
    assert json.loads(outputs[1].out)[0]["client_secret"] == "set"


async def test_request_logs_keep_secrets_out(
    pool: asyncpg.Pool, stack: Stack, run_profile, settings
) -> None:
    """Request/response log files record traffic but never a token."""
    await pool.execute(
        "UPDATE profile SET settings = $1",
        {"logging": {"log_requests": True, "log_responses": True}},
    )
    secrets = await _secrets(pool)
    stack.freeagent.access_token_ttl = 0.0  # force a refresh, so refresh tokens cross the wire
    await run_profile(stack.profile_id)
    files = list(settings.request_log_dir.glob("*.jsonl"))
    assert files
    text = "".join(f.read_text() for f in files)
    assert "contacts" in text
    current = await _secrets(pool)
    for secret in {*secrets, *current}:
        assert secret not in text


async def test_authorize_with_code_stores_tokens_and_identity(
    pool: asyncpg.Pool, stack: Stack, cli
) -> None:
    """The approve URL leads to a code; `--code` stores rotating tokens and who approved."""
    import aiohttp
    from yarl import URL

    added = await cli(
        "client",
        "add",
        "fresh",
        "--client-id",
        "demo-client",
        "--environment",
        "custom",
        "--base-url",
        stack.freeagent_url,
        "--redirect-uri",
        "https://example.com/callback",
        FA_SYNC_CLIENT_SECRET=DEMO_CLIENT_SECRET,
    )
    assert added.code == 0, added.err
    prompt = await cli("client", "authorize", "fresh")
    approve = next(line for line in prompt.out.split() if "approve_app" in line)
    async with (
        aiohttp.ClientSession() as session,
        session.get(approve, allow_redirects=False, headers={"User-Agent": "test"}) as response,
    ):
        code = URL(response.headers["Location"]).query["code"]
    result = await cli("client", "authorize", "fresh", "--code", code)
    assert result.code == 0, result.err
    row = await pool.fetchrow("SELECT * FROM freeagent_client WHERE name = 'fresh'")
    assert row["refresh_token"] and row["access_token"] and row["permission_level"] == 8
    assert row["user_url"]
    assert sealing_box().open(row["refresh_token"]) not in result.out + result.err


@pytest.mark.parametrize(
    "args",
    [
        ["client", "add", "x", "--client-id", "i", "--client-secret", "s3cr3t-value"],
        ["client", "authorize", "demo-freeagent", "--refresh-token", "s3cr3t-value"],
        ["magento", "add", "m", "--url", "http://shop", "--token", "s3cr3t-value"],
        ["magento", "add", "m", "--url", "http://s", "--consumer-secret", "s3cr3t-value"],
        ["magento", "add", "m", "--url", "http://s", "--token-secret", "s3cr3t-value"],
    ],
)
async def test_secrets_are_never_taken_as_command_line_values(
    pool: asyncpg.Pool, stack: Stack, cli, args: list[str]
) -> None:
    """A secret given as an argument (visible in ps and shell history) is refused, not stored."""
    result = await cli(*args)
    assert result.code == 2, result.out + result.err
    rows = [*await pool.fetch("SELECT * FROM freeagent_client")]
    rows += await pool.fetch("SELECT * FROM magento_connection")
    assert "s3cr3t-value" not in repr([dict(r) for r in rows])


async def test_secrets_are_read_from_a_file_or_the_environment(
    pool: asyncpg.Pool, stack: Stack, cli, tmp_path
) -> None:
    """--token-file and FA_SYNC_MAGENTO_* variables feed `magento add`; rows hold them sealed."""
    (tmp_path / "token").write_text("file-token\n")
    result = await cli(
        "magento",
        "add",
        "m",
        "--url",
        "http://shop.example",
        "--token-file",
        str(tmp_path / "token"),
        "--consumer-key",
        "ck",
        FA_SYNC_MAGENTO_CONSUMER_SECRET="env-consumer",
        FA_SYNC_MAGENTO_TOKEN_SECRET="env-ts",
    )
    assert result.code == 0, result.err
    row = await pool.fetchrow("SELECT * FROM magento_connection WHERE name = 'm'")
    box = sealing_box()
    stored = [row[k] for k in ("access_token", "consumer_secret", "access_token_secret")]
    assert [box.open(v) for v in stored] == ["file-token", "env-consumer", "env-ts"]
    assert not [v for v in stored if "token" in v or "env" in v]


async def test_profile_create_and_delete(pool: asyncpg.Pool, stack: Stack, cli) -> None:
    """A profile is created with defaults for every column, and deleted with its ledger."""
    created = await cli(
        "profile",
        "create",
        "second",
        "--client",
        "demo-freeagent",
        "--magento",
        "demo-magento",
        "--schedule",
        "0 6 * * 1-5",
    )
    assert created.code == 0, created.err
    row = await pool.fetchrow("SELECT * FROM profile WHERE name = 'second'")
    assert (row["batch_size"], row["api_behaviour"], row["enabled"]) == (100, "upsert", True)
    deleted = await cli("profile", "delete", "second", "--yes")
    assert deleted.code == 0, deleted.err
    assert await pool.fetchval("SELECT count(*) FROM profile WHERE name = 'second'") == 0
