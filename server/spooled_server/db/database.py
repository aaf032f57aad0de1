"""Connection pools and transactions.

SQLAlchemy 2's async engine (asyncpg driver) owns the pools. Queries run on the raw asyncpg connection of a
pooled SQLAlchemy connection: the hot paths are hand-written SQL, one round trip each, with no ORM in the way.

Two pools, two roles:
- `tenant(org_id)`: role `spooled_app`, inside a transaction whose `app.current_org_id` names the
  authenticated organization, so row-level security confines every statement to that organization.
- `maintenance()`: role `spooled_maintenance`, for work that spans organizations (background loops, admin
  routes, API-key lookup by hash).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

Connection: TypeAlias = asyncpg.Connection


def _encode_json(value: Any) -> str:
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode()
    return msgspec.json.encode(value).decode()


def _decode_json(text: str) -> msgspec.Raw:
    # JSON columns stay encoded: they go back out on the wire as they are, without a decode/encode trip.
    return msgspec.Raw(text.encode())


def sqlalchemy_url(database_url: str) -> str:
    """`postgresql://…` (any libpq-style URL) → `postgresql+asyncpg://…` for SQLAlchemy."""
    parts = urlsplit(database_url)
    scheme = "postgresql+asyncpg"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in {"sslmode"}]
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def asyncpg_dsn(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


class Database:
    def __init__(self, database_url: str, *, pool_size: int = 20, maintenance_pool_size: int = 5) -> None:
        self.database_url = database_url
        self.app_engine = self._engine(pool_size, "spooled_app", "spooled")
        self.maintenance_engine = self._engine(maintenance_pool_size, "spooled_maintenance", "spooled-maint")
        self._hot_sql: dict[str, str] = {}

    def _engine(self, size: int, role: str, application_name: str) -> AsyncEngine:
        engine = create_async_engine(
            sqlalchemy_url(self.database_url),
            pool_size=size,
            max_overflow=0,
            pool_timeout=30,
            pool_pre_ping=False,
            pool_reset_on_return=None,
            connect_args={
                "server_settings": {"application_name": application_name, "jit": "off"},
                "statement_cache_size": 256,
            },
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            async def init(conn: asyncpg.Connection) -> None:
                await conn.set_type_codec(
                    "jsonb", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog", format="text"
                )
                await conn.set_type_codec(
                    "json", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog", format="text"
                )
                await conn.execute(f"SET ROLE {role}")

            dbapi_connection.run_async(init)

        return engine

    @asynccontextmanager
    async def _raw(self, engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
        async with engine.connect() as sa_conn:
            fairy = await sa_conn.get_raw_connection()
            conn: asyncpg.Connection = fairy.driver_connection
            yield conn

    @asynccontextmanager
    async def tenant(
        self, org_id: uuid.UUID | str, *, custom_plan: bool = False
    ) -> AsyncIterator[Connection]:
        """A transaction confined to one organization by row-level security."""
        org = str(uuid.UUID(str(org_id)))  # validated: it is inlined into the statement below
        begin = f"BEGIN; SELECT set_config('app.current_org_id', '{org}', true)"
        if custom_plan:
            # Claim queries must not run on a cached generic plan (see PERFORMANCE.md, the planner trap).
            begin += "; SET LOCAL plan_cache_mode = force_custom_plan"
        async with self._raw(self.app_engine) as conn:
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
        async with self._raw(self.app_engine) as conn:
            return await conn.fetch(sql, org_id, *args)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def maintenance(self, *, transaction: bool = True) -> AsyncIterator[Connection]:
        """A connection that sees every organization (background loops, admin, key lookup)."""
        async with self._raw(self.maintenance_engine) as conn:
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
        async with self._raw(self.maintenance_engine) as conn:
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
        pool: Any = self.app_engine.pool
        try:
            return int(pool.checkedout())
        except Exception:
            return 0

    async def ping(self) -> bool:
        try:
            async with self._raw(self.maintenance_engine) as conn:
                await conn.fetchval("SELECT 1", timeout=2)
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.app_engine.dispose()
        await self.maintenance_engine.dispose()


async def connect_owner(database_url: str) -> asyncpg.Connection:
    """A plain connection as the configured user (the schema owner): migrations and tests."""
    conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(database_url))
    return conn
