"""Session fixtures: one real PostgreSQL, one real server process, one organization per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from spooled_server.db.database import asyncpg_dsn

from .support import ServerProcess, Tenant, TestDatabase, create_tenant


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    db = TestDatabase()
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def server(database: TestDatabase) -> Iterator[ServerProcess]:
    proc = ServerProcess(database.url).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def tenant(server: ServerProcess) -> Tenant:
    """A fresh organization (unlimited plan): tests never see each other's data."""
    return create_tenant(server)


@pytest.fixture
def other_tenant(server: ServerProcess) -> Tenant:
    return create_tenant(server)


@pytest.fixture
async def owner_db(database: TestDatabase, server: ServerProcess) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the schema owner: for moving time (expiring a lease) and checking rows directly."""
    conn = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        yield conn
    finally:
        await conn.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value (the background loops run on their own clock)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


async def async_wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
