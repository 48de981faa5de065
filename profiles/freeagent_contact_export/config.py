"""The profile's own options: the JSONB `settings` column, validated.

Unknown keys are refused, so a typo in a hand-edited row is reported instead of ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from daemon.errors import ConfigError
from daemon.logs import get_logger
from profiles.freeagent_contact_export.identity import IdentityMode
from profiles.freeagent_contact_export.models import ContactOptions

log = get_logger(__name__)

#: A year: the longest sensible gap between full collects.
MAX_FULL_COLLECT_HOURS = 8760
#: Magento store and website ids are smallint unsigned.
MagentoId = Annotated[int, Field(ge=0, le=65535)]
#: What mirror does with the contact of a customer deleted in Magento.
DeletePolicy = Literal["none", "hide", "delete"]
#: What an update does with a contact edited in FreeAgent since fa-sync last wrote it.
DriftPolicy = Literal["overwrite", "keep", "review"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactDefaults(_Strict):
    """Contact Configuration: values every exported contact gets."""

    status: Literal["Active", "Hidden"] = "Active"
    uses_contact_invoice_sequence: bool | None = None
    contact_name_on_invoices: bool | None = None
    default_payment_terms_in_days: int | None = Field(default=None, ge=0, le=365)
    charge_sales_tax: Literal["Auto", "Always", "Never"] | None = None
    locale: str | None = None


class StoreSettings(_Strict):
    """Store Configuration: which stores to export, and each store's invoice locale."""

    #: Export only customers, and guest buyers whose order's store view is, in store_ids /
    #: website_ids (guests are skipped when the store views cannot be read).
    restrict: bool = False
    store_ids: list[MagentoId] = []
    website_ids: list[MagentoId] = []
    #: Magento store id -> FreeAgent locale ("fr") or Magento locale ("fr_FR").
    locales: dict[MagentoId, str] = {}
    #: Other stores take their Magento locale (storeConfigs) in FreeAgent's spelling; off:
    #: only `locales` and the default apply (and storeConfigs is not read).
    locales_from_magento: bool = True


class EventSettings(_Strict):
    """Event Configuration."""

    #: Put customers new to the ledger in the export queue (off: only known customers update).
    queue_new_customers: bool = True
    #: Deprecated: read as `delete_policy: hide` (see removal.effective_delete_policy).
    hide_deleted_customers: bool = False


class LogSettings(_Strict):
    """Log Configuration: request/response logs (secrets scrubbed) under FA_SYNC_REQUEST_LOG_DIR."""

    log_requests: bool = False
    log_responses: bool = False


class ContactExportSettings(_Strict):
    """Everything in profile.settings for freeagent_contact_export."""

    contact: ContactDefaults = ContactDefaults()
    store: StoreSettings = StoreSettings()
    events: EventSettings = EventSettings()
    logging: LogSettings = LogSettings()
    #: Also export guest-checkout buyers (one contact per e-mail).
    include_guests: bool = True
    #: Re-read customers updated this long before the watermark (clock skew, late commits).
    collect_overlap_seconds: int = Field(default=300, ge=0, le=86400)
    #: Force a full collect this often: address-only edits do not move Magento's updated_at.
    #: Bounded (1 hour to a year, finite): a huge value overflowed the date maths every run.
    full_collect_every_hours: float | None = Field(
        default=24, ge=1, le=MAX_FULL_COLLECT_HOURS, allow_inf_nan=False
    )
    #: api_behaviour mirror: a customer deleted in Magento leaves its contact as it is (none,
    #: the default), hides it, or deletes it (hidden when FreeAgent refuses).
    delete_policy: DeletePolicy | None = None
    #: A contact edited in FreeAgent since our last write: overwrite it, keep the edited fields,
    #: or hold the row for review.
    on_drift: DriftPolicy = "overwrite"
    #: Who is the same contact (identity.py): account | email_per_website | email.
    identity: IdentityMode = IdentityMode.ACCOUNT
    #: A row without a usable e-mail: create its contact, or wait for a person (review) when
    #: a FreeAgent contact has the same name. Never linked automatically either way.
    unmatched: Literal["create", "review"] = "create"

    @model_validator(mode="before")
    @classmethod
    def _deprecated_share_contacts_by_email(cls, raw: Any) -> Any:
        """`share_contacts_by_email` (before `identity`): true is `email`, false `account`."""
        if not isinstance(raw, dict) or "share_contacts_by_email" not in raw:
            return raw
        data = dict(raw)
        shared = data.pop("share_contacts_by_email")
        if "identity" in data:
            raise ValueError("share_contacts_by_email is replaced by identity: give identity only")
        if not isinstance(shared, bool):
            raise ValueError("share_contacts_by_email must be true or false (use identity)")
        data["identity"] = IdentityMode.EMAIL if shared else IdentityMode.ACCOUNT
        return data

    def contact_options(self) -> ContactOptions:
        """The pure mapping's view of these settings."""
        return ContactOptions.model_validate(
            {**self.contact.model_dump(), "store_locales": dict(self.store.locales)}
        )


def load_settings(profile_name: str, raw: dict[str, object]) -> ContactExportSettings:
    """Validate a profile's settings JSON; ConfigError names the profile and the bad key."""
    if "share_contacts_by_email" in raw:
        log.warning(
            "setting_deprecated", profile=profile_name, setting="share_contacts_by_email",
            use="identity",
        )  # fmt: skip
    try:
        settings = ContactExportSettings.model_validate(raw)
        settings.contact_options()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"profile {profile_name}: invalid settings: {problems}") from exc
    return settings
