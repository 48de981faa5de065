"""Logs cannot leak: no locals in tracebacks, every logger scrubbed, keys and values matched."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from daemon.logs import MAX_TEXT, REDACTED, TOO_DEEP, get_logger, scrub, scrub_text
from tests.logcapture import configured

TOKEN = "tok-4f7c1e9b2a6d8c3e"  # made up; the tests hunt for it


def _call_the_api() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent = [headers, f"access_token={TOKEN}"]
    try:
        raise ValueError(f"refused: Cookie: sid={TOKEN}")
    except ValueError as exc:
        raise RuntimeError(f"sent={sent!r}") from exc


def _fail_and_log() -> None:
    access_token = TOKEN
    try:
        _call_the_api()
    except RuntimeError:
        get_logger("tests").exception("unexpected_failure", token_hint=access_token)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_tracebacks_show_no_token_in_either_renderer(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception with a token in locals and in its chain prints it 0 times."""
    with configured(log_format):
        _fail_and_log()
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "ValueError" in err  # the traceback itself is there
    assert err.count(TOKEN) == 0


def _json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_stdlib_loggers_go_through_the_scrubber_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """aiohttp's own logger is scrubbed and rendered as a JSON line like ours."""
    with configured("json"):
        logging.getLogger("aiohttp.client").warning(
            "retrying %s with %s", f"https://x/v2/me?access_token={TOKEN}", {"Cookie": TOKEN}
        )
    err = capsys.readouterr().err
    (line,) = _json_lines(err)
    assert line["logger"] == "aiohttp.client" and line["level"] == "warning"
    assert "https://x/v2/me?access_token=" in line["event"]
    assert TOKEN not in err


def test_stdlib_exceptions_are_scrubbed_too(capsys: pytest.CaptureFixture[str]) -> None:
    """asyncio's "Task exception was never retrieved" traceback carries no token."""
    with configured("json"):
        try:
            _call_the_api()
        except RuntimeError as exc:
            logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=exc)
    err = capsys.readouterr().err
    (line,) = _json_lines(err)
    assert "RuntimeError" in line["exception"]
    assert TOKEN not in err


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # header lines, as aiohttp or a proxy quotes them
        (f"Authorization: Bearer {TOKEN}", "Authorization: "),
        (f"Proxy-Authorization: Basic {TOKEN}", "Proxy-Authorization: "),
        (f"Cookie: sid={TOKEN}; theme=dark", "Cookie: "),
        (f"Set-Cookie: sid={TOKEN}; Path=/; HttpOnly", "Set-Cookie: "),
        (f"x-api-key: {TOKEN}", "x-api-key: "),
        # the same headers as a dict repr: the other headers stay readable
        (f"{{'Cookie': 'sid={TOKEN}', 'Host': 'shop.test'}}", "'Host': 'shop.test'"),
        (f"{{'X-Api-Key': '{TOKEN}'}}", "X-Api-Key"),
        # auth schemes in prose
        (f"refused Bearer {TOKEN} at 12:00", "at 12:00"),
        (f"sent Basic {TOKEN}", "sent Basic"),
        # OAuth 1.0a header parameters (Magento), quoted and bare; nonce and timestamp kept
        (
            f'OAuth oauth_consumer_key="{TOKEN}", oauth_nonce="n1", oauth_signature="{TOKEN}%3D"'
            f', oauth_token="{TOKEN}", oauth_timestamp="1700000000"',
            'oauth_timestamp="1700000000"',
        ),
        (f"OAuth oauth_consumer_key={TOKEN},oauth_token={TOKEN}", "OAuth oauth_consumer_key="),
        (f"oauth_token_secret={TOKEN}&oauth_verifier=v", "oauth_verifier=v"),
        # query strings: secret parameters go, the rest of the URL stays
        (
            f"GET https://api.test/v2/contacts?view=all&access_token={TOKEN}&page=2",
            "https://api.test/v2/contacts?view=all&access_token=",
        ),
        (f"https://app.test/cb?code={TOKEN}&state=xyz", "&state=xyz"),
        (f"?client_id=cid&client_secret={TOKEN}", "client_id=cid"),
        # form bodies (token endpoint)
        (f"grant_type=refresh_token&refresh_token={TOKEN}", "grant_type=refresh_token"),
        # JSON text, plain and escaped inside another JSON string
        (f'{{"access_token": "{TOKEN}", "expires_in": 3600}}', '"expires_in": 3600'),
        (f'{{\\"refresh_token\\":\\"{TOKEN}\\"}}', '\\"refresh_token\\"'),
        # credentials in a URL
        (f"postgresql://fa:{TOKEN}@db.test/fa_sync", "postgresql://fa:"),
        # incoming-webhook URLs (alerts) hold their secret in the path
        (f"POST https://hooks.slack.com/services/T0/B0/{TOKEN} failed", " failed"),
        (f"https://discord.com/api/webhooks/1/{TOKEN}", "https://discord.com/api/webhooks/"),
        (f"alert_webhook_url=https://chat.test/x/{TOKEN}", "alert_webhook_url="),
    ],
)
def test_scrubber_redacts_every_secret_form(text: str, kept: str) -> None:
    """Each way a credential appears in text is redacted; what surrounds it stays."""
    scrubbed = scrub_text(text)
    assert TOKEN not in scrubbed
    assert REDACTED in scrubbed
    assert kept in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "jane.smith@example.com",
        "Jane Smith, ACME Ltd, 1 High St",
        "https://api.freeagent.com/v2/contacts/42?view=active",
        "OAuth 2 token endpoint answered 400",  # the word OAuth is not a credential
        "error_code=422 status=failed",
        'FreeAgent contact "ACME Ltd" updated',
    ],
)
def test_scrubber_keeps_innocent_text(text: str) -> None:
    """E-mails, names, URLs without secret parameters and prose come out unchanged."""
    assert scrub_text(text) == text


def test_scrubber_redacts_secret_keys_in_structures() -> None:
    """Header and body dicts: secret keys redacted at any depth, the rest kept."""
    headers = {
        "Set-Cookie": TOKEN,
        "X-Api-Key": TOKEN,
        "Proxy-Authorization": TOKEN,
        "Content-Type": "application/json",
    }
    body = {"contact": {"email": "jane@example.com", "notes": [f"Bearer {TOKEN}"]}}
    scrubbed = scrub({"headers": headers, "body": body})
    assert TOKEN not in json.dumps(scrubbed)
    assert scrubbed["headers"]["Content-Type"] == "application/json"
    assert scrubbed["body"]["contact"]["email"] == "jane@example.com"


def test_scrubbing_a_hostile_depth_never_raises() -> None:
    """A 100,000-deep structure is cut short instead of raising RecursionError."""
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    assert TOO_DEEP in json.dumps(scrub({"body": deep}))


def test_scrubbing_a_huge_string_is_cut_first() -> None:
    """A 10 MiB text is cut to MAX_TEXT before the expressions run, and says how much went."""
    scrubbed = scrub("x" * (10 * 2**20) + f" access_token={TOKEN}")
    assert TOKEN not in scrubbed
    assert len(scrubbed) < MAX_TEXT + 100
    assert scrubbed.endswith("more characters not logged]")
