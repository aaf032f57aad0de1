"""Realtime events over SSE and WebSocket, blocking and asyncio, against a real server."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest

from spooled import AsyncSpooledClient, AuthenticationError, SpooledClient
from spooled.realtime import RealtimeEvent

KINDS = ["sse", "websocket"]


def next_event(inbox: queue.SimpleQueue[RealtimeEvent], name: str, timeout: float = 15) -> RealtimeEvent:
    import time

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {name} event"
        event = inbox.get(timeout=remaining)
        if event.name == name:
            return event


@pytest.mark.parametrize("kind", KINDS)
def test_job_events_arrive(client: SpooledClient, kind: str) -> None:
    inbox: queue.SimpleQueue[RealtimeEvent] = queue.SimpleQueue()
    connected: list[bool] = []
    realtime = client.realtime(type=kind)  # type: ignore[arg-type]
    realtime.on("*", inbox.put)
    realtime.on("connected", lambda: connected.append(True))
    realtime.connect()
    try:
        job_id = client.jobs.create(queue_name="rt", payload={"n": 1}).id
        created = next_event(inbox, "job.created")
        assert created.type == "JobCreated" and created.data["job_id"] == job_id
        lease = client.jobs.claim("rt", "w").jobs[0].lease_id
        client.jobs.progress(job_id, 55, "half", worker_id="w", lease_id=lease)
        progress = next_event(inbox, "job.progress")
        assert (progress.data["job_id"], progress.data["percent"]) == (job_id, 55)
        client.jobs.complete(job_id, worker_id="w", lease_id=lease, result={"ok": 1})
        completed = next_event(inbox, "job.completed")
        assert completed.data["job_id"] == job_id
    finally:
        realtime.close()
    assert connected


@pytest.mark.parametrize("kind", KINDS)
def test_subscribe_narrows_to_a_queue(client: SpooledClient, kind: str) -> None:
    inbox: queue.SimpleQueue[RealtimeEvent] = queue.SimpleQueue()
    realtime = client.realtime(type=kind)  # type: ignore[arg-type]
    realtime.on("job.created", inbox.put)
    realtime.connect()
    try:
        realtime.subscribe(queue_name="orders")
        if kind == "websocket":
            # The subscribe command travels on the socket; a round trip through the API orders it first.
            client.jobs.stats()
        client.jobs.create(queue_name="other", payload={})
        wanted = client.jobs.create(queue_name="orders", payload={}).id
        event = next_event(inbox, "job.created")
        assert event.data["job_id"] == wanted and event.data["queue_name"] == "orders"
    finally:
        realtime.close()


def test_bad_credentials_fail_connect(tenant: Any) -> None:
    with SpooledClient("sp_test_nope", base_url=tenant.server.base_url) as bad:
        for kind in KINDS:
            realtime = bad.realtime(type=kind)  # type: ignore[arg-type]
            with pytest.raises(AuthenticationError):
                realtime.connect()
            realtime.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_async_realtime(aclient: AsyncSpooledClient, kind: str) -> None:
    received: asyncio.Queue[RealtimeEvent] = asyncio.Queue()
    realtime = aclient.realtime(type=kind)  # type: ignore[arg-type]

    @realtime.on("job.created")
    async def on_created(event: RealtimeEvent) -> None:
        await received.put(event)

    await realtime.connect()
    try:
        await realtime.subscribe(queue_name="async-rt")
        await aclient.jobs.stats()
        await aclient.jobs.create(queue_name="async-other", payload={})
        job_id = (await aclient.jobs.create(queue_name="async-rt", payload={})).id
        event = await asyncio.wait_for(received.get(), 15)
        assert event.data["job_id"] == job_id
    finally:
        await realtime.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sse_reconnects_after_the_server_drops_the_stream(database: Any) -> None:
    """A server restart breaks the stream; the client reconnects by itself and keeps delivering."""
    from ..conftest import start_server, support

    server = start_server(database.url)
    port = server.port
    try:
        tenant = support.create_tenant(server)
        inbox: queue.SimpleQueue[RealtimeEvent] = queue.SimpleQueue()
        drops: list[object] = []
        with SpooledClient(tenant.api_key, base_url=server.base_url) as client:
            realtime = client.realtime(type="sse")
            realtime.on("job.created", inbox.put)
            realtime.on("disconnected", drops.append)
            realtime.connect()
            try:
                server.stop()
                server = support.ServerProcess(database.url, port=port)
                server.start(timeout=120.0)
                import time

                deadline = time.monotonic() + 30
                job_id = client.jobs.create(queue_name="after", payload={}).id
                while time.monotonic() < deadline:
                    try:
                        event = inbox.get(timeout=1)
                    except queue.Empty:
                        # Events published before the stream came back are not replayed: publish again.
                        job_id = client.jobs.create(queue_name="after", payload={}).id
                        continue
                    if event.data["job_id"] == job_id:
                        break
                else:
                    raise AssertionError("no event after reconnect")
            finally:
                realtime.close()
        assert drops
    finally:
        server.stop()
