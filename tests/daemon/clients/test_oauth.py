"""OAuth 2 with FreeAgent: approval URL, code exchange, and refreshes that rotate safely."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from daemon.clients.oauth import TokenStore, approve_url, exchange_code, record_identity
from daemon.clients.transport import Transport
from daemon.db.queries import QUERIES
from daemon.errors import AuthError
from simulators.freeagent import FreeAgentState
from tests.fakes import FakeClock

from .conftest import BOX, FreeAgentRig, MakeFreeAgent


async def _row(pool: asyncpg.Pool, client_id: int) -> dict[str, object]:
    """The client row with its tokens opened."""
    row = dict(await pool.fetchrow(QUERIES["client_get"], client_id))
    return {**row, **{k: BOX.open_optional(row[k]) for k in ("access_token", "refresh_token")}}


def test_approve_url_carries_the_documented_parameters(freeagent: FreeAgentRig) -> None:
    """approve_app gets client_id, response_type=code, redirect_uri and state."""
    url = approve_url(freeagent.row, "xyz")
    parts = urlsplit(url)
    assert url.startswith(f"{freeagent.row.api_base}approve_app?")
    assert parse_qs(parts.query) == {
        "client_id": ["demo-client"],
        "response_type": ["code"],
        "redirect_uri": ["urn:ietf:wg:oauth:2.0:oob"],
        "state": ["xyz"],
    }


async def test_code_exchange_returns_a_token_set(freeagent: FreeAgentRig) -> None:
    """An authorisation code is traded for a pair with absolute expiry times."""
    code = freeagent.state.new_code("demo-client", "urn:ietf:wg:oauth:2.0:oob")
    tokens = await exchange_code(freeagent.transport, freeagent.row, code)
    assert tokens.access_token and tokens.refresh_token
    assert tokens.refresh_expires_at is not None
    assert tokens.access_expires_at < tokens.refresh_expires_at


@pytest.mark.parametrize("as_401", [True, False])
async def test_used_code_is_refused_with_a_reauthorise_hint(
    freeagent: FreeAgentRig, as_401: bool
) -> None:
    """A code used twice is an AuthError telling the operator to approve again, whether
    FreeAgent answers 400 invalid_grant or 401 "HTTP Basic: Access denied."."""
    freeagent.state.refused_grants_401 = as_401
    code = freeagent.state.new_code("demo-client", "urn:ietf:wg:oauth:2.0:oob")
    await exchange_code(freeagent.transport, freeagent.row, code)
    with pytest.raises(AuthError, match="authorisation code refused") as info:
        await exchange_code(freeagent.transport, freeagent.row, code)
    assert "fa-sync client authorize" in str(info.value)


async def test_code_exchange_answered_401_names_code_and_client_credentials(
    freeagent: FreeAgentRig,
) -> None:
    """A 401 to a code exchange cannot tell a used code from a wrong secret (FreeAgent
    answers both alike): the message names both, and never the secret."""
    freeagent.state.clients["demo-client"] = "rotated-secret"  # the app's secret changed
    code = freeagent.state.new_code("demo-client", "urn:ietf:wg:oauth:2.0:oob")
    with pytest.raises(AuthError) as info:
        await exchange_code(freeagent.transport, freeagent.row, code)
    message = str(info.value)
    assert info.value.status == 401
    assert "authorisation code refused, or the client id/secret is wrong" in message
    assert "demo-secret" not in message and "demo-secret" not in repr(info.value.body)


async def test_expired_token_is_refreshed_and_rotation_persisted(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent
) -> None:
    """An expired token is refreshed before use; each new pair is stored, the old refresh
    token is never presented again."""
    clock = FakeClock()
    rig = await make_freeagent(FreeAgentState(clock=clock), access_expires_in=-10)
    before = await _row(pool, rig.row.id)
    await rig.client.users_me()
    middle = await _row(pool, rig.row.id)
    clock.now += 7200  # FreeAgent expires the new token; the 401 makes us refresh again
    await rig.client.users_me()
    after = await _row(pool, rig.row.id)
    assert rig.state.refresh_count == 2
    assert rig.state.reused_refresh_token_attempts == 0
    assert len({before["refresh_token"], middle["refresh_token"], after["refresh_token"]}) == 3
    assert after["token_version"] == before["token_version"] + 2
    assert await rig.tokens.access_token() == after["access_token"]


async def test_token_expiring_within_the_margin_is_refreshed(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent
) -> None:
    """An hour-long token with 30 s left is refreshed before use (60 s margin)."""
    rig = await make_freeagent(access_expires_in=30)
    await pool.execute("UPDATE freeagent_client SET updated_at = now() - interval '1 hour'")
    await rig.client.users_me()
    assert rig.state.refresh_count == 1


async def test_valid_stored_token_is_used_without_refreshing(freeagent: FreeAgentRig) -> None:
    """A fresh token in the row is loaded, not refreshed."""
    await freeagent.client.users_me()
    await freeagent.client.company()
    assert freeagent.state.refresh_count == 0


async def test_concurrent_refreshes_in_two_replicas_refresh_once(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, transport: Transport
) -> None:
    """Token stores of two replicas (and callers within each) refresh exactly once."""
    rig = await make_freeagent(access_expires_in=-10)  # stored access token already expired
    replicas = [TokenStore(pool, transport, rig.row.id, secrets=BOX) for _ in range(2)]
    calls = [store.access_token() for store in replicas for _ in range(3)]
    tokens = await asyncio.wait_for(asyncio.gather(*calls), timeout=10)
    assert len(set(tokens)) == 1
    assert rig.state.refresh_count == 1
    assert rig.state.reused_refresh_token_attempts == 0
    assert (await _row(pool, rig.row.id))["access_token"] == tokens[0]


async def test_short_lived_tokens_are_still_refreshed_once_across_replicas(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, transport: Transport
) -> None:
    """A waiting replica adopts a just-refreshed token even if it lives less than the margin."""
    rig = await make_freeagent(FreeAgentState(access_token_ttl=5), access_expires_in=-10)
    replicas = [TokenStore(pool, transport, rig.row.id, secrets=BOX) for _ in range(3)]
    calls = [store.access_token() for store in replicas for _ in range(2)]
    tokens = await asyncio.wait_for(asyncio.gather(*calls), timeout=10)
    assert len(set(tokens)) == 1
    assert rig.state.refresh_count == 1


async def test_force_refresh_adopts_another_replicas_token(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, transport: Transport
) -> None:
    """After a 401, a replica first looks for a newer token in the row before refreshing."""
    rig = await make_freeagent()
    first, second = (TokenStore(pool, transport, rig.row.id, secrets=BOX) for _ in range(2))
    seen = await first.access_token()
    assert await second.access_token() == seen
    renewed = await first.force_refresh(seen)
    assert await second.force_refresh(seen) == renewed
    assert rig.state.refresh_count == 1


@pytest.mark.parametrize("as_401", [True, False])
async def test_refused_refresh_token_asks_for_reauthorisation(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent, as_401: bool
) -> None:
    """invalid_grant, with 401 or 400, becomes an AuthError naming the client and the fix."""
    rig = await make_freeagent(access_expires_in=-10)
    rig.state.refused_grants_401 = as_401
    rig.state.rotate("demo-client", rig.row.refresh_token or "")  # someone else used it
    with pytest.raises(AuthError) as info:
        await rig.client.users_me()
    message = str(info.value)
    assert info.value.status == (401 if as_401 else 400)
    assert message.startswith("FreeAgent client demo: refresh token refused")
    assert "fa-sync client authorize" in message
    assert rig.row.refresh_token and rig.row.refresh_token not in message


async def test_refresh_with_a_wrong_client_secret_says_so(
    pool: asyncpg.Pool, make_freeagent: MakeFreeAgent
) -> None:
    """A refresh answered 401 without invalid_grant is FreeAgent refusing the client
    credentials: the message says to check them, quoting neither secret nor token."""
    rig = await make_freeagent(access_expires_in=-10)
    rig.state.clients["demo-client"] = "rotated-secret"
    with pytest.raises(AuthError) as info:
        await rig.client.users_me()
    message = str(info.value)
    assert message.startswith("FreeAgent client demo: client id or secret refused")
    assert "dev.freeagent.com" in message
    for secret in ("demo-secret", "rotated-secret", rig.row.refresh_token or "?"):
        assert secret not in message
    assert rig.state.refresh_count == 0


@pytest.mark.parametrize(
    ("user", "stored"),
    [
        ({"url": "u", "permission_level": 8}, 8),
        ({"url": "u", "permission_level": "2"}, 2),  # text, read as the number it names
        ({"url": "u", "permission_level": "full"}, None),  # unreadable: unknown, not a crash
        ({"url": "u"}, None),
    ],
)
async def test_identity_keeps_a_readable_permission_level_or_none(
    pool: asyncpg.Pool, freeagent: FreeAgentRig, user: dict[str, object], stored: int | None
) -> None:
    """`client authorize` records the level users/me gives, as a number or as unknown."""
    await record_identity(pool, freeagent.row.id, user=user, company={"name": "Acme"})
    row = await pool.fetchrow(QUERIES["client_get"], freeagent.row.id)
    assert row["permission_level"] == stored
