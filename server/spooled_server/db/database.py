"""Connection pools and transactions.

asyncpg's own pools hold the connections, and queries are hand-written SQL, one round trip each, with no ORM
in the way. (Lending connections through SQLAlchemy's pool instead cost ~0.25 ms more server CPU per REST
enqueue, measured side by side in one process: about a quarter of the request.)

Two pools, two roles:
- `tenant(org_id)`: role `spooled_app`, inside a transaction whose `app.current_org_id` names the
  authenticated organization, so row-level security confines every statement to that organization.
- `maintenance()`: role `spooled_maintenance`, for work that spans organizations (background loops, admin
  routes, API-key lookup by hash).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

Connection: TypeAlias = asyncpg.Connection


def _encode_json(value: Any) -> str:
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode()
    return msgspec.json.encode(value).decode()


def _decode_json(text: str) -> msgspec.Raw:
    # JSON columns stay encoded: they go back out on the wire as they are, without a decode/encode trip.
    return msgspec.Raw(text.encode())


def asyncpg_dsn(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


async def _prepare(conn: asyncpg.Connection, *, role: str) -> None:
    """Pool init hook: JSON columns stay encoded (see above), and the connection takes its role."""
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog",
                              format="text")
    await conn.set_type_codec("json", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog",
                              format="text")
    await conn.execute(f"SET ROLE {role}")


async def _release(conn: asyncpg.Connection) -> None:
    """Pool release hook. Handlers leave no session state (settings are transaction-local), so asyncpg's
    default reset (`RESET ALL; UNLISTEN *; …`, one more round trip per request) is skipped; a connection
    handed back inside a transaction (a task cancelled mid-rollback) is rolled back first."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    def __init__(self, database_url: str, *, pool_size: int = 20, maintenance_pool_size: int = 5) -> None:
        self.database_url = database_url
        self._sizes = {"app": pool_size, "maintenance": maintenance_pool_size}
        self._pools: dict[str, asyncpg.Pool] = {}
        self._opening = asyncio.Lock()
        self._hot_sql: dict[str, str] = {}

    async def _open(self, kind: str) -> asyncpg.Pool:
        """The pool of one kind, opened on first use (from the event loop that serves the requests)."""
        async with self._opening:
            pool = self._pools.get(kind)
            if pool is None:
                role = "spooled_app" if kind == "app" else "spooled_maintenance"

                pool = await asyncpg.create_pool(
                    asyncpg_dsn(self.database_url),
                    min_size=0,
                    max_size=self._sizes[kind],
                    init=functools.partial(_prepare, role=role),
                    reset=_release,
                    statement_cache_size=256,
                    max_inactive_connection_lifetime=0,  # no idle timer armed on every release
                    server_settings={
                        "application_name": "spooled" if kind == "app" else "spooled-maint",
                        "jit": "off",
                    },
                )
                self._pools[kind] = pool
            return pool

    @asynccontextmanager
    async def _raw(self, kind: str) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pools.get(kind) or await self._open(kind)
        async with pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def tenant(
        self, org_id: uuid.UUID | str, *, custom_plan: bool = False
    ) -> AsyncIterator[Connection]:
        """A transaction confined to one organization by row-level security."""
        org = str(uuid.UUID(str(org_id)))  # validated: it is inlined into the statement below
        begin = f"BEGIN; SELECT set_config('app.current_org_id', '{org}', true)"
        if custom_plan:
            # Filtered reads (the job list) want a plan per call: the planner drops the unused
            # `$n IS NULL OR …` branches of each filter mix. The hot statements are the opposite (db/hot.py).
            begin += "; SET LOCAL plan_cache_mode = force_custom_plan"
        async with self._raw("app") as conn:
            await conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def hot(self, org_id: uuid.UUID, name: str, *args: Any) -> list[asyncpg.Record]:
        """Run a hot named query (db/hot.py) for one organization: one statement, one round trip."""
        sql = self._hot_sql.get(name)
        if sql is None:
            from .hot import call_sql

            sql = self._hot_sql[name] = call_sql(name, len(args))
        async with self._raw("app") as conn:
            return await conn.fetch(sql, org_id, *args)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def maintenance(self, *, transaction: bool = True) -> AsyncIterator[Connection]:
        """A connection that sees every organization (background loops, admin, key lookup)."""
        async with self._raw("maintenance") as conn:
            if not transaction:
                yield conn
                return
            await conn.execute("BEGIN")
            try:
                yield conn
            except BaseException:
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @asynccontextmanager
    async def maintenance_for(self, org_id: uuid.UUID | str) -> AsyncIterator[Connection]:
        """A maintenance transaction that also names one organization (loops that change tenant data)."""
        org = str(uuid.UUID(str(org_id)))
        async with self._raw("maintenance") as conn:
            await conn.execute(f"BEGIN; SELECT set_config('app.current_org_id', '{org}', true)")
            try:
                yield conn
            except BaseException:
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    def pool_in_use(self) -> int:
        pool = self._pools.get("app")
        return 0 if pool is None else pool.get_size() - pool.get_idle_size()

    async def ping(self) -> bool:
        try:
            async with self._raw("maintenance") as conn:
                await conn.fetchval("SELECT 1", timeout=2)
            return True
        except Exception:
            return False

    async def dispose(self, grace: float = 10.0) -> None:
        """Close the pools: connections in use get `grace` seconds to come back, then are cut."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), grace)
            except TimeoutError:
                pool.terminate()


async def connect_owner(database_url: str) -> asyncpg.Connection:
    """A plain connection as the configured user (the schema owner): migrations and tests."""
    conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(database_url))
    return conn
