"""Single creates under load share statements (core/inserts.py): every job still lands exactly once, in
arrival order, under its own organization, with its own answer; idempotency keys still collapse; a bad job
fails only its own request; a request that gives up before its group runs is not inserted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from spooled_server import metrics
from spooled_server.app import build_core
from spooled_server.config import Settings
from spooled_server.core.auth import Principal
from spooled_server.core.context import Core
from spooled_server.core.errors import ValidationFailed
from spooled_server.core.inserts import JobInserts
from spooled_server.core.jobs import NewJob, create_job
from spooled_server.db.database import connect_owner

from ..support import TestDatabase

ORG_A = uuid.UUID("dddddddd-0000-4000-8000-00000000000a")
ORG_B = uuid.UUID("dddddddd-0000-4000-8000-00000000000b")


@pytest.fixture(scope="module")
def grouped_db(database: TestDatabase) -> str:
    return database.migrated("grouped", {ORG_A: "grouped-a", ORG_B: "grouped-b"}, hot=True)


def principal(org: uuid.UUID) -> Principal:
    return Principal(org_id=org, key_id=uuid.uuid4(), queues=(), plan_tier="unlimited")


class Statements:
    """Records which hot statement each database call ran (the calls themselves are real)."""

    def __init__(self, core: Core) -> None:
        self.names: list[str] = []
        real = core.db.hot

        async def hot(org_id: uuid.UUID, name: str, *args: Any) -> Any:
            self.names.append(name)
            return await real(org_id, name, *args)

        core.db.hot = hot  # type: ignore[method-assign]


@pytest.fixture
async def core(grouped_db: str) -> AsyncIterator[Core]:
    built = build_core(Settings(database_url=grouped_db, db_pool_size=8))
    try:
        yield built
    finally:
        await built.db.dispose()


def job(queue: str, n: int, **fields: Any) -> NewJob:
    return NewJob(queue_name=queue, payload=msgspec.Raw(msgspec.json.encode({"n": n})), **fields)


def n_of(payload: str) -> int:
    return int(msgspec.json.decode(payload)["n"])


async def rows(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await connect_owner(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_concurrent_creates_share_statements_and_each_lands_once(core: Core, grouped_db: str) -> None:
    statements = Statements(core)
    groups_before = metrics.REGISTRY.get_sample_value("spooled_job_insert_group_size_count") or 0
    queue = f"q-{uuid.uuid4().hex[:8]}"
    results = await asyncio.gather(*(create_job(core, principal(ORG_A), job(queue, n)) for n in range(60)))
    ids = [job_id for job_id, created in results if created]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert "insert_jobs" in statements.names
    assert len(statements.names) < 60
    groups = metrics.REGISTRY.get_sample_value("spooled_job_insert_group_size_count") or 0
    assert groups - groups_before == statements.names.count("insert_jobs")
    stored = await rows(grouped_db, "SELECT id, organization_id, status, payload FROM jobs"
                        " WHERE queue_name = $1", queue)
    assert {r["id"] for r in stored} == set(ids)
    assert {r["organization_id"] for r in stored} == {ORG_A}
    assert {r["status"] for r in stored} == {"pending"}
    by_id = {r["id"]: r["payload"] for r in stored}
    assert [n_of(by_id[i]) for i in ids] == list(range(60))
    history = await rows(grouped_db, "SELECT job_id FROM job_history WHERE event_type = 'created'"
                         " AND job_id = ANY($1::uuid[])", ids)
    assert sorted(r["job_id"] for r in history) == sorted(ids)


async def test_a_group_keeps_arrival_order_and_every_field(core: Core, grouped_db: str) -> None:
    core.inserts = JobInserts(core.db, lanes=1)
    statements = Statements(core)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    # The first create takes the only lane; the others wait in line and go in together, in order.
    jobs = [job(queue, 0)] + [
        job(queue, n, priority=n, max_retries=n % 4, timeout_seconds=60 + n,
            tags=msgspec.Raw(b'{"t":%d}' % n), idempotency_key=f"order-{queue}-{n}",
            completion_webhook="https://example.com/done", completion_webhook_secret="s")
        for n in range(1, 8)
    ]
    results = await asyncio.gather(*(create_job(core, principal(ORG_A), j) for j in jobs))
    assert statements.names == ["insert_job", "insert_jobs"]
    ids = [job_id for job_id, _ in results]
    stored = await rows(grouped_db, "SELECT * FROM jobs WHERE queue_name = $1 ORDER BY created_at", queue)
    assert [r["id"] for r in stored] == ids
    for n, r in enumerate(stored[1:], start=1):
        assert (r["priority"], r["max_retries"], r["timeout_seconds"]) == (n, n % 4, 60 + n)
        assert r["idempotency_key"] == f"order-{queue}-{n}"
        assert r["completion_webhook"] == "https://example.com/done"
        assert r["completion_webhook_secret"] == "s"
        assert r["dependencies_met"] is None and r["parent_job_id"] is None


async def test_repeated_keys_in_one_group_collapse_to_one_job(core: Core, grouped_db: str) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    earlier, created = await create_job(core, principal(ORG_A), job(queue, 0, idempotency_key=f"{queue}-old"))
    assert created
    core.inserts = JobInserts(core.db, lanes=1)
    statements = Statements(core)
    jobs = [job(queue, 1)] + [job(queue, n, idempotency_key=f"{queue}-new") for n in range(2, 7)] + [
        job(queue, 7, idempotency_key=f"{queue}-old")]
    results = await asyncio.gather(*(create_job(core, principal(ORG_A), j) for j in jobs))
    assert statements.names[:2] == ["insert_job", "insert_jobs"]
    repeated = results[1:6]
    assert [created for _, created in repeated] == [True, False, False, False, False]
    assert len({job_id for job_id, _ in repeated}) == 1
    assert results[6] == (earlier, False)
    stored = await rows(grouped_db, "SELECT idempotency_key, payload FROM jobs WHERE queue_name = $1"
                        " AND idempotency_key IS NOT NULL", queue)
    assert len(stored) == 2


async def test_a_bad_job_fails_only_its_own_request(core: Core, grouped_db: str) -> None:
    core.inserts = JobInserts(core.db, lanes=1)
    statements = Statements(core)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    overflowing = NewJob(queue_name=queue, payload=msgspec.Raw(b'{"n": 1e1000000}'))
    jobs = [job(queue, 0), job(queue, 1), overflowing, job(queue, 3)]
    results = await asyncio.gather(*(create_job(core, principal(ORG_A), j) for j in jobs),
                                   return_exceptions=True)
    assert "insert_jobs" in statements.names
    assert isinstance(results[2], ValidationFailed)
    assert all(isinstance(r, tuple) and r[1] for i, r in enumerate(results) if i != 2)
    stored = await rows(grouped_db, "SELECT id FROM jobs WHERE queue_name = $1", queue)
    assert {r["id"] for r in stored} == {r[0] for i, r in enumerate(results) if i != 2}  # type: ignore[index]


async def test_a_request_that_gives_up_in_line_is_not_inserted(core: Core, grouped_db: str) -> None:
    core.inserts = JobInserts(core.db, lanes=1)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    tasks = [asyncio.create_task(create_job(core, principal(ORG_A), job(queue, n))) for n in range(3)]
    await asyncio.sleep(0)  # each task runs to its first wait: the first holds the lane, the others wait
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    stored = await rows(grouped_db, "SELECT payload FROM jobs WHERE queue_name = $1", queue)
    assert sorted(n_of(r["payload"]) for r in stored) == [0, 2]


async def test_organizations_never_share_a_statement(core: Core, grouped_db: str) -> None:
    core.inserts = JobInserts(core.db, lanes=1)
    statements = Statements(core)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    orgs = [ORG_A, ORG_B] * 15
    results = await asyncio.gather(*(create_job(core, principal(org), job(queue, n))
                                     for n, org in enumerate(orgs)))
    assert statements.names.count("insert_jobs") >= 2
    stored = await rows(grouped_db, "SELECT id, organization_id FROM jobs WHERE queue_name = $1", queue)
    owner = {r["id"]: r["organization_id"] for r in stored}
    assert [owner[job_id] for job_id, _ in results] == orgs
