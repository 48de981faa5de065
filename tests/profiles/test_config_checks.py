"""Profile settings checked against the FreeAgent company and user cached by `client config`."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.freeagent_contact_export.config import load_settings
from profiles.freeagent_contact_export.config_checks import settings_warnings

REGISTERED = {
    "name": "Acme",
    "sales_tax_name": "VAT",
    "sales_tax_registration_status": "Registered",
}
NOT_REGISTERED = {**REGISTERED, "sales_tax_registration_status": "Not registered"}
OWNER = {"email": "owner@example.com", "permission_level": 8}


@pytest.mark.parametrize(
    ("settings", "config", "expected"),
    [
        # Always charging VAT for a company that cannot charge it: the example of issue 8.
        ({"contact": {"charge_sales_tax": "Always"}}, {"company": NOT_REGISTERED}, ["VAT"]),
        # De-registered is not registered either.
        (
            {"contact": {"charge_sales_tax": "Always"}},
            {"company": {**REGISTERED, "sales_tax_registration_status": "De-registered"}},
            ["De-registered"],
        ),
        # A registered company may charge it.
        ({"contact": {"charge_sales_tax": "Always"}}, {"company": REGISTERED}, []),
        # Auto and Never are safe whatever the registration.
        ({"contact": {"charge_sales_tax": "Auto"}}, {"company": NOT_REGISTERED}, []),
        ({"contact": {"charge_sales_tax": "Never"}}, {"company": NOT_REGISTERED}, []),
        # A user below Contacts & Projects cannot see or send e-mail and address.
        ({}, {"user": {**OWNER, "permission_level": 2}}, ["permission level 2"]),
        ({}, {"user": OWNER}, []),
        # The level as text is still read (the docs' types are not a contract).
        ({}, {"user": {**OWNER, "permission_level": "2"}}, ["permission level 2"]),
        ({}, {"user": {**OWNER, "permission_level": "8"}}, []),
        # No level, or one that is not a number: exports are refused, so say so.
        ({}, {"user": {"email": "owner@example.com"}}, ["no readable permission level"]),
        ({}, {"user": {**OWNER, "permission_level": "full"}}, ["no readable permission level"]),
        # Nothing cached, or a body of an unexpected shape: nothing to say.
        ({"contact": {"charge_sales_tax": "Always"}}, {}, []),
        ({"contact": {"charge_sales_tax": "Always"}}, {"company": "?", "user": []}, []),
    ],
)
def test_settings_are_checked_against_the_company(
    settings: dict[str, Any], config: dict[str, Any], expected: list[str]
) -> None:
    """Each warning names what is wrong; settings FreeAgent accepts give none."""
    warnings = settings_warnings(load_settings("p", settings), config, "acme")
    assert len(warnings) == len(expected)
    for warning, words in zip(warnings, expected, strict=True):
        assert words in warning
