"""Secrets at rest: client secrets, tokens and Magento credentials are stored sealed.

A sealed value is `fernet:v1:` + a Fernet token made with FA_SYNC_SECRET_KEY. Older keys
(FA_SYNC_SECRET_KEYS_OLD, comma-separated) still open values until `fa-sync secrets rotate-key`
re-seals them with the current key. Plain values (from versions before this) are opened only
by the migration box, which seals them (`fa-sync db migrate`, and the daemon's start-up).

Without a key nothing secret can be stored, and a database holding secrets is refused at start:
the one exception is the embedded database (no DATABASE_URL: the demo, a try-out), whose key is
generated once and kept next to its data directory, mode 0600.

The box is built once in open_services() and passed in; no module state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from daemon.db.pool import translated
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow, MagentoConnectionRow
from daemon.errors import ConfigError
from daemon.settings import Settings

PREFIX = "fernet:v1:"
#: Columns holding secrets, per table (the only ones sealed).
SECRET_COLUMNS = {
    "freeagent_client": ("client_secret", "access_token", "refresh_token"),
    "magento_connection": ("access_token", "consumer_secret", "access_token_secret"),
    "magento_webhook": ("secret", "auth_secret"),
}
NO_KEY = (
    "FA_SYNC_SECRET_KEY is not set: fa-sync stores no secret without it "
    "(see README, Secrets at rest)"
)
WRONG_KEY = (
    "FA_SYNC_SECRET_KEY does not open the secrets stored in the database "
    "(put the key they were sealed with in FA_SYNC_SECRET_KEYS_OLD)"
)
PLAIN = "a secret is stored in plain text: set FA_SYNC_SECRET_KEY and run `fa-sync db migrate`"

Row = TypeVar("Row", FreeAgentClientRow, MagentoConnectionRow)


def is_sealed(value: str | None) -> bool:
    """Whether a stored value is sealed (not plain text, not empty)."""
    return value is not None and value.startswith(PREFIX)


def _fernet(key: str, what: str) -> Fernet:
    try:
        return Fernet(key.strip().encode())
    except ValueError:
        raise ConfigError(f"{what} is not a Fernet key (32 url-safe base64 bytes)") from None


@dataclass(frozen=True)
class SecretBox:
    """Seals and opens stored secrets with the current key (and old ones, to open only)."""

    keys: MultiFernet | None  #: current key first; None: no key configured
    allow_plain: bool = False  #: open plain values as they are (the migration box only)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box of FA_SYNC_SECRET_KEY and FA_SYNC_SECRET_KEYS_OLD (no key: a box that
        refuses to seal or open anything)."""
        if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
            return cls(None)
        current = _fernet(settings.secret_key.get_secret_value(), "FA_SYNC_SECRET_KEY")
        old_text = settings.secret_keys_old.get_secret_value() if settings.secret_keys_old else ""
        old = [
            _fernet(k, "a key in FA_SYNC_SECRET_KEYS_OLD") for k in old_text.split(",") if k.strip()
        ]
        return cls(MultiFernet([current, *old]))

    @property
    def has_key(self) -> bool:
        return self.keys is not None

    def migrating(self) -> SecretBox:
        """The same keys, opening plain values too (to seal them)."""
        return replace(self, allow_plain=True)

    def seal(self, plain: str) -> str:
        """The value as stored: prefix + Fernet token with the current key."""
        if self.keys is None:
            raise ConfigError(NO_KEY)
        return PREFIX + self.keys.encrypt(plain.encode()).decode("ascii")

    def seal_optional(self, plain: str | None) -> str | None:
        return None if plain is None else self.seal(plain)

    def open(self, stored: str) -> str:
        """The secret of a stored value; ConfigError when no key, or no key fits."""
        if not is_sealed(stored):
            if self.allow_plain:
                return stored
            raise ConfigError(PLAIN)
        if self.keys is None:
            raise ConfigError(f"the database holds sealed secrets but {NO_KEY}")
        try:
            return self.keys.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError(WRONG_KEY) from None

    def open_optional(self, stored: str | None) -> str | None:
        return None if stored is None else self.open(stored)

    def reseal(self, stored: str | None) -> str | None:
        """The value sealed with the current key (plain ones only while migrating)."""
        return None if stored is None else self.seal(self.open(stored))

    def opened(self, row: Row) -> Row:
        """A record with its secret columns opened."""
        table = "freeagent_client" if isinstance(row, FreeAgentClientRow) else "magento_connection"
        secret: dict[str, Any] = {
            c: self.open_optional(getattr(row, c)) for c in SECRET_COLUMNS[table]
        }
        return replace(row, **secret)


def embedded_key_path(data_dir: Path) -> Path:
    """Where the embedded database's own key is kept."""
    return data_dir.parent / f"{data_dir.name}.secret-key"


def embedded_key(data_dir: Path) -> str:
    """The embedded database's own key, created once beside its data directory (mode 0600)."""
    path = embedded_key_path(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
    return path.read_text().strip()


def box_for(settings: Settings, *, embedded: bool) -> SecretBox:
    """The process's box: FA_SYNC_SECRET_KEY, else the embedded database's own key."""
    if embedded and not (settings.secret_key and settings.secret_key.get_secret_value().strip()):
        key = SecretStr(embedded_key(settings.data_dir))
        settings = settings.model_copy(update={"secret_key": key})
    return SecretBox.from_settings(settings)


_LOCK_AND_SET = {
    "freeagent_client": ("client_secrets_lock", "client_secrets_set"),
    "magento_connection": ("connection_secrets_lock", "connection_secrets_set"),
    "magento_webhook": ("webhook_secrets_lock", "webhook_secrets_set"),
}


async def reseal_all(pool: asyncpg.Pool, box: SecretBox, *, plain_only: bool) -> int:
    """Seal stored secrets with the current key, in one transaction; the count of values
    changed. plain_only: leave sealed values alone (migration); else every value (rotation)."""
    if box.keys is None:
        raise ConfigError(NO_KEY)
    opener = box.migrating()
    changed = 0
    async with pool.acquire() as conn, translated("sealing secrets"), conn.transaction():
        for table, (lock, update) in _LOCK_AND_SET.items():
            for row in await conn.fetch(QUERIES[lock]):
                old = [row[c] for c in SECRET_COLUMNS[table]]
                new = [
                    v if v is None or (plain_only and is_sealed(v)) else opener.reseal(v)
                    for v in old
                ]
                if new != old:
                    changed += sum(a != b for a, b in zip(old, new, strict=True))
                    await conn.execute(QUERIES[update], row["id"], *new)
    return changed


async def prepare_secrets(pool: asyncpg.Pool, box: SecretBox) -> int:
    """At start: seal plain values (when a key is set), then refuse a database whose secrets
    this box cannot open (sealed but no key or the wrong key; plain but no key). Returns the
    count of values sealed."""
    sealed = await reseal_all(pool, box, plain_only=True) if box.has_key else 0
    async with translated("reading secrets"):
        rows = [
            *await pool.fetch(QUERIES["client_list"]),
            *await pool.fetch(QUERIES["connection_list"]),
            *await pool.fetch(QUERIES["webhook_secrets"]),
        ]
    columns = {c for names in SECRET_COLUMNS.values() for c in names}
    for value in (row.get(c) for row in rows for c in columns):
        if value is not None:
            box.open(value)
    return sealed
