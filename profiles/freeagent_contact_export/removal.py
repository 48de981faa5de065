"""Mirror: what becomes of a FreeAgent contact when its Magento customer is gone.

A customer counts as deleted only when a complete full pass no longer lists it AND
`GET /V1/customers/{id}` answers 404 (`confirm_deleted`); a partial or failed listing, or any
other answer, never deletes. The row is then queued with `deleted_in_magento`, and the export
applies the profile's delete_policy through `decide_removal` (pure: the dry run uses it too):

    policy none ... row `removed`, contact left as it is
    policy hide ... PUT status Hidden, row `hidden`
    policy delete . DELETE, row `deleted`; any 4xx (FreeAgent refuses contacts with invoices,
                    estimates, projects or bills; the status is undocumented, 403 was seen)
                    -> hidden instead, row `hidden` saying why
    a contact FreeAgent answers 404 or 410 for (deleted there already): row `removed`, and
    the contact leaves the index
    whatever the policy, a contact another live ledger row still uses (a shared e-mail,
    another website, a guest, another profile) is left alone: row `removed`, naming that row.

A webhook for a deleted customer calls `queue_deleted_customer`, which confirms with Magento
before queueing, exactly like the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from daemon.db.queries import QUERIES
from daemon.db.records import EntityStatus, Profile
from daemon.errors import RejectedRecord
from daemon.failures import GONE
from daemon.logs import get_logger
from profiles.freeagent_contact_export.config import (
    ContactExportSettings,
    DeletePolicy,
    load_settings,
)

log = get_logger(__name__)


def effective_delete_policy(api_behaviour: str, cfg: ContactExportSettings) -> DeletePolicy | None:
    """The policy in force, or None when deleted customers are not looked for at all.

    `api_behaviour: mirror` uses `delete_policy` (none when unset). The deprecated
    `events.hide_deleted_customers: true` reads as `delete_policy: hide` (also outside mirror,
    as it always did); an explicit `delete_policy` wins over it.
    """
    alias: DeletePolicy | None = "hide" if cfg.events.hide_deleted_customers else None
    if api_behaviour == "mirror":
        return cfg.delete_policy or alias or "none"
    if alias is not None:
        return cfg.delete_policy or alias
    return None


@dataclass(frozen=True)
class Removal:
    """What to do with the contact of a row whose customer is gone, and why."""

    action: Literal["keep", "hide", "delete"]  #: keep: close the row, leave the contact
    status: EntityStatus  #: the row's outcome if the action succeeds as planned
    reason: str
    gone: bool = False  #: FreeAgent answered 404/410: the contact no longer exists there

    def as_json(self, policy: str) -> dict[str, str]:
        """metadata.removal on the row."""
        return {"policy": policy, "action": self.action, "reason": self.reason}


def decide_removal(
    policy: DeletePolicy, *, url: str | None, still_used_by: tuple[int, str] | None
) -> Removal:
    """The removal for one row: pure, so the export and the dry run decide alike."""
    if url is None:
        return Removal("keep", EntityStatus.REMOVED, "customer deleted in Magento; no contact")
    if still_used_by is not None:
        row_id, key = still_used_by
        return Removal(
            "keep",
            EntityStatus.REMOVED,
            f"customer deleted in Magento; contact kept: still used by ledger row {row_id} ({key})",
        )
    if policy == "hide":
        return Removal("hide", EntityStatus.HIDDEN, "customer deleted in Magento; contact hidden")
    if policy == "delete":
        return Removal(
            "delete", EntityStatus.DELETED, "customer deleted in Magento; contact deleted"
        )
    kept = "customer deleted in Magento; contact kept (delete_policy none)"
    return Removal("keep", EntityStatus.REMOVED, kept)


async def live_user(db: Any, url: str | None, entity_id: int) -> tuple[int, str] | None:
    """Another ledger row, of any profile, whose customer is not deleted and that uses `url`."""
    if url is None:
        return None
    row = await db.fetchrow(QUERIES["entity_url_live_user"], url, entity_id)
    return (int(row["id"]), str(row["source_key"])) if row else None


async def apply_removal(freeagent: Any, removal: Removal, url: str | None) -> Removal:
    """Carry out a removal; returns what was actually done (a refused DELETE is a hide)."""
    if url is None or removal.action == "keep":
        return removal
    try:
        if removal.action == "hide":
            await freeagent.hide_contact(url)
            return removal
        if await freeagent.delete_contact(url) == "hidden":
            return Removal(
                "hide",
                EntityStatus.HIDDEN,
                "customer deleted in Magento; FreeAgent refused to delete the contact (it has "
                "invoices, estimates, projects or bills): hidden instead",
            )
    except RejectedRecord as exc:
        if exc.status not in GONE:
            raise
        gone = "customer deleted in Magento; contact already gone from FreeAgent"
        return Removal("keep", EntityStatus.REMOVED, gone, gone=True)
    return removal


async def remove_contact(
    pool: asyncpg.Pool, freeagent: Any, client_id: int, policy: DeletePolicy, row: Any
) -> Removal:
    """Decide and carry out the removal of one row's contact; a contact deleted now, or found
    gone already, also leaves the contact index. Returns what was done, for the row."""
    url = row.freeagent_url
    planned = decide_removal(policy, url=url, still_used_by=await live_user(pool, url, row.id))
    done = await apply_removal(freeagent, planned, url)
    if url and (done.status is EntityStatus.DELETED or done.gone):
        await pool.execute(QUERIES["fa_contact_forget"], client_id, url)
    return done


async def confirm_deleted(magento: Any, customer_id: int) -> bool | None:
    """True only when Magento answers 404 for the customer; False when it has it; None when
    the answer was anything else (then nothing is judged)."""
    try:
        return await magento.get_customer(customer_id) is None
    except RejectedRecord as exc:
        log.warning("customer_delete_check_refused", customer_id=customer_id, status=exc.status)
        return None


async def queue_deleted_customer(
    pool: asyncpg.Pool, magento: Any, profile: Profile, customer_id: int
) -> int | None:
    """A customer reported deleted (a webhook): when the profile removes deleted customers,
    confirm with Magento (404 only), then queue its row for the delete policy. Returns the
    row id, or None when nothing was queued."""
    cfg = load_settings(profile.name, profile.settings)
    if effective_delete_policy(profile.api_behaviour, cfg) is None:
        return None
    row_id = await pool.fetchval(QUERIES["entity_by_customer"], profile.id, customer_id)
    if row_id is None or await confirm_deleted(magento, customer_id) is not True:
        return None
    await pool.execute(QUERIES["entity_mark_deleted"], row_id)
    log.info("customer_deleted_in_magento", customer_id=customer_id, entity_id=row_id)
    return int(row_id)
