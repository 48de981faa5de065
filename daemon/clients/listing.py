"""Whether a keyset listing of Magento read every record Magento says matches.

MagentoClient reads every list by keyset (`entity_id gt <last id>`, page 1, sorted by
entity_id); this module judges each page against Magento's own count, so callers know whether
they may judge deletions (`complete`) and move a watermark (`short` empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ListingReport:
    """Whether a keyset scan read every record Magento says matches.

    With keyset paging every page's `total_count` counts the matches past the last id seen,
    so two pages in a row also say how many records lie between them: a page listing fewer
    than that hid some (a plugin filtering its collection after the count, a record the API
    cannot render). Those, and a scan that ends before Magento's count is used up, are
    `short`: the caller must not move a watermark past records it never saw.
    """

    def __init__(self) -> None:
        self.complete = False  #: True only when the scan read to the end and missed nothing
        self.gaps: list[str] = []  #: why it may have missed records
        #: Records Magento counted that the scan never listed (a subset of `gaps`).
        self.short: list[str] = []
        #: The previous page: (after id, total_count, records it listed).
        self._previous: tuple[int, int, int] | None = None

    def gap(self, reason: str) -> None:
        """The scan may have missed records."""
        self.gaps.append(reason)
        self.complete = False

    def missed(self, reason: str) -> None:
        """Magento counts records the scan did not list."""
        self.short.append(reason)
        self.gap(reason)

    def read_on(self, after: int, ids: Sequence[int | None], total_count: Any, size: int) -> bool:
        """Account for the page read after id `after` (its items' ids, None where an item has
        none); True while Magento says more remain past it, and the page moved on."""
        count = total_count if type(total_count) is int else None
        listed = sum(1 for i in ids if i is None or i > after)
        fresh = any(i is not None and i > after for i in ids)
        self._check_between(after, count, listed)
        if count is not None and listed >= count:
            self.complete = not self.gaps
            return False
        if ids and not fresh:
            self.missed(f"page after id {after} repeated an earlier one")
            return False
        if count is None:
            if len(ids) >= size:
                return True  # a full page: read on; only a short one can end the scan
            self.missed(f"listing ended after id {after} without a total_count to check it by")
            return False
        if not ids:
            self.missed(f"Magento counts {count} more record(s) after id {after} but lists none")
            return False
        return True

    def _check_between(self, after: int, count: int | None, listed: int) -> None:
        """Records counted between the previous page's start and this one's that no page
        listed."""
        previous, self._previous = self._previous, None
        if count is None:
            return
        if previous is not None:
            start, counted, shown = previous
            hidden = counted - count - shown
            if hidden > 0:
                self.missed(
                    f"{hidden} record(s) Magento counts after id {start} up to id {after} "
                    "were not listed"
                )
        self._previous = (after, count, listed)
