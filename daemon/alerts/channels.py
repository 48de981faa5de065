"""Where alert messages go: a Slack-compatible webhook and/or e-mail over SMTP.

A channel raises AlertDeliveryError with a message safe to log: never the webhook URL (Slack's
carries its secret in the path), never the SMTP password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiohttp
import aiosmtplib
from pydantic import SecretStr

from daemon.alerts.render import Rendered
from daemon.errors import ConfigError, FaSyncError
from daemon.logs import scrub_text
from daemon.settings import Settings

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


class AlertDeliveryError(FaSyncError):
    """A channel did not take a message; the text names the channel, never its secret."""


class Channel(Protocol):
    name: str

    async def send(self, message: Rendered, now: datetime) -> None: ...


@dataclass
class WebhookChannel:
    """POST the JSON body; any 2xx answer is taken as delivered."""

    session: aiohttp.ClientSession
    url: SecretStr
    timeout: float
    name: str = "webhook"

    async def send(self, message: Rendered, now: datetime) -> None:
        try:
            async with self.session.post(
                self.url.get_secret_value(),
                json=message.payload,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    raise AlertDeliveryError(f"webhook answered HTTP {response.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # str(exc) of aiohttp errors may quote the URL: name the error class only
            raise AlertDeliveryError(f"webhook unreachable: {type(exc).__name__}") from None


@dataclass
class EmailChannel:
    """One e-mail to every recipient (aiosmtplib; STARTTLS, TLS or plain, login optional)."""

    host: str
    port: int
    security: str
    username: str | None
    password: SecretStr | None
    sender: str
    recipients: list[str]
    timeout: float
    name: str = "email"

    async def send(self, message: Rendered, now: datetime) -> None:
        try:
            await aiosmtplib.send(
                message.email(self.sender, self.recipients, now),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password.get_secret_value() if self.password else None,
                use_tls=self.security == "ssl",
                start_tls=self.security == "starttls",
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            text = scrub_text(f"{type(exc).__name__}: {exc}")[:300]
            raise AlertDeliveryError(f"e-mail via {self.host}:{self.port} failed: {text}") from None


def _recipients(settings: Settings) -> list[str]:
    raw = settings.alert_email_to or ""
    found = [a.strip() for a in raw.split(",") if a.strip()]
    for address in [*found, settings.alert_email_from or ""]:
        if "\r" in address or "\n" in address or "@" not in address:
            raise ConfigError(
                "FA_SYNC_ALERT_EMAIL_TO / FA_SYNC_ALERT_EMAIL_FROM: each must be an e-mail "
                "address (name@domain) on one line"
            )
    return found


def build_channels(
    settings: Settings, session_for: Callable[[], aiohttp.ClientSession]
) -> list[Channel]:
    """The configured channels (none: alerts are off); a half-configured one is a ConfigError
    naming the missing variables."""
    channels: list[Channel] = []
    if settings.alert_webhook_url is not None:
        url = settings.alert_webhook_url.get_secret_value()
        if not url.startswith(("https://", "http://")):
            raise ConfigError("FA_SYNC_ALERT_WEBHOOK_URL must be an http(s) URL")
        channels.append(
            WebhookChannel(session_for(), settings.alert_webhook_url, settings.alert_timeout)
        )
    if settings.alert_smtp_host:
        missing = [
            name for name, value in (("FA_SYNC_ALERT_EMAIL_FROM", settings.alert_email_from),
                                     ("FA_SYNC_ALERT_EMAIL_TO", settings.alert_email_to))
            if not (value or "").strip()
        ]  # fmt: skip
        if missing:
            raise ConfigError(f"FA_SYNC_ALERT_SMTP_HOST is set but {', '.join(missing)} is not")
        recipients = _recipients(settings)
        security = settings.alert_smtp_security
        channels.append(EmailChannel(
            host=settings.alert_smtp_host,
            port=settings.alert_smtp_port or DEFAULT_PORTS[security],
            security=security,
            username=settings.alert_smtp_username,
            password=settings.alert_smtp_password,
            sender=(settings.alert_email_from or "").strip(),
            recipients=recipients,
            timeout=settings.alert_timeout,
        ))  # fmt: skip
    return channels
