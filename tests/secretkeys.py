"""The tests' FA_SYNC_SECRET_KEY: settings, fixtures, CLI subprocesses and replicas share it."""

from __future__ import annotations

from cryptography.fernet import Fernet, MultiFernet

from daemon.secretbox import SecretBox

#: A fixed Fernet key (32 bytes, url-safe base64), for tests only.
TEST_SECRET_KEY = "dGVzdC1rZXktZm9yLWZhLXN5bmMtdGVzdHMtb25seSE="


def sealing_box() -> SecretBox:
    """The box of TEST_SECRET_KEY."""
    return SecretBox(MultiFernet([Fernet(TEST_SECRET_KEY)]))
