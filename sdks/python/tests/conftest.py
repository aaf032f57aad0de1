"""Test session: a real PostgreSQL and a real ``spooled-server serve`` process, one organization per test.

The server's own test harness (``server/tests/support.py``: embedded PostgreSQL or
``SPOOLED_TEST_DATABASE_URL``, a server subprocess on free ports with short background intervals) is loaded
by file path, because both packages call their test folder ``tests``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import asyncpg
import pytest

from spooled import AsyncSpooledClient, SpooledClient

REPO_ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def _load_server_support() -> ModuleType:
    name = "spooled_server_test_support"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "server" / "tests" / "support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


support = _load_server_support()
ADMIN_KEY: str = support.ADMIN_KEY


@pytest.fixture(scope="session")
def database() -> Iterator[Any]:
    db = support.TestDatabase()
    db.start()
    try:
        yield db
    finally:
        db.stop()


def start_server(database_url: str, **env: str) -> Any:
    """A server process; stopped again if it does not come up (busy CI machines start slowly)."""
    proc = support.ServerProcess(database_url, env=env)
    try:
        return proc.start(timeout=120.0)
    except BaseException:
        proc.stop()
        raise


@pytest.fixture(scope="session")
def server(database: Any) -> Iterator[Any]:
    proc = start_server(database.url)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def tenant(server: Any) -> Any:
    """A fresh organization on the unlimited plan: tests never see each other's data."""
    return support.create_tenant(server)


@pytest.fixture
def client(tenant: Any) -> Iterator[SpooledClient]:
    with SpooledClient(
        tenant.api_key,
        base_url=tenant.server.base_url,
        grpc_address=f"127.0.0.1:{tenant.server.grpc_port}",
        admin_key=ADMIN_KEY,
    ) as c:
        yield c


@pytest.fixture
async def aclient(tenant: Any) -> AsyncIterator[AsyncSpooledClient]:
    async with AsyncSpooledClient(
        tenant.api_key,
        base_url=tenant.server.base_url,
        grpc_address=f"127.0.0.1:{tenant.server.grpc_port}",
        admin_key=ADMIN_KEY,
    ) as c:
        yield c


@pytest.fixture
async def owner_db(database: Any, server: Any) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner's connection: to move time (expire a lease) and to check rows directly."""
    from spooled_server.db.database import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database.url))
    try:
        yield conn
    finally:
        await conn.close()


def wait_until(predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy (background loops run on their own clock)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
