"""Alerts as people read them: one JSON body for webhooks (Slack-compatible: a top-level
"text", plus our own structured "fa_sync" object) and one plain-text e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from daemon.logs import scrub

#: Lines of one alert's details shown in text (the JSON carries them all).
TEXT_DETAILS = ("error", "reason", "profiles", "exhausted_attempts", "rejected")


@dataclass(frozen=True)
class AlertRow:
    """One row of `alert`, as a message carries it."""

    id: int
    kind: str
    severity: str
    profile: str | None
    client: str | None
    title: str
    details: dict[str, Any]
    records: int
    occurrences: int  #: times raised within its quiet period (merged repeats)
    raised_at: datetime
    last_raised_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> AlertRow:
        return cls(
            id=row["id"], kind=row["kind"], severity=row["severity"], profile=row["profile"],
            client=row["client"], title=row["title"], details=row["details"],
            records=row["records"], occurrences=row["occurrences"], raised_at=row["raised_at"],
            last_raised_at=row["last_raised_at"],
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "severity": self.severity, "profile": self.profile,
            "client": self.client, "title": self.title, "records": self.records,
            "occurrences": self.occurrences, "first_raised_at": self.raised_at.isoformat(),
            "last_raised_at": self.last_raised_at.isoformat(), "details": self.details,
        }  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    """One message, ready for every channel."""

    subject: str
    text: str
    payload: dict[str, Any]

    def email(self, sender: str, recipients: list[str], now: datetime) -> EmailMessage:
        message = EmailMessage()
        # a profile name may hold a line break: never let it start a header of its own
        message["Subject"] = " ".join(self.subject.split())
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain="fa-sync")
        message.set_content(self.text)
        return message


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _line(alert: AlertRow) -> str:
    line = f"- [{alert.severity}] {alert.title}"
    if alert.occurrences > 1:
        line += f" (raised {alert.occurrences} times, {alert.records} records in all)"
    extra = [f"    {k}: {_value(alert.details[k])}" for k in TEXT_DETAILS if alert.details.get(k)]
    return "\n".join([line, *extra])


def render(message_type: str, alerts: list[AlertRow], *, now: datetime, replica: str) -> Rendered:
    """The message for a critical alert ("alert"), a summary ("summary") or a test ("test").
    Whatever came from runs is scrubbed again: alerts leave the machine."""
    alerts = [AlertRow(**{**vars(a), "details": scrub(a.details)}) for a in alerts]
    if message_type == "summary":
        subject = f"[fa-sync] summary: {len(alerts)} alert(s)"
        head = f"fa-sync summary: {len(alerts)} alert(s) since the last summary"
    elif message_type == "test":
        subject = head = "[fa-sync] test alert: this channel works"
    else:
        first = alerts[0]
        subject = f"[fa-sync] {first.severity.upper()}: {first.title}"
        head = f"fa-sync {first.severity.upper()}: {first.title}"
    if message_type == "summary":
        text = "\n".join([head, *(_line(a) for a in alerts)])
    else:
        details = [
            f"{k}: {_value(a.details[k])}" for a in alerts for k in TEXT_DETAILS if a.details.get(k)
        ]
        text = "\n".join([head, *details])
    payload = {
        "text": text,
        "fa_sync": {
            "type": message_type,
            "sent_at": now.isoformat(),
            "replica": replica,
            "alerts": [a.as_json() for a in alerts],
        },
    }
    return Rendered(subject=subject, text=text, payload=payload)
