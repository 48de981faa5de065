"""Reading FreeAgent's paged contact listing: Link headers, next URLs, and why newest first.

Pure helpers for FreeAgentClient.iter_contacts; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from yarl import URL

# Why listings are read newest first. Page numbers shift when the list changes while it is
# read (reference §6). Oldest first, a contact updated mid-scan moves to the end: every
# contact after its old place moves one earlier, and the one crossing onto a page already
# read is skipped; its updated_at is old, so no later updated_since read lists it either,
# and it is lost until a full sweep. Newest first, the updated contact moves to the front,
# onto the first page, already read: the others move one later (read twice, never skipped),
# and its new updated_at is after the first page was read, so the catch-up listing
# (updated_since = the first page's newest) lists it. What changes after the catch-up's own
# first page is newer than anything this scan indexed, so the index's next incremental read
# (resolve.py: from the newest indexed updated_at, less REFRESH_OVERLAP) lists it. A
# deletion still moves contacts earlier whatever the sort: resolve.py's periodic sweep
# (a full listing, then a lookup of each indexed contact it did not list) repairs that.
LIST_SORT = "-updated_at"

# Link: <https://…?page=2>; rel="next", <…>; rel='last'  (the live API uses single quotes)
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;,]+))""", re.I)


def parse_link_header(values: list[str]) -> dict[str, str]:
    """rel -> URL from one or more Link headers; both quote styles, several rels per link."""
    links: dict[str, str] = {}
    for value in values:
        for match in _LINK.finditer(value):
            rel = _REL.search(match.group(2))
            if rel is None:
                continue
            for name in next(g for g in rel.groups() if g is not None).split():
                links.setdefault(name.lower(), match.group(1).strip())
    return links


def with_params(url: str, params: Mapping[str, str]) -> str:
    """`url` with each of `params` it lacks added; the ones it has keep its values.

    The reference's example links carry only page and per_page (§6): a next page read
    without our view, sort or updated_since would be a page of another listing."""
    target = URL(url, encoded=True)
    missing = {k: v for k, v in params.items() if k not in target.query}
    return str(target.update_query(missing)) if missing else url


def newest(page: list[dict[str, Any]]) -> datetime | None:
    """The latest updated_at on a page (FreeAgent: ISO 8601 UTC with a Z)."""
    moments = []
    for contact in page:
        value = contact.get("updated_at")
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is not None:
                moments.append(moment)
    return max(moments, default=None)


def format_since(moment: datetime) -> str:
    """ISO 8601 UTC for updated_since; truncating to the second only widens the window."""
    if moment.tzinfo is None:
        raise ValueError(f"updated_since {moment!r} has no timezone; pass an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def changed(page: list[dict[str, Any]], yielded: dict[str, Any]) -> list[dict[str, Any]]:
    """The contacts of a page not yet yielded in this form (`yielded`: url -> updated_at of
    the copy yielded, updated here). A later, different copy of a contact comes again: it
    changed while the listing was read, and the last copy is the newest."""
    fresh = []
    for contact in page:
        url = contact.get("url")
        if not isinstance(url, str):
            fresh.append(contact)  # nothing to tell it from another by
            continue
        version = contact.get("updated_at")
        if url in yielded and yielded[url] == version:
            continue
        yielded[url] = version
        fresh.append(contact)
    return fresh
