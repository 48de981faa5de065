"""Process settings: every number bounded, NaN and infinity refused, errors name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daemon.errors import ConfigError
from daemon.settings import Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FA_SYNC_HTTP_TIMEOUT", "1e300"),  # overflowed timedelta maths before
        ("FA_SYNC_HTTP_TIMEOUT", "nan"),
        ("FA_SYNC_LEASE_SECONDS", "inf"),
        ("FA_SYNC_LEASE_SECONDS", "0"),  # a lease that is never renewed in time
        ("FA_SYNC_RECORD_RETRY_BASE_SECONDS", "-1"),
        ("FA_SYNC_METRICS_PORT", "70000"),
        ("FA_SYNC_HISTORY_RETENTION_DAYS", "0"),
        ("FA_SYNC_ALERT_FAILURE_SHARE", "1.5"),  # a share is at most 1
        ("FA_SYNC_ALERT_SUMMARY_MINUTES", "0"),
        ("FA_SYNC_ALERT_SMTP_SECURITY", "tls"),  # starttls, ssl or none
        ("FA_SYNC_DB_STATEMENT_CACHE", "-1"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """An absurd value is a ConfigError that names the variable, not a crash later."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings.load(_env_file=None)
    assert variable in str(info.value)


def test_settings_errors_never_quote_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DSN may carry a password: a bad value elsewhere does not echo it."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("FA_SYNC_HTTP_TIMEOUT", "nan")
    with pytest.raises(ConfigError) as info:
        Settings.load(_env_file=None)
    assert "hunter2" not in str(info.value)


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    """`fa-sync run` with a bad setting exits 1 with one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run"],
        env={"FA_SYNC_HTTP_TIMEOUT": "1e300", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "FA_SYNC_HTTP_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr
