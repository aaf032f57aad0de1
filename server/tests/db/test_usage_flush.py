"""The buffered daily job counter (unlimited plans): a flush returns only once every count noted before it
is in `usage_daily`, even while the background flush is still writing counts it took earlier."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from spooled_server.app import build_core
from spooled_server.config import Settings
from spooled_server.core.auth import Principal
from spooled_server.db.database import connect_owner

from ..support import TestDatabase

ORG = uuid.UUID("dddddddd-0000-4000-8000-000000000004")


@pytest.fixture(scope="module")
def usage_db(database: TestDatabase) -> str:
    return database.migrated("usage", {ORG: "usage"})


async def test_a_flush_waits_for_the_flush_in_flight(usage_db: str) -> None:
    core = build_core(Settings(database_url=usage_db, db_pool_size=2))
    holder = await connect_owner(usage_db)
    today = datetime.now(UTC).date()
    try:
        principal = Principal(org_id=ORG, key_id=uuid.uuid4(), queues=(), plan_tier="unlimited")
        await holder.execute("INSERT INTO usage_daily (organization_id, day, jobs_created) VALUES ($1, $2, 0)",
                             ORG, today)
        # Hold the day's row: the first flush takes the buffered counts and then blocks writing them.
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM usage_daily WHERE organization_id = $1 AND day = $2 FOR UPDATE",
                             ORG, today)
        core.quotas.note_created(principal, 3)
        background = asyncio.create_task(core.quotas.flush())
        await asyncio.sleep(0.3)
        assert not background.done()
        reader = asyncio.create_task(core.quotas.flush())  # the usage route's flush, with nothing buffered
        await asyncio.sleep(0.3)
        assert not reader.done(), "a flush returned while counts taken before it were still unwritten"
        await tx.commit()
        await asyncio.wait_for(asyncio.gather(background, reader), 10)
        written = await holder.fetchval(
            "SELECT jobs_created FROM usage_daily WHERE organization_id = $1 AND day = $2", ORG, today)
        assert written == 3
    finally:
        await holder.close()
        await core.db.dispose()


async def test_a_deleted_organization_costs_no_other_its_counts(usage_db: str) -> None:
    core = build_core(Settings(database_url=usage_db, db_pool_size=2))
    owner = await connect_owner(usage_db)
    today = datetime.now(UTC).date()
    gone = uuid.uuid4()  # created jobs, then was deleted before the flush
    try:
        before = await owner.fetchval(
            "SELECT coalesce(sum(jobs_created), 0) FROM usage_daily WHERE organization_id = $1 AND day = $2",
            ORG, today)
        for org in (gone, ORG):
            key = Principal(org_id=org, key_id=uuid.uuid4(), queues=(), plan_tier="unlimited")
            core.quotas.note_created(key, 2)
        await core.quotas.flush()
        after = await owner.fetchval(
            "SELECT jobs_created FROM usage_daily WHERE organization_id = $1 AND day = $2", ORG, today)
        assert after == before + 2
        assert await owner.fetchval("SELECT count(*) FROM usage_daily WHERE organization_id = $1", gone) == 0
    finally:
        await owner.close()
        await core.db.dispose()
