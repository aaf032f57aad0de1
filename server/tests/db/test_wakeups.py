"""Cross-replica wake-ups (events/wakeups.py): an enqueue on one replica wakes a claimer parked on another
through one coalesced NOTIFY, and a replica that is alone sends none."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from spooled_server.db.database import asyncpg_dsn
from spooled_server.events.wakeups import CHANNEL, Wakeups

from ..support import TestDatabase

ORG = uuid.UUID("eeeeeeee-0000-4000-8000-000000000005")


@pytest.fixture(scope="module")
def wake_db(database: TestDatabase) -> str:
    return database.create_database("wakeups")


@contextlib.asynccontextmanager
async def replica(url: str) -> AsyncIterator[Wakeups]:
    wakeups = Wakeups()
    await wakeups.start(url)
    try:
        yield wakeups
    finally:
        await wakeups.stop()


async def test_an_enqueue_wakes_a_claimer_on_another_replica(wake_db: str) -> None:
    async with replica(wake_db) as a, replica(wake_db) as b:
        parked = asyncio.create_task(a.wait(ORG, "emails", 10.0))
        await asyncio.sleep(0.05)
        b.notify(ORG, "emails")
        assert await asyncio.wait_for(parked, 2.0) is True  # woken, long before its 10 s wait ends
        # Another queue of the same organization stays parked.
        other = asyncio.create_task(a.wait(ORG, "reports", 0.3))
        b.notify(ORG, "emails")
        assert await other is False


async def test_a_replica_alone_sends_no_notify_until_another_starts(wake_db: str) -> None:
    heard: list[str] = []
    spy = await asyncpg.connect(asyncpg_dsn(wake_db))  # not a replica: its connection is not named like one
    await spy.add_listener(CHANNEL, lambda *args: heard.append(args[-1]))
    try:
        async with replica(wake_db) as a:
            for _ in range(5):
                a.notify(ORG, "emails")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert [h for h in heard if not h.endswith("|hello")] == []
            async with replica(wake_db) as b:  # says hello: `a` notifies from now on, without waiting
                parked = asyncio.create_task(b.wait(ORG, "emails", 10.0))
                await asyncio.sleep(0.05)
                a.notify(ORG, "emails")
                assert await asyncio.wait_for(parked, 2.0) is True
            await asyncio.sleep(0.1)
            assert any(h.endswith(f"|{ORG}|emails") for h in heard)
    finally:
        await spy.close()
