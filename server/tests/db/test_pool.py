"""The connection pools (db/database.py): a connection handed back inside a transaction is rolled back, and
closing the pools does not wait forever for a connection that is never handed back."""

from __future__ import annotations

import asyncio
import time

import pytest

from spooled_server.db.database import Database

from ..support import TestDatabase


@pytest.fixture(scope="module")
def pool_db(database: TestDatabase) -> str:
    return database.migrated("pools", {})


async def test_a_connection_back_in_a_transaction_is_rolled_back(pool_db: str) -> None:
    db = Database(pool_db, pool_size=1, maintenance_pool_size=1)
    try:
        async with db._raw("maintenance") as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (n int)")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with db._raw("maintenance") as conn:  # the pool's only connection, once more
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await db.dispose()


async def test_dispose_cuts_a_connection_that_never_comes_back(pool_db: str) -> None:
    db = Database(pool_db, pool_size=2, maintenance_pool_size=1)
    assert await db.ping()
    taken = asyncio.Event()

    async def hold() -> None:
        async with db._raw("app"):
            taken.set()
            await asyncio.sleep(30)

    holder = asyncio.create_task(hold())
    await taken.wait()
    started = time.monotonic()
    await db.dispose(grace=0.3)
    assert time.monotonic() - started < 5
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
