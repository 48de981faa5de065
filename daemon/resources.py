"""Builds API clients for runs from the rows they name, over one shared HTTP transport."""

from __future__ import annotations

from typing import Any

import asyncpg

from daemon.clients.freeagent import FreeAgentClient, users_me_key
from daemon.clients.magento import MagentoClient
from daemon.clients.oauth import TokenStore, exchange_code, record_identity
from daemon.clients.ratelimit import (
    Egress,
    Headroom,
    RateBudget,
    egress_key,
    provisional_key,
    user_key,
)
from daemon.clients.readcache import ReadCache
from daemon.clients.requestlog import RequestLog
from daemon.clients.transport import Transport
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow, MagentoConnectionRow
from daemon.errors import ConfigError
from daemon.secretbox import SecretBox
from daemon.settings import Settings


class ClientFactory:
    """One per process: token stores are shared so one process refreshes a client once."""

    def __init__(
        self, *, pool: asyncpg.Pool, settings: Settings, transport: Transport, secrets: SecretBox
    ) -> None:
        self._pool = pool
        self._settings = settings
        self.transport = transport
        #: Seals and opens the secret columns of client and connection rows.
        self.secrets = secrets
        self._tokens: dict[int, TokenStore] = {}
        #: users/me, store views and store configs, kept across runs (see readcache.py).
        self.reads = ReadCache(settings.config_cache_seconds)

    async def client_row(self, client_id: int) -> FreeAgentClientRow:
        row = await self._pool.fetchrow(QUERIES["client_get"], client_id)
        if row is None:
            raise ConfigError(f"FreeAgent client {client_id} does not exist")
        return self.secrets.opened(FreeAgentClientRow.from_row(row))

    def tokens(self, client_id: int) -> TokenStore:
        if client_id not in self._tokens:
            self._tokens[client_id] = TokenStore(
                self._pool, self.transport, client_id, secrets=self.secrets
            )
        return self._tokens[client_id]

    def egress(self) -> Egress | None:
        """The budget of the address this process sends from, which every user's grants also
        draw from (FreeAgent's per-IP limit); None when the settings turn it off."""
        s = self._settings
        if s.rate_egress_per_minute == 0:
            return None
        return Egress(
            egress_key(s.rate_egress_key),
            s.rate_egress_per_minute,
            s.rate_egress_headroom_per_minute,
            s.rate_priority_per_minute,
        )

    def budget(self, row: FreeAgentClientRow, *, key: str | None = None) -> RateBudget:
        """The one request budget of the row's user, shared with its token store.

        key: count under this key instead of the row's (the provisional key while
        `client authorize` does not yet know whom the new tokens act for).
        """
        s = self._settings
        per_minute, per_hour = row.rate_limits  # X-RateLimit-Test lowers them (records.py)
        budget = RateBudget(
            self._pool,
            key or row.budget_key,
            per_minute,
            per_hour,
            s.rate_minute_window,
            s.rate_hour_window,
            headroom=Headroom(
                s.rate_latency_allowance,
                s.rate_headroom_per_minute,
                s.rate_headroom_per_hour,
                s.rate_priority_per_minute,
                s.rate_priority_per_hour,
                s.rate_priority_reserve_per_hour,
            ),
            http_timeout=s.http_timeout,
            egress=self.egress(),
        )
        self.tokens(row.id).budget = budget
        return budget

    async def authorize(
        self, row: FreeAgentClientRow, *, code: str | None = None, refresh_token: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`client authorize`: store the new tokens, learn whom they act for, and the company.

        Until users/me answers, the tokens' user is unknown (it may differ from the row's
        previous one), so these requests count under the provisional key; users/me moves
        them into that user's budget, which the exports of every profile then share.
        """
        budget = self.budget(row, key=provisional_key(row.id))
        tokens = self.tokens(row.id)
        if code is not None:
            await tokens.save(await exchange_code(self.transport, row, code, budget=budget))
        else:
            sealed = self.secrets.seal_optional(refresh_token)
            await self._pool.execute(QUERIES["client_import_refresh_token"], row.id, sealed)
        fa = await self.freeagent(row.id, profile_name=row.name, budget_key=budget.key)
        user = await fa.users_me()
        company = await fa.company()
        await record_identity(self._pool, row.id, user=user, company=company)
        return user, company

    async def freeagent(
        self,
        client_id: int | None,
        *,
        profile_name: str = "",
        log_requests: bool = False,
        log_responses: bool = False,
        budget_key: str | None = None,
    ) -> FreeAgentClient:
        """A FreeAgent client for a profile, logging requests when the profile asks for it."""
        if client_id is None:
            raise ConfigError(f"profile {profile_name}: no FreeAgent client configured")
        row = await self.client_row(client_id)
        if not row.refresh_token and not row.access_token:
            raise ConfigError(
                f"FreeAgent client {row.name}: not authorised yet "
                f"(fa-sync client authorize {row.name})"
            )
        transport = self.transport
        if log_requests or log_responses:
            log = RequestLog.for_profile(
                self._settings.request_log_dir,
                profile_name or row.name,
                "freeagent",
                requests=log_requests,
                responses=log_responses,
                max_bytes=self._settings.request_log_max_bytes,
                backups=self._settings.request_log_backups,
            )
            transport = transport.with_log(log)
        if budget_key is None and row.user_url is None:
            # A row that does not name its user yet, whose user a recent users/me named:
            # count under that user's key from the first request (no provisional key to merge).
            known = self.reads.peek(users_me_key(row))
            if known is not None and isinstance(known.get("url"), str) and known["url"]:
                budget_key = user_key(known["url"])
        budget = self.budget(row, key=budget_key)
        return FreeAgentClient(
            transport=transport,
            client_row=row,
            tokens=self.tokens(client_id),
            budget=budget,
            reads=self.reads,
        )

    async def magento(self, connection_id: int | None) -> MagentoClient:
        """A Magento client for a connection row."""
        if connection_id is None:
            raise ConfigError(
                "profile has no Magento connection (fa-sync profile set --magento NAME)"
            )
        row = await self._pool.fetchrow(QUERIES["connection_get"], connection_id)
        if row is None:
            raise ConfigError(f"Magento connection {connection_id} does not exist")
        return MagentoClient(
            transport=self.transport,
            connection=self.secrets.opened(MagentoConnectionRow.from_row(row)),
            reads=self.reads,
        )
