"""The gRPC server itself: health, reflection, hostile input, shutdown, TLS."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ..support import ServerProcess, Tenant, TestDatabase, create_tenant, running_server
from .grpc_helpers import (
    SMALL_WINDOW,
    Client,
    channel,
    count_status,
    dequeue_request,
    eventually,
    final_status,
    md,
    new_queue,
    pb,
    rpc_error,
)

API = "/api/v1"
OK = grpc.StatusCode
BIG = "x" * 100_000


@pytest.fixture
async def client(server: ServerProcess, tenant: Tenant) -> AsyncIterator[Client]:
    async with channel(server) as ch:
        yield Client(ch, tenant.api_key)


def bulk_big(tenant: Tenant, queue: str, count: int) -> None:
    with tenant.client() as c:
        for start in range(0, count, 5):
            n = min(5, count - start)
            r = c.post(f"{API}/jobs/bulk", json={"queue_name": queue, "jobs": [{"payload": {"blob": BIG}}] * n})
            assert r.json()["success_count"] == n, r.text


async def assert_serving(client: Client) -> None:
    """The server still answers real work after whatever the test threw at it."""
    queue = new_queue()
    job_id = await client.enqueue(queue)
    assert (await client.get(job_id)).id == job_id


async def test_health_service(client: Client) -> None:
    stub = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "spooled.v1.QueueService", "spooled.v1.WorkerService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await rpc_error(stub.Check(health_pb2.HealthCheckRequest(service="nope")), OK.NOT_FOUND)


async def test_server_reflection(client: Client) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    names = {s.name for s in listed.list_services_response.service}
    assert {"spooled.v1.QueueService", "spooled.v1.WorkerService", "grpc.health.v1.Health"} <= names
    await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol="spooled.v1.QueueService"))
    found = await call.read()
    from google.protobuf import descriptor_pb2

    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in found.file_descriptor_response.file_descriptor_proto]
    assert "spooled/v1/spooled.proto" in {f.name for f in files}
    await call.done_writing()


# --- hostile input ----------------------------------------------------------------------------------------


async def test_garbage_and_malformed_messages_do_not_hurt_the_server(client: Client) -> None:
    raw_enqueue = client.channel.unary_unary("/spooled.v1.QueueService/Enqueue")
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05\xff\xfe\xfd\xfc\xfb",  # not protobuf; invalid UTF-8
                    b"\x0a\xff\xff\xff\xff\x0f"):  # a length far past the end
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw_enqueue(garbage, metadata=client.metadata)
        assert info.value.code() != OK.OK
    # A Struct nested deeper than the parser accepts.
    nested = b"\x08\x01"  # Value{null_value}
    for _ in range(200):
        entry = b"\x0a\x01k" + b"\x12" + _varint(len(nested)) + nested  # Struct.fields map entry
        struct = b"\x0a" + _varint(len(entry)) + entry
        nested = b"\x2a" + _varint(len(struct)) + struct  # Value{struct_value}
    request = b"\x0a\x01q" + b"\x12" + _varint(len(struct)) + struct
    with pytest.raises(grpc.aio.AioRpcError):
        await raw_enqueue(request, metadata=client.metadata)
    # An unknown method.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.channel.unary_unary("/spooled.v1.QueueService/Nope")(b"", metadata=client.metadata)
    assert info.value.code() == OK.UNIMPLEMENTED
    await assert_serving(client)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def test_oversized_messages_are_rejected(client: Client) -> None:
    huge = pb.EnqueueRequest(queue_name=new_queue(), payload={"blob": "x" * (5 * 1024 * 1024)})
    await rpc_error(client.queue.Enqueue(huge, metadata=client.metadata), OK.RESOURCE_EXHAUSTED)
    call = client.process()
    await call.write(pb.ProcessRequest(complete=pb.CompleteRequest(job_id="a", worker_id="w", lease_id="l",
                                                                   result={"blob": "x" * (5 * 1024 * 1024)})))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == OK.RESOURCE_EXHAUSTED
    await assert_serving(client)


async def test_garbage_on_a_stream_ends_it_and_leaks_no_jobs(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    # Replies already due are flushed, then the stream ends with INVALID_ARGUMENT.
    async with channel(server) as ch:
        call = ch.stream_stream("/spooled.v1.QueueService/ProcessJobs")(metadata=md(tenant.api_key))
        await call.write(dequeue_request(new_queue(), "w").SerializeToString())
        assert pb.ProcessResponse.FromString(await call.read()).error.code == "NO_JOBS"
        await call.write(b"\xff\xff\xff\xff garbage")
        assert (await final_status(call))[0] == OK.INVALID_ARGUMENT
    # A client that sends garbage and goes away without reading its claimed batch gets nothing to keep.
    queue = new_queue()
    bulk_big(tenant, queue, 10)
    async with channel(server, SMALL_WINDOW) as ch:
        call = ch.stream_stream("/spooled.v1.QueueService/ProcessJobs")(metadata=md(tenant.api_key))
        await call.write(dequeue_request(queue, "w-garbage", batch_size=10, batch=True).SerializeToString())

        async def claimed() -> bool:
            return await count_status(owner_db, queue, "processing") == 10

        await eventually(claimed)
        await call.write(b"\xff\xff\xff\xff garbage")
        await asyncio.sleep(0.2)
        call.cancel()

    async def released() -> bool:
        return await count_status(owner_db, queue, "pending") == 10

    await eventually(released, within=5)
    async with channel(server) as ch:
        await assert_serving(Client(ch, tenant.api_key))


# --- shutdown ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # a server of its own
async def test_shutdown_ends_streams_with_unavailable_and_releases_undelivered_jobs(
    database: TestDatabase, owner_db: asyncpg.Connection
) -> None:
    with running_server(database.url) as srv:
        tenant = create_tenant(srv)
        blocked_queue, idle_queue = new_queue("blocked"), new_queue("idle")
        bulk_big(tenant, blocked_queue, 5)
        async with channel(srv, SMALL_WINDOW) as slow, channel(srv) as fast:
            # Clients that stopped reading: their claimed jobs cannot be delivered.
            s = Client(slow, tenant.api_key)
            blocked_process = s.process()
            await blocked_process.write(dequeue_request(blocked_queue, "w-proc", batch_size=3, batch=True))
            blocked_stream = s.queue.StreamJobs(pb.StreamJobsRequest(queue_name=blocked_queue, worker_id="w-stream"),
                                                metadata=s.metadata)
            # Healthy, waiting clients.
            f = Client(fast, tenant.api_key)
            idle_stream = f.queue.StreamJobs(pb.StreamJobsRequest(queue_name=idle_queue, worker_id="w-idle"),
                                             metadata=f.metadata)
            process = f.process()
            await process.write(dequeue_request(idle_queue, "w-proc2"))
            assert (await process.read()).error.code == "NO_JOBS"

            async def all_claimed() -> bool:
                return await count_status(owner_db, blocked_queue, "processing") == 4

            await eventually(all_claimed)
            endings = [asyncio.ensure_future(final_status(call)) for call in (idle_stream, process)]
            await asyncio.to_thread(srv.stop)
            for ending in endings:
                assert await ending == (OK.UNAVAILABLE, "Server is shutting down")
            for call in (blocked_process, blocked_stream):
                # Its status cannot overtake the unread reply: the client sees the stream reset or UNAVAILABLE.
                code, _ = await final_status(call)
                assert code in (OK.UNAVAILABLE, OK.CANCELLED), code
        assert "Traceback" not in srv.log(), srv.log()
    # Released before the server exited, not left to their 300 s leases.
    assert await count_status(owner_db, blocked_queue, "pending") == 5


# --- TLS --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a server of its own
async def test_tls(database: TestDatabase, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = {"GRPC_TLS_ENABLED": "true", "GRPC_TLS_CERT_PATH": str(cert), "GRPC_TLS_KEY_PATH": str(key)}
    with running_server(database.url, **env) as srv:
        tenant = create_tenant(srv)
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.grpc_port}", credentials,
                                           options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            await assert_serving(Client(ch, tenant.api_key))
        async with channel(srv) as plain:
            await rpc_error(Client(plain, tenant.api_key).enqueue(new_queue()), OK.UNAVAILABLE)
