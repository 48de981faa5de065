"""Profile settings checked against the FreeAgent company they export to.

`fa-sync client config NAME` caches the company (GET /v2/company) and the approving user
(GET /v2/users/me) on the client row. These checks read that cache: they never send a
request, and they warn rather than refuse (the cache may be stale, and FreeAgent itself
decides in the end). An unknown locale is not checked here: settings refuse it outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daemon.clients.freeagent_answers import permission_level
from profiles.freeagent_contact_export.config import ContactExportSettings

#: FreeAgent's permission level needed to read and write contacts' e-mail and address.
CONTACT_DETAILS_LEVEL = 3


def settings_warnings(
    settings: ContactExportSettings, config: Mapping[str, Any], client_name: str
) -> list[str]:
    """What in these settings the company or user in `config` would not go along with."""
    company = config.get("company")
    user = config.get("user")
    warnings: list[str] = []
    if isinstance(company, Mapping):
        warnings += _sales_tax(settings, company)
    if isinstance(user, Mapping):
        warnings += _permission(user, client_name)
    return warnings


def _sales_tax(settings: ContactExportSettings, company: Mapping[str, Any]) -> list[str]:
    status = company.get("sales_tax_registration_status")
    if settings.contact.charge_sales_tax != "Always" or not isinstance(status, str):
        return []
    if status == "Registered":
        return []
    tax = company.get("sales_tax_name") or "sales tax"
    return [
        f"contact.charge_sales_tax is Always, but {company.get('name') or 'the company'} is "
        f"not registered for {tax} (FreeAgent says {status!r}): invoices to these contacts "
        f"would charge {tax} the company cannot charge; use Auto or Never"
    ]


def _permission(user: Mapping[str, Any], client_name: str) -> list[str]:
    level = permission_level(user)
    if level is None:
        return [
            f"FreeAgent user {user.get('email') or '?'} of client {client_name} has no "
            f"readable permission level: exports need level {CONTACT_DETAILS_LEVEL} "
            "(Contacts & Projects) or more, and are refused until users/me shows one"
        ]
    if level >= CONTACT_DETAILS_LEVEL:
        return []
    return [
        f"FreeAgent user {user.get('email') or '?'} of client {client_name} has permission "
        f"level {level}: exports need level {CONTACT_DETAILS_LEVEL} (Contacts & Projects) or "
        "more to send e-mail and address, and are refused below it"
    ]
