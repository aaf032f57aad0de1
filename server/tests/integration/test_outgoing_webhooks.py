"""Outgoing webhooks over real HTTP: a real server delivers to a real receiver on 127.0.0.1.

These tests run their own server processes on their own databases: the delivery backoff is shortened
(SPOOLED_WEBHOOK_BACKOFF_BASE_SECS) and no other server's dispatcher may claim their deliveries.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from spooled_server.core.webhooks import enqueue_event
from spooled_server.db.database import asyncpg_dsn

from ..conftest import wait_until
from ..support import ServerProcess, Tenant, TestDatabase, create_tenant, free_port
from .webhook_receiver import Receiver

FAST_RETRY = {"SPOOLED_WEBHOOK_BACKOFF_BASE_SECS": "0.2", "OUTGOING_WEBHOOK_MAX_ATTEMPTS": "3"}
PRODUCTION = {"SPOOLED_ENV": "production", "JWT_SECRET": "x" * 48}
STARTUP_TIMEOUT_SECS = 100.0  # a loaded 2-core machine can take half a minute to import and start a server
ALL_JOB_EVENTS = [
    "job.created",
    "job.started",
    "job.completed",
    "job.failed",
    "job.cancelled",
    "job.deadlettered",
    "job.retried",
]


def eventually(predicate: Any, timeout: float = 30.0) -> Any:
    """wait_until with room for a busy machine: deliveries run on the server's own clock."""
    return wait_until(predicate, timeout=timeout)


def fresh_database(database: TestDatabase) -> str:
    return database.create_database(f"spooled_wh_{uuid.uuid4().hex[:10]}")


@contextmanager
def serving(database_url: str, **env: str) -> Iterator[ServerProcess]:
    """A server process that is stopped even when it fails to come up."""
    server = ServerProcess(database_url, env={"SPOOLED_DB_POOL_SIZE": "4", **env})
    try:
        yield server.start(timeout=STARTUP_TIMEOUT_SECS)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def wh_database_url(database: TestDatabase) -> str:
    return fresh_database(database)


@pytest.fixture(scope="module")
def wh_server(wh_database_url: str) -> Iterator[ServerProcess]:
    with serving(wh_database_url, **FAST_RETRY) as server:
        yield server


@pytest.fixture
def org(wh_server: ServerProcess) -> Tenant:
    return create_tenant(wh_server)


def add_webhook(
    client: httpx.Client, url: str, events: list[str], secret: str | None = "s3cret", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "hook", "url": url, "events": events, **extra}
    if secret is not None:
        body["secret"] = secret
    r = client.post("/api/v1/outgoing-webhooks", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def enqueue(client: httpx.Client, queue: str = "work", **fields: Any) -> str:
    r = client.post("/api/v1/jobs", json={"queue_name": queue, "payload": {"n": 1}, **fields})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def claim(client: httpx.Client, queue: str = "work", worker: str = "w1") -> dict[str, Any]:
    jobs = client.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": worker}).json()["jobs"]
    assert len(jobs) == 1, jobs
    return jobs[0]  # type: ignore[no-any-return]


def deliveries(client: httpx.Client, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/outgoing-webhooks/{webhook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# --- configuration ------------------------------------------------------------------------------------------


def test_crud_validation_and_isolation(org: Tenant, wh_server: ServerProcess) -> None:
    other = create_tenant(wh_server)
    with org.client() as c, other.client() as oc:
        created = add_webhook(c, "http://127.0.0.1:9/x", ["job.completed", "queue.paused", "job.completed"])
        assert set(created) == {
            "id",
            "organization_id",
            "name",
            "url",
            "events",
            "enabled",
            "failure_count",
            "last_triggered_at",
            "last_status",
            "created_at",
            "updated_at",
        }
        assert created["events"] == ["job.completed", "queue.paused"]
        assert created["enabled"] is True and created["failure_count"] == 0 and created["last_status"] is None
        hook = created["id"]
        assert [w["id"] for w in c.get("/api/v1/outgoing-webhooks").json()] == [hook]
        assert c.get(f"/api/v1/outgoing-webhooks/{hook}").json() == created

        r = c.put(
            f"/api/v1/outgoing-webhooks/{hook}", json={"name": "renamed", "events": ["workflow.failed"]}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["events"], r.json()["url"]) == (
            "renamed",
            ["workflow.failed"],
            "http://127.0.0.1:9/x",
        )

        for bad, field in [
            ({"events": ["job.exploded"]}, "events"),
            ({"events": []}, "events"),
            ({"url": "ftp://example.com/x"}, "url"),
            ({"name": ""}, "name"),
            ({"url": "http://" + "a" * 2050 + ".com/"}, "url"),
        ]:
            body = {"name": "n", "url": "http://127.0.0.1:9/x", "events": ["job.created"], **bad}
            r = c.post("/api/v1/outgoing-webhooks", json=body)
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR" and r.json()["message"].startswith(field)
        r = c.post("/api/v1/outgoing-webhooks", json={"name": "n", "url": "http://x.test/"})
        assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"

        # Another organization cannot see or touch it.
        assert oc.get(f"/api/v1/outgoing-webhooks/{hook}").status_code == 404
        assert oc.delete(f"/api/v1/outgoing-webhooks/{hook}").status_code == 404
        assert oc.get("/api/v1/outgoing-webhooks").json() == []
        assert c.get("/api/v1/outgoing-webhooks/not-a-uuid").status_code == 404

        # A scoped key is refused on these control-plane routes.
        key = c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["work"]})
        assert key.status_code == 201, key.text
        with org.client(key.json()["key"]) as scoped:
            r = scoped.get("/api/v1/outgoing-webhooks")
            assert r.status_code == 403 and r.json()["code"] == "ACCESS_DENIED"

        assert c.delete(f"/api/v1/outgoing-webhooks/{hook}").status_code == 204
        assert c.get(f"/api/v1/outgoing-webhooks/{hook}").status_code == 404


def test_job_events_delivered_signed(org: Tenant) -> None:
    with Receiver() as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created", "job.started", "job.completed"])
        job_id = enqueue(c)
        job = claim(c)
        r = c.post(
            f"/api/v1/jobs/{job_id}/complete",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "result": {"ok": True}},
        )
        assert r.status_code == 200, r.text

        got = {d.event: d for d in receiver.wait_for(3)}
        assert set(got) == {"job.created", "job.started", "job.completed"}
        for event, received in got.items():
            assert received.signature_valid("s3cret"), event
            assert not received.signature_valid("wrong-secret")
            body = received.json()
            assert set(body) == {"id", "event", "created_at", "data"}
            assert body["event"] == event
            assert received.headers["x-spooled-delivery"] == body["id"]
            assert received.headers["x-spooled-delivery-attempt"] == "1"
            assert received.headers["user-agent"] == "Spooled-Webhooks/1"
            assert received.headers["content-type"] == "application/json"
            assert body["created_at"].endswith("Z")
        assert got["job.created"].json()["data"] == {
            "job_id": job_id,
            "queue_name": "work",
            "priority": 0,
            "status": "pending",
            "workflow_id": None,
        }
        assert got["job.started"].json()["data"] == {
            "job_id": job_id,
            "queue_name": "work",
            "worker_id": "w1",
        }
        assert got["job.completed"].json()["data"] == {
            "job_id": job_id,
            "queue_name": "work",
            "status": "completed",
            "result": {"ok": True},
        }

        listed = eventually(
            lambda: (
                [d for d in deliveries(c, hook["id"]) if d["status"] == "success"]
                if len(deliveries(c, hook["id"], status="success")) == 3
                else None
            )
        )
        assert {d["event"] for d in listed} == {"job.created", "job.started", "job.completed"}
        for d in listed:
            assert d["status_code"] == 200 and d["attempts"] == 1 and d["error"] is None
            assert (
                d["response_body"] == '{"received": true}'
                and d["delivered_at"]
                and d["next_attempt_at"] is None
            )
            assert d["payload"]["id"] == d["id"]
        assert deliveries(c, hook["id"], status="failed") == []
        updated = c.get(f"/api/v1/outgoing-webhooks/{hook['id']}").json()
        assert updated["last_status"] == "success" and updated["last_triggered_at"] is not None


def test_failure_cancel_retry_and_lease_events(org: Tenant, wh_database_url: str) -> None:
    with Receiver() as receiver, org.client() as c:
        add_webhook(c, receiver.url(), ALL_JOB_EVENTS, secret=None)
        # A failure with retries left is job.retried; the last dead-letters (job.failed, job.deadlettered).
        job_id = enqueue(c, max_retries=1)
        job = claim(c)
        c.post(
            f"/api/v1/jobs/{job_id}/fail",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "error": "e1"},
        )
        retried = receiver.wait_for(1, "job.retried")[0]
        assert "x-spooled-signature" not in retried.headers  # no secret, no signature
        assert retried.json()["data"] == {
            "job_id": job_id,
            "queue_name": "work",
            "status": "pending",
            "retry_count": 1,
            "manual": False,
        }

        async def make_due() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(wh_database_url))
            try:
                await conn.execute("UPDATE jobs SET scheduled_at = now() WHERE id = $1", uuid.UUID(job_id))
            finally:
                await conn.close()

        asyncio.run(make_due())
        job = claim(c)
        c.post(
            f"/api/v1/jobs/{job_id}/fail",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "error": "e2"},
        )
        failed = receiver.wait_for(1, "job.failed")[0].json()["data"]
        assert failed == {"job_id": job_id, "queue_name": "work", "status": "deadletter", "error": "e2"}
        dead = receiver.wait_for(1, "job.deadlettered")[0].json()["data"]
        assert dead == {
            "job_id": job_id,
            "queue_name": "work",
            "status": "deadletter",
            "error": "e2",
            "retry_count": 2,
        }

        # A manual retry is job.retried with manual=true; cancelling is job.cancelled.
        assert c.post(f"/api/v1/jobs/{job_id}/retry").status_code == 200
        manual = [d.json()["data"] for d in receiver.wait_for(2, "job.retried") if d.json()["data"]["manual"]]
        assert manual == [
            {"job_id": job_id, "queue_name": "work", "status": "pending", "retry_count": 0, "manual": True}
        ]
        assert c.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        cancelled = receiver.wait_for(1, "job.cancelled")[0].json()["data"]
        assert cancelled == {
            "job_id": job_id,
            "queue_name": "work",
            "status": "cancelled",
            "old_status": "pending",
        }

        # A lease that expires is requeued by the recovery loop: job.retried from the background path.
        other = enqueue(c, queue="leases")
        claim(c, queue="leases")

        async def expire() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(wh_database_url))
            try:
                await conn.execute(
                    "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
                    uuid.UUID(other),
                )
            finally:
                await conn.close()

        asyncio.run(expire())
        requeued = [
            d.json()["data"]
            for d in receiver.wait_for(3, "job.retried")
            if d.json()["data"]["job_id"] == other
        ]
        assert requeued == [
            {"job_id": other, "queue_name": "leases", "status": "pending", "retry_count": 1, "manual": False}
        ]


def test_bulk_enqueue_emits_one_event_per_created_job(org: Tenant) -> None:
    with Receiver() as receiver, org.client() as c:
        add_webhook(c, receiver.url(), ["job.created"])
        r = c.post(
            "/api/v1/jobs/bulk",
            json={
                "queue_name": "bulk",
                "jobs": [
                    {"payload": {"i": 0}, "idempotency_key": "k0"},
                    {"payload": {"i": 1}, "priority": 5},
                    {"payload": {"i": 2}, "idempotency_key": "k0"},
                ],
            },
        )
        assert r.status_code == 200, r.text
        created = [s["job_id"] for s in r.json()["succeeded"] if s["created"]]
        assert len(created) == 2
        got = receiver.wait_for(2, "job.created")
        time.sleep(0.3)  # a replayed key must not add a third event
        assert sorted(d.json()["data"]["job_id"] for d in receiver.received("job.created")) == sorted(created)
        assert {d.json()["data"]["priority"] for d in got} == {0, 5}


def test_delivery_retried_after_receiver_was_down(org: Tenant) -> None:
    port = free_port()  # nothing listens here yet
    with org.client() as c:
        hook = add_webhook(c, f"http://127.0.0.1:{port}/hook", ["job.created"])
        job_id = enqueue(c)
        first = eventually(lambda: [d for d in deliveries(c, hook["id"]) if d["attempts"] >= 1])
        assert first[0]["status"] == "pending" and first[0]["status_code"] is None
        assert first[0]["error"] and first[0]["next_attempt_at"] is not None
        with Receiver(port=port) as receiver:
            got = receiver.wait_for(1, "job.created")[0]
            assert got.json()["data"]["job_id"] == job_id
            assert int(got.headers["x-spooled-delivery-attempt"]) >= 2
            assert got.headers["x-spooled-delivery"] == first[0]["id"]  # the same delivery, retried
            assert got.signature_valid("s3cret")
            done = eventually(lambda: [d for d in deliveries(c, hook["id"]) if d["status"] == "success"])
            assert done[0]["id"] == first[0]["id"] and done[0]["attempts"] >= 2


def test_server_error_then_success_counts_attempts(org: Tenant) -> None:
    with Receiver(status=503) as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created"])
        enqueue(c)
        receiver.wait_for(1)
        receiver.status = 200
        receiver.wait_for(2)
        attempts = [int(d.headers["x-spooled-delivery-attempt"]) for d in receiver.received()]
        assert attempts[:2] == [1, 2]
        assert len({d.headers["x-spooled-delivery"] for d in receiver.received()}) == 1
        row = eventually(lambda: [d for d in deliveries(c, hook["id"]) if d["status"] == "success"])[0]
        assert row["attempts"] == 2 and row["status_code"] == 200


@pytest.mark.timeout(360)
def test_pending_delivery_survives_server_restart(database: TestDatabase) -> None:
    url = fresh_database(database)
    port = free_port()
    # The first retry is due 4 s after the first attempt: after this server has stopped.
    env = {"SPOOLED_WEBHOOK_BACKOFF_BASE_SECS": "4"}
    with serving(url, **env) as first:
        org = create_tenant(first)
        with org.client() as c:
            hook = add_webhook(c, f"http://127.0.0.1:{port}/hook", ["job.created"])
            job_id = enqueue(c)
            pending = eventually(lambda: [d for d in deliveries(c, hook["id"]) if d["attempts"] == 1])[0]
            assert pending["status"] == "pending"
    # Only the restarted server can reach the receiver: it was not listening before.
    with Receiver(port=port) as receiver, serving(url, **env) as second:
        got = receiver.wait_for(1, "job.created", timeout=60)[0]
        assert got.json()["data"]["job_id"] == job_id
        assert got.headers["x-spooled-delivery"] == pending["id"]
        assert int(got.headers["x-spooled-delivery-attempt"]) >= 2
        assert got.signature_valid("s3cret")
        with httpx.Client(base_url=second.base_url, headers={"Authorization": f"Bearer {org.api_key}"}) as c:
            assert eventually(lambda: deliveries(c, hook["id"], status="success"))


def test_completion_callbacks_signed_with_job_secret(org: Tenant) -> None:
    with Receiver() as receiver, org.client() as c:
        done = enqueue(c, completion_webhook=receiver.url("/done"), completion_webhook_secret="job-secret")
        job = claim(c)
        c.post(
            f"/api/v1/jobs/{done}/complete",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "result": {"total": 3}},
        )
        callback = receiver.wait_for(1, "job.completed")[0]
        assert callback.path == "/done"
        assert callback.signature_valid("job-secret")
        assert callback.json()["data"] == {
            "job_id": done,
            "queue_name": "work",
            "status": "completed",
            "result": {"total": 3},
        }

        dead = enqueue(c, max_retries=0, completion_webhook=receiver.url("/dead"))
        job = claim(c)
        c.post(
            f"/api/v1/jobs/{dead}/fail",
            json={"worker_id": "w1", "lease_id": job["lease_id"], "error": "nope"},
        )
        failed = receiver.wait_for(1, "job.failed")[0]
        assert failed.path == "/dead" and "x-spooled-signature" not in failed.headers
        assert failed.json()["data"] == {
            "job_id": dead,
            "queue_name": "work",
            "status": "deadletter",
            "error": "nope",
        }
        assert c.get("/api/v1/outgoing-webhooks").json() == []  # callbacks belong to no webhook


def test_auto_disable_after_twenty_failed_deliveries(org: Tenant, wh_database_url: str) -> None:
    with Receiver(status=500) as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created"])
        r = c.post(
            "/api/v1/jobs/bulk",
            json={"queue_name": "many", "jobs": [{"payload": {"i": i}} for i in range(22)]},
        )
        assert r.json()["success_count"] == 22

        def disabled() -> dict[str, Any] | None:
            current = c.get(f"/api/v1/outgoing-webhooks/{hook['id']}").json()
            return current if not current["enabled"] else None

        state = eventually(disabled, timeout=60)
        assert state["last_status"] == "auto_disabled" and state["failure_count"] >= 20
        # Nothing pending survives a disabled webhook, and new events write nothing for it.
        assert eventually(lambda: not deliveries(c, hook["id"], status="pending"))
        enqueue(c, queue="many")
        time.sleep(0.5)
        assert not deliveries(c, hook["id"], status="pending")
        assert len(deliveries(c, hook["id"], status="failed")) >= 20

        # Re-enabling starts a fresh streak.
        receiver.status = 200
        r = c.put(f"/api/v1/outgoing-webhooks/{hook['id']}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["enabled"] is True
        enqueue(c, queue="many")
        assert eventually(lambda: deliveries(c, hook["id"], status="success"))
        assert c.get(f"/api/v1/outgoing-webhooks/{hook['id']}").json()["failure_count"] == 0


def test_disabling_or_deleting_drops_pending_deliveries(org: Tenant) -> None:
    port = free_port()
    with org.client() as c:
        hook = add_webhook(c, f"http://127.0.0.1:{port}/hook", ["job.created"])
        enqueue(c)
        eventually(lambda: deliveries(c, hook["id"], status="pending"))
        r = c.put(f"/api/v1/outgoing-webhooks/{hook['id']}", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False
        assert deliveries(c, hook["id"], status="pending") == []
        enqueue(c)
        assert all(d["status"] != "pending" for d in deliveries(c, hook["id"]))

        second = add_webhook(c, f"http://127.0.0.1:{port}/hook", ["job.created"])
        enqueue(c)
        eventually(lambda: deliveries(c, second["id"], status="pending"))
        assert c.delete(f"/api/v1/outgoing-webhooks/{second['id']}").status_code == 204
        assert c.get(f"/api/v1/outgoing-webhooks/{second['id']}/deliveries").status_code == 404


def test_test_endpoint_posts_a_signed_test_event(org: Tenant) -> None:
    with Receiver() as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created"], secret="t0p")
        r = c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/test")
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["success"] is True and result["status_code"] == 200 and result["error"] is None
        assert isinstance(result["response_time_ms"], int)
        sent = receiver.received("webhook.test")
        assert len(sent) == 1 and sent[0].signature_valid("t0p")
        body = sent[0].json()
        assert body["event"] == "webhook.test" and body["test"] is True
        assert body["webhook_id"] == hook["id"] and body["organization_id"] == org.org_id
        assert deliveries(c, hook["id"]) == []  # not stored

        # PUT: an omitted secret is kept, a string replaces it, null clears it.
        def test_delivery() -> Any:
            before = len(receiver.received("webhook.test"))
            assert c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/test").json()["success"] is True
            return receiver.received("webhook.test")[before]

        c.put(f"/api/v1/outgoing-webhooks/{hook['id']}", json={"name": "renamed"})
        assert test_delivery().signature_valid("t0p")
        c.put(f"/api/v1/outgoing-webhooks/{hook['id']}", json={"secret": "n3w"})
        assert test_delivery().signature_valid("n3w")
        c.put(f"/api/v1/outgoing-webhooks/{hook['id']}", json={"secret": None})
        assert "x-spooled-signature" not in test_delivery().headers

        down = add_webhook(c, f"http://127.0.0.1:{free_port()}/hook", ["job.created"])
        result = c.post(f"/api/v1/outgoing-webhooks/{down['id']}/test").json()
        assert result["success"] is False and result["status_code"] is None and result["error"]
        assert isinstance(result["response_time_ms"], int)


def test_webhooks_quota_counts_enabled_webhooks(wh_server: ServerProcess) -> None:
    free = create_tenant(wh_server, plan_tier="free")  # max_webhooks = 1
    with free.client() as c:
        add_webhook(c, "http://127.0.0.1:9/a", ["job.created"])
        r = c.post(
            "/api/v1/outgoing-webhooks",
            json={"name": "b", "url": "http://127.0.0.1:9/b", "events": ["job.created"]},
        )
        assert r.status_code == 429, r.text
        assert (r.json()["code"], r.json()["resource"], r.json()["current"], r.json()["limit"]) == (
            "QUOTA_EXCEEDED",
            "webhooks",
            1,
            1,
        )
        spare = add_webhook(c, "http://127.0.0.1:9/b", ["job.created"], enabled=False)
        assert c.put(f"/api/v1/outgoing-webhooks/{spare['id']}", json={"name": "spare"}).status_code == 200
        r = c.put(f"/api/v1/outgoing-webhooks/{spare['id']}", json={"enabled": True})
        assert r.status_code == 429 and r.json()["resource"] == "webhooks"
        assert c.get(f"/api/v1/outgoing-webhooks/{spare['id']}").json()["enabled"] is False


def test_manual_retry_of_a_failed_delivery(org: Tenant) -> None:
    with Receiver(status=500) as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created"])
        enqueue(c)
        failed = eventually(lambda: deliveries(c, hook["id"], status="failed"))[0]
        assert failed["attempts"] == 3 and failed["status_code"] == 500 and failed["error"] == "HTTP 500"
        assert c.get(f"/api/v1/outgoing-webhooks/{hook['id']}").json()["last_status"] == "failed"

        r = c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/retry/{failed['id']}")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "success": False,
            "message": r.json()["message"],
            "delivery_id": failed["id"],
            "status": "failed",
        }
        assert isinstance(r.json()["message"], str)

        receiver.status = 200
        r = c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/deliveries/{failed['id']}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["success"] is True and r.json()["status"] == "success"
        assert receiver.received()[-1].headers["x-spooled-delivery-attempt"] == "5"
        row = deliveries(c, hook["id"])[0]
        assert row["status"] == "success" and row["attempts"] == 5
        assert c.get(f"/api/v1/outgoing-webhooks/{hook['id']}").json()["failure_count"] == 0

        r = c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/retry/{failed['id']}")
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
        assert c.post(f"/api/v1/outgoing-webhooks/{hook['id']}/retry/{uuid.uuid4()}").status_code == 404


def test_events_from_python_paths_use_the_outbox_helper(org: Tenant, wh_database_url: str) -> None:
    """`enqueue_event` writes inside the caller's transaction; the dispatcher's poll sends the row."""
    with Receiver() as receiver, org.client() as c:
        add_webhook(c, receiver.url(), ["queue.paused"])

        async def pause_event(commit: bool) -> int:
            conn = await asyncpg.connect(asyncpg_dsn(wh_database_url))
            try:
                tx = conn.transaction()
                await tx.start()
                written = await enqueue_event(
                    conn,
                    org.org_id,
                    "queue.paused",
                    {"queue_name": "work", "paused_at": None, "reason": "test"},
                )
                await (tx.commit() if commit else tx.rollback())
                return written
            finally:
                await conn.close()

        assert asyncio.run(pause_event(commit=False)) == 1
        assert asyncio.run(pause_event(commit=True)) == 1
        got = receiver.wait_for(1, "queue.paused", timeout=30)
        time.sleep(0.3)
        assert len(receiver.received("queue.paused")) == 1  # the rolled-back event was never sent
        assert got[0].json()["data"] == {"queue_name": "work", "paused_at": None, "reason": "test"}
        assert got[0].signature_valid("s3cret")


# --- production rules --------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_production_rejects_private_targets_and_rechecks_at_send_time(database: TestDatabase) -> None:
    url = fresh_database(database)
    with serving(url, **PRODUCTION) as server, Receiver() as receiver:
        org = create_tenant(server)
        with org.client() as c:
            for target in [
                "http://93.184.215.14/hook",
                "https://127.0.0.1/hook",
                "https://localhost/hook",
                "https://10.1.2.3/hook",
                "https://169.254.169.254/latest/meta-data",
                "https://[::1]/hook",
                "https://[::ffff:127.0.0.1]/hook",
                "https://100.64.0.1/x",
            ]:
                r = c.post(
                    "/api/v1/outgoing-webhooks", json={"name": "n", "url": target, "events": ["job.created"]}
                )
                assert r.status_code == 400, (target, r.text)
                assert r.json()["message"].startswith("url:")
            assert add_webhook(c, "https://93.184.215.14/hook", ["workflow.failed"])["enabled"] is True

            # Completion callbacks follow the same rules at enqueue: plain http and loopback hosts are refused.
            https_loopback = f"https://127.0.0.1:{receiver.port}/cb"
            for callback in [receiver.url("/cb"), https_loopback]:
                r = c.post("/api/v1/jobs", json={"queue_name": "work", "payload": {}, "completion_webhook": callback})
                assert r.status_code == 400, r.text
                assert r.json()["message"].startswith("completion_webhook:")

            # The address is checked again at send time: a callback row whose target is (now) not allowed, as
            # after a DNS change, fails without reaching the receiver.
            async def plant_callbacks() -> None:
                conn = await asyncpg.connect(asyncpg_dsn(url))
                try:
                    for target in [receiver.url("/cb"), https_loopback]:
                        await conn.execute(
                            "INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, event, payload)"
                            " VALUES (gen_random_uuid(), $1, NULL, $2, 'job.completed', '{}'::jsonb)",
                            uuid.UUID(org.org_id), target,
                        )
                finally:
                    await conn.close()

            asyncio.run(plant_callbacks())

            async def callback_errors() -> dict[str, str]:
                conn = await asyncpg.connect(asyncpg_dsn(url))
                try:
                    rows = await conn.fetch(
                        "SELECT url, error FROM webhook_deliveries WHERE webhook_id IS NULL AND attempts >= 1"
                    )
                    return {r["url"]: r["error"] for r in rows}
                finally:
                    await conn.close()

            errors = eventually(
                lambda: (lambda e: e if len(e) == 2 else None)(asyncio.run(callback_errors()))
            )
            assert "must use https" in errors[receiver.url("/cb")]
            assert "not a public address" in errors[https_loopback]
            assert receiver.received() == []


def test_delivery_payload_is_valid_json_envelope_in_storage(org: Tenant, wh_database_url: str) -> None:
    """The stored payload is the exact envelope that is sent (its id is the delivery id)."""
    with Receiver() as receiver, org.client() as c:
        hook = add_webhook(c, receiver.url(), ["job.created"])
        enqueue(c)
        sent = receiver.wait_for(1)[0]
        row = eventually(lambda: deliveries(c, hook["id"], status="success"))[0]
        assert json.loads(sent.body) == row["payload"]
