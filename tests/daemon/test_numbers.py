"""Numbers sent as text: every reader of ids and counts refuses what is not ASCII decimal
digits with a clear None, never an exception. "²" passes str.isdigit() and then makes int()
raise: one such id in a webhook body or a Magento page must not turn into a 500 or a failed
collect."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.clients.freeagent_answers import permission_level
from daemon.clients.magento import _item_id
from daemon.numbers import whole_number
from daemon.systemd import Notifier
from daemon.webhook_payloads import RefusedDelivery, parse_event
from profiles.freeagent_contact_export.clean import small_int

#: Text that is not a decimal number though str.isdigit() (or int()) might take it.
NOT_DECIMAL = ["²", "٣", "١٢", "\uff11\uff12", "1.0", "", " ", "-1", "+1", "1_000", "0x1f"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), ("7", 7), (" 42 ", 42), ("007", 7), (0, 0), (-3, -3), (True, None), (False, None),
     (1.0, None), (None, None), ([1], None)] + [(text, None) for text in NOT_DECIMAL],
)  # fmt: skip
def test_whole_number(value: Any, expected: int | None) -> None:
    assert whole_number(value) == expected


@pytest.mark.parametrize("text", NOT_DECIMAL)
def test_every_reader_refuses_what_is_not_decimal_digits(text: str) -> None:
    assert small_int(text) is None
    assert _item_id({"id": text}, "id") is None
    assert permission_level({"permission_level": text}) is None
    assert Notifier.from_environ({"WATCHDOG_USEC": text}).watchdog_seconds is None
    body = f'{{"event": "customer.saved", "customer_id": "{text}"}}'.encode()
    with pytest.raises(RefusedDelivery, match="no customer id"):
        parse_event(body)


def test_readers_still_read_digits_sent_as_text() -> None:
    assert small_int(" 12 ") == 12 and _item_id({"id": "12"}, "id") == 12
    assert permission_level({"permission_level": "3"}) == 3
    assert Notifier.from_environ({"WATCHDOG_USEC": "2000000"}).watchdog_seconds == 2.0
    assert parse_event(b'{"event": "customer.saved", "customer_id": "12"}').customer_id == 12
