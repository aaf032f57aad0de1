"""gRPC WorkerService over real gRPC: register, heartbeat (with a real should_drain), deregister."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from ..support import ServerProcess, Tenant, create_tenant
from .grpc_helpers import Client, channel, md, new_queue, pb, rpc_error

API = "/api/v1"
OK = grpc.StatusCode


@pytest.fixture
async def client(server: ServerProcess, tenant: Tenant) -> AsyncIterator[Client]:
    async with channel(server) as ch:
        yield Client(ch, tenant.api_key)


async def register(c: Client, queue: str, **fields: object) -> pb.RegisterWorkerResponse:
    fields.setdefault("hostname", "host-1")
    return await c.workers.Register(pb.RegisterWorkerRequest(queue_name=queue, **fields), metadata=c.metadata)


async def heartbeat(c: Client, worker: str, **fields: object) -> pb.HeartbeatResponse:
    return await c.workers.Heartbeat(pb.HeartbeatRequest(worker_id=worker, **fields), metadata=c.metadata)


async def test_register_mints_an_id_and_applies_defaults(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    reply = await register(client, queue, worker_type="python", version="1.2.3", metadata={"region": "eu"})
    assert uuid.UUID(reply.worker_id)
    assert (reply.lease_duration_secs, reply.heartbeat_interval_secs) == (300, 10)
    with tenant.client() as c:
        worker = c.get(f"{API}/workers/{reply.worker_id}").json()
    assert worker["queue_name"] == queue and worker["hostname"] == "host-1" and worker["status"] == "healthy"
    assert worker["max_concurrency"] == 5  # 0 means 5
    assert (worker["worker_type"], worker["version"], worker["metadata"]) == ("python", "1.2.3", {"region": "eu"})
    clamped = await register(client, queue, max_concurrency=5000)
    with tenant.client() as c:
        assert c.get(f"{API}/workers/{clamped.worker_id}").json()["max_concurrency"] == 1000


async def test_register_with_an_id_upserts_and_guards_ownership(
    client: Client, server: ServerProcess, other_tenant: Tenant
) -> None:
    queue = new_queue()
    worker_id = f"w-{uuid.uuid4().hex[:8]}"
    assert (await register(client, queue, worker_id=worker_id)).worker_id == worker_id
    assert (await register(client, queue, worker_id=worker_id, hostname="host-2")).worker_id == worker_id
    async with channel(server) as ch:
        other = Client(ch, other_tenant.api_key)
        await rpc_error(register(other, queue, worker_id=worker_id), OK.ALREADY_EXISTS)
    # An empty id means "mint one".
    assert uuid.UUID((await register(client, queue, worker_id="")).worker_id)


async def test_register_errors(client: Client, tenant: Tenant, server: ServerProcess) -> None:
    queue = new_queue()
    await rpc_error(register(client, queue, hostname=""), OK.INVALID_ARGUMENT)
    await rpc_error(register(client, queue, hostname="-bad-"), OK.INVALID_ARGUMENT)
    await rpc_error(register(client, "bad queue"), OK.INVALID_ARGUMENT)
    await rpc_error(register(client, queue, worker_id="no spaces allowed"), OK.INVALID_ARGUMENT)
    with tenant.client() as c:
        key = c.post(f"{API}/api-keys", json={"name": "scoped", "queues": ["only-this"]}).json()["key"]
    await rpc_error(client.workers.Register(pb.RegisterWorkerRequest(queue_name=queue, hostname="h"),
                                            metadata=md(key)), OK.PERMISSION_DENIED)
    free = create_tenant(server, plan_tier="free")  # one worker
    async with channel(server) as ch:
        c = Client(ch, free.api_key)
        await register(c, queue)
        err = await rpc_error(register(c, queue), OK.RESOURCE_EXHAUSTED)
        assert "limit reached" in err.details()


async def test_heartbeat_and_a_real_should_drain(client: Client, tenant: Tenant) -> None:
    queue = new_queue()
    await client.enqueue(queue)  # the queue exists (it can be paused below)
    worker = (await register(client, queue)).worker_id
    beat = await heartbeat(client, worker, current_jobs=3, status="degraded", metadata={"load": "high"})
    assert beat.acknowledged and not beat.should_drain
    with tenant.client() as c:
        stored = c.get(f"{API}/workers/{worker}").json()
        assert (stored["status"], stored["current_jobs"], stored["metadata"]) == ("degraded", 3, {"load": "high"})
    assert (await heartbeat(client, worker, status="nonsense")).acknowledged  # invalid means healthy
    with tenant.client() as c:
        assert c.get(f"{API}/workers/{worker}").json()["status"] == "healthy"
        # An operator drains it: the next heartbeat says so, and a heartbeat cannot undo it.
        assert c.post(f"{API}/workers/{worker}/drain").status_code == 200
    drained = await heartbeat(client, worker, status="healthy")
    assert drained.acknowledged and drained.should_drain
    with tenant.client() as c:
        assert c.get(f"{API}/workers/{worker}").json()["status"] == "draining"
    # Re-registering resets it; pausing its queue drains it again.
    await register(client, queue, worker_id=worker)
    assert not (await heartbeat(client, worker)).should_drain
    with tenant.client() as c:
        assert c.post(f"{API}/queues/{queue}/pause", json={}).status_code == 200
    assert (await heartbeat(client, worker)).should_drain
    with tenant.client() as c:
        assert c.post(f"{API}/queues/{queue}/resume").status_code == 200
    assert not (await heartbeat(client, worker)).should_drain


async def test_heartbeat_for_unknown_workers(client: Client, other_tenant: Tenant, server: ServerProcess) -> None:
    assert (await heartbeat(client, "never-registered")) == pb.HeartbeatResponse(acknowledged=False)
    assert not (await heartbeat(client, "")).acknowledged
    assert not (await heartbeat(client, "bad id!")).acknowledged
    worker = (await register(client, new_queue())).worker_id
    async with channel(server) as ch:
        assert not (await heartbeat(Client(ch, other_tenant.api_key), worker)).acknowledged


async def test_deregister_releases_the_workers_jobs(client: Client, owner_db: asyncpg.Connection) -> None:
    queue = new_queue()
    worker = (await register(client, queue)).worker_id
    ids = [await client.enqueue(queue) for _ in range(3)]
    claimed = await client.dequeue(queue, worker, batch_size=2)
    assert len(claimed) == 2
    reply = await client.workers.Deregister(pb.DeregisterRequest(worker_id=worker), metadata=client.metadata)
    assert reply.success
    rows = await owner_db.fetch("SELECT status, retry_count, assigned_worker_id FROM jobs WHERE id = ANY($1::uuid[])",
                                ids)
    assert [r["status"] for r in rows] == ["pending"] * 3
    assert all(r["retry_count"] == 0 and r["assigned_worker_id"] is None for r in rows)
    status = await owner_db.fetchval("SELECT status FROM workers WHERE id = $1", worker)
    assert status == "offline"
    unknown = await client.workers.Deregister(pb.DeregisterRequest(worker_id="nobody"), metadata=client.metadata)
    assert not unknown.success
    await rpc_error(client.workers.Deregister(pb.DeregisterRequest(worker_id=worker)), OK.UNAUTHENTICATED)
