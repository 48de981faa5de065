"""A refresh token FreeAgent refuses is recorded, so `fa-sync status` can say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from daemon.clients.oauth import TokenSet
from daemon.db.queries import QUERIES
from daemon.errors import AuthError

from .conftest import MakeFreeAgent


async def _reauth_reason(pool: asyncpg.Pool) -> str | None:
    rows = await pool.fetch(QUERIES["status_clients"])
    return rows[0]["reauth_reason"]


@pytest.mark.parametrize("as_401", [True, False])
async def test_invalid_grant_flags_the_client_until_new_tokens(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, as_401: bool
) -> None:
    """invalid_grant marks the client as needing re-authorisation, whether FreeAgent sends it
    with 401 or 400; a new pair clears it."""
    rig = await make_freeagent(access_expires_in=-10)
    rig.state.refused_grants_401 = as_401
    assert await _reauth_reason(pool) is None
    rig.state.rotate("demo-client", rig.row.refresh_token or "")  # someone else used it
    with pytest.raises(AuthError):
        await rig.client.users_me()
    reason = await _reauth_reason(pool)
    assert reason and "refresh token refused" in reason
    assert rig.row.refresh_token not in reason
    now = datetime.now(UTC)
    await rig.tokens.save(TokenSet("new-access", "new-refresh", now + timedelta(hours=1), None))
    assert await _reauth_reason(pool) is None


async def test_refused_client_credentials_do_not_flag_the_client(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent
) -> None:
    """A 401 without invalid_grant refuses the client id/secret, not the grant: approving
    the app again would not help, so the client is not flagged for it."""
    rig = await make_freeagent(access_expires_in=-10)
    rig.state.clients["demo-client"] = "rotated-secret"
    with pytest.raises(AuthError, match="client id or secret refused"):
        await rig.client.users_me()
    assert await _reauth_reason(pool) is None
