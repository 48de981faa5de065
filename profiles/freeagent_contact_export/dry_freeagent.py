"""A FreeAgent client for dry runs: reads go to FreeAgent, writes are recorded, never sent.

Wraps the real client, so reads (the approving user, the company, contact listings) are real
requests through the user's rate budget. A create answers with a made-up contact URL
(`.../contacts/dry-run-N`) carrying what was sent, so the rest of the run (the index, a second
row of the same person linking to it) behaves as after a real create. A method not known to be
a read or a simulated write is refused rather than passed through: a write added to the real
client later must never slip through a dry run.

What it cannot know is what FreeAgent alone decides: it refuses only what FreeAgent's
documented rules (reference §4) and fa-sync's own assumptions certainly refuse
(`predicted_refusal`); any other 422, a 404 on a contact deleted in FreeAgent since the index
was read, a DELETE refused for a contact with history, and transient errors (429, 5xx) show
up in the real run only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from daemon.errors import RejectedRecord
from profiles.freeagent_contact_export.countries import FREEAGENT_LOCALES
from profiles.freeagent_contact_export.models import MAX_TEXT

#: Methods of the real client that only read; anything else must be simulated here.
READS = frozenset(
    {"users_me", "company", "business_categories", "iter_contacts", "budget", "api_base"}
)
#: By the client's naming convention these only read (get_contact, iter_contacts...).
READ_PREFIXES = ("get_", "iter_", "list_")
#: Documented value lists (reference §4).
CHOICES: Mapping[str, frozenset[str]] = {
    "status": frozenset({"Active", "Hidden"}),
    "charge_sales_tax": frozenset({"Auto", "Always", "Never"}),
    "locale": frozenset(FREEAGENT_LOCALES),
}
#: Not an e-mail address by any validator's reading: no single @ between non-empty parts, or
#: a space or comma inside (FreeAgent's exact rule is undocumented; this is the sure part).
_NOT_AN_EMAIL = re.compile(r"^(?![^@\s,]+@[^@\s,]+$)")


def predicted_refusal(payload: Mapping[str, Any], existing: Mapping[str, Any]) -> str | None:
    """Why FreeAgent would certainly refuse this write, or None when it may accept it."""
    merged = {**existing, **payload}
    problems = [
        f"{name} {value!r:.40} is not one of FreeAgent's values"
        for name, allowed in CHOICES.items()
        if (value := payload.get(name)) not in (None, "") and value not in allowed
    ]
    problems += [
        f"{name} is longer than {MAX_TEXT} characters"
        for name, value in payload.items()
        if isinstance(value, str) and len(value) > MAX_TEXT
    ]
    email = payload.get("email")
    if isinstance(email, str) and email and _NOT_AN_EMAIL.match(email):
        problems.append(f"email {email[:60]!r} is not an e-mail address")
    if not str(merged.get("organisation_name") or "").strip() and not all(
        str(merged.get(name) or "").strip() for name in ("first_name", "last_name")
    ):
        problems.append("organisation_name or first_name and last_name are required")
    return "; ".join(problems) or None


@dataclass(frozen=True)
class Write:
    """One write a dry run did not send."""

    kind: Literal["create", "update", "hide", "delete"]
    url: str
    body: Mapping[str, Any]


@dataclass
class DryRunFreeAgent:
    """The real client's reads; its writes recorded in `writes` instead of sent."""

    real: Any
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    writes: list[Write] = field(default_factory=list)
    #: Contacts this dry run pretended to create, by their made-up URL.
    created: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name in READS or name.startswith(READ_PREFIXES):
            return getattr(self.real, name)
        raise AttributeError(
            f"dry run: FreeAgent client method {name!r} is not known to be read-only; "
            "add it to the dry-run client before using it"
        )

    async def get_contact(self, url: str) -> dict[str, Any] | None:
        if url in self.created:
            return dict(self.created[url])
        return dict(await self.real.get_contact(url) or {}) or None

    async def create_contact(
        self, payload: Mapping[str, Any], *, before_send: Any = None
    ) -> dict[str, Any]:
        self._refuse_if_sure(payload, {})
        url = f"{self.real.api_base}contacts/dry-run-{len(self.created) + 1}"
        stamp = self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        contact = {**payload, "url": url, "created_at": stamp, "updated_at": stamp}
        self.created[url] = contact
        self.writes.append(Write("create", url, dict(payload)))
        return dict(contact)

    async def update_contact(self, url: str, payload: Mapping[str, Any]) -> None:
        self._refuse_if_sure(payload, self.created.get(url, {"first_name": "?", "last_name": "?"}))
        if url in self.created:
            self.created[url].update(payload)
        self.writes.append(Write("update", url, dict(payload)))

    async def hide_contact(self, url: str) -> None:
        self.writes.append(Write("hide", url, {"status": "Hidden"}))

    async def delete_contact(self, url: str) -> Literal["deleted", "hidden"]:
        """Recorded as a delete: whether FreeAgent would refuse it (a contact with history,
        then hidden) is known only to FreeAgent."""
        self.writes.append(Write("delete", url, {}))
        return "deleted"

    @staticmethod
    def _refuse_if_sure(payload: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
        reason = predicted_refusal(payload, existing)
        if reason is not None:
            raise RejectedRecord(
                f"FreeAgent would refuse this contact (predicted by the dry run): {reason}",
                status=422,
                service="freeagent",
            )
