"""Builds API clients for runs from the rows they name, over one shared HTTP transport."""

from __future__ import annotations

import asyncpg

from daemon.clients.freeagent import FreeAgentClient
from daemon.clients.magento import MagentoClient
from daemon.clients.oauth import TokenStore
from daemon.clients.ratelimit import RateBudget
from daemon.clients.requestlog import RequestLog
from daemon.clients.transport import Transport
from daemon.db.queries import QUERIES
from daemon.db.records import FreeAgentClientRow, MagentoConnectionRow
from daemon.errors import ConfigError
from daemon.settings import Settings


class ClientFactory:
    """One per process: token stores are shared so one process refreshes a client once."""

    def __init__(self, *, pool: asyncpg.Pool, settings: Settings, transport: Transport) -> None:
        self._pool = pool
        self._settings = settings
        self.transport = transport
        self._tokens: dict[int, TokenStore] = {}

    async def client_row(self, client_id: int) -> FreeAgentClientRow:
        row = await self._pool.fetchrow(QUERIES["client_get"], client_id)
        if row is None:
            raise ConfigError(f"FreeAgent client {client_id} does not exist")
        return FreeAgentClientRow.from_row(row)

    def tokens(self, client_id: int) -> TokenStore:
        if client_id not in self._tokens:
            self._tokens[client_id] = TokenStore(self._pool, self.transport, client_id)
        return self._tokens[client_id]

    async def freeagent(
        self,
        client_id: int | None,
        *,
        profile_name: str = "",
        log_requests: bool = False,
        log_responses: bool = False,
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
            )
            transport = transport.with_log(log)
        budget = RateBudget(
            self._pool,
            row.budget_key,
            row.rate_limit_per_minute,
            row.rate_limit_per_hour,
            self._settings.rate_minute_window,
            self._settings.rate_hour_window,
        )
        return FreeAgentClient(
            transport=transport, client_row=row, tokens=self.tokens(client_id), budget=budget
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
            transport=self.transport, connection=MagentoConnectionRow.from_row(row)
        )
