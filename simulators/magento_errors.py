"""Errors the Magento simulator answers with, in Magento's webapi error shape.

Magento renders every REST failure as `{"message": <phrase with %placeholders>, "parameters": ...}`:
the placeholders stay in the message and their values travel separately, either as an object
(named `%fieldName`) or as a list (positional `%1`). Clients that show errors must substitute
them; the simulator keeps the same split so that code path gets exercised.
"""

from __future__ import annotations

from typing import Any

#: Production-mode answer for anything that is not a LocalizedException (e.g. SQL errors).
INTERNAL_ERROR = "Internal Error. Details are available in Magento log file. Report ID: %1"


class MagentoError(Exception):
    """A request Magento refuses: HTTP status, message phrase, parameters and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        parameters: dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status  #: HTTP status to answer with
        self.message = message  #: Magento phrase, placeholders not substituted
        self.parameters = parameters  #: values for the placeholders; omitted when None
        self.headers = headers or {}  #: e.g. WWW-Authenticate naming the OAuth problem

    def body(self) -> dict[str, Any]:
        """The JSON body Magento sends; `parameters` is absent rather than null."""
        body: dict[str, Any] = {"message": self.message}
        if self.parameters is not None:
            body["parameters"] = self.parameters
        return body


def route_not_found() -> MagentoError:
    """Unknown path, method or store code: Magento's router answers 404 with this phrase."""
    return MagentoError(404, "Request does not match any route.")


def internal_error(report_id: str) -> MagentoError:
    """A 500 as a production-mode Magento shows it (the real cause only goes to the log)."""
    return MagentoError(500, INTERNAL_ERROR, [f"webapi-{report_id}"])


def invalid_type(value: str, expected: str) -> MagentoError:
    """A query value the service input processor cannot convert (e.g. `pageSize=ten`)."""
    return MagentoError(
        400,
        'The "%value" value\'s type is invalid. The "%type" type was expected. '
        "Verify and try again.",
        {"value": value, "type": expected},
    )
