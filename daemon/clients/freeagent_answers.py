"""FreeAgent's answers read defensively: the member asked for, a listing page, a create.

FreeAgent (or a proxy in front of it) has answered XML, HTML, `null` members and creates
without a URL; none of it may be taken for an empty list or a finished create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yarl import URL

from daemon.clients.transport import Response
from daemon.errors import ApiError, EndpointError, OutcomeUnknown
from daemon.numbers import whole_number

SERVICE = "freeagent"
#: Pages one listing may take (10 000 pages of 100 = a million contacts): past this the
#: endpoint is taken to be looping (a `next` link that never ends) and the listing fails.
MAX_PAGES = 10_000


def check_progress(page: Any, pages: int, next_url: str) -> None:
    """Refuse a listing that cannot end: FreeAgent's last page has no `next`, so an empty page
    with one, or a page count past MAX_PAGES, means the endpoint is misbehaving."""
    where = URL(next_url).with_query(None)
    if not page:
        raise ApiError(
            f"FreeAgent GET {where}: an empty page links to a next page; listing stopped",
            service=SERVICE,
        )
    if pages >= MAX_PAGES:
        raise ApiError(
            f"FreeAgent GET {where}: more than {MAX_PAGES} pages; listing stopped",
            service=SERVICE,
        )


def contact_list(response: Response) -> list[Any]:
    """A listing page's contacts; `null`, a string or an object there is not an empty page."""
    page = member(response, "contacts")
    if not isinstance(page, list):
        raise EndpointError(
            f"FreeAgent listed contacts as {type(page).__name__}, not a JSON list; "
            "check the client's base URL",
            status=response.status,
            service=SERVICE,
        )
    return page


def member(response: Response, key: str) -> Any:
    """body[key] of a JSON object answer; FreeAgent has answered XML/HTML by mistake."""
    body = response.body
    if not isinstance(body, dict) or key not in body:
        # Not a hiccup of one record: a proxy, a login page or a wrong base URL answers so.
        kind = response.headers.get("Content-Type", "no content type")
        raise EndpointError(
            f"FreeAgent answered {response.status} ({kind}) without a JSON {key!r}; "
            "check the client's base URL",
            status=response.status,
            body=body if isinstance(body, dict) else None,
            service=SERVICE,
        )
    return body[key]


def permission_level(user: Mapping[str, Any]) -> int | None:
    """users/me's permission_level (0-8) as a number; None when it is absent or unreadable.

    The docs' types are not a contract (reference §9.6): the level may come as a JSON number,
    as text ("2") or not at all. Only whole, non-negative numbers and their decimal text are
    read; anything else is None, which the permission gate refuses rather than guesses.
    """
    value = user.get("permission_level")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    level = whole_number(value)  # a JSON true is not a level
    return level if level is not None and level >= 0 else None


def created_contact(response: Response, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The created contact with its URL; the Location header when the body lacks it."""
    body = response.body
    contact = body.get("contact") if isinstance(body, dict) else None
    result = dict(contact) if isinstance(contact, dict) else dict(payload)
    url = result.get("url")
    if not isinstance(url, str) or not url:
        url = response.headers.get("Location")
    if not url:
        raise OutcomeUnknown(
            f"FreeAgent answered {response.status} to a create without the contact's URL; "
            "the contact may have been created: reconcile before creating again",
            status=response.status,
            service=SERVICE,
        )
    result["url"] = url
    return result
