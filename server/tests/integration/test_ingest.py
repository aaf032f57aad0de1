"""Incoming webhooks (rest.md §14) over real HTTP: provider signatures over the raw body, idempotent
redeliveries, the audit list, quotas and the production https rule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from spooled_server.db.database import asyncpg_dsn

from ..support import ServerProcess, Tenant, TestDatabase, create_tenant

GITHUB_SECRET = "gh-secret"
STRIPE_SECRET = "whsec_stripe"
SHOPIFY_SECRET = "shop-secret"


async def org_token(owner_db: asyncpg.Connection, tenant: Tenant) -> str:
    token = await owner_db.fetchval(
        "SELECT settings->>'webhook_token' FROM organizations WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    assert token
    return str(token)


async def set_provider_secrets(owner_db: asyncpg.Connection, tenant: Tenant) -> None:
    secrets = {"github": GITHUB_SECRET, "stripe": STRIPE_SECRET, "shopify": SHOPIFY_SECRET}
    await owner_db.execute(
        "UPDATE organizations SET settings = settings"
        " || jsonb_build_object('ingest_secrets', $2::text::jsonb)"
        " WHERE id = $1",
        uuid.UUID(tenant.org_id),
        json.dumps(secrets),
    )


def webhooks_client(server: ServerProcess) -> httpx.AsyncClient:
    """No Authorization header: ingest routes authenticate by org id and webhook credential only."""
    return httpx.AsyncClient(base_url=server.base_url, timeout=30.0)


def github_headers(
    body: bytes, event: str = "push", delivery: str | None = None, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def stripe_headers(body: bytes, timestamp: int | None = None, secret: str = STRIPE_SECRET) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={mac}"}


def shopify_headers(
    body: bytes,
    topic: str = "orders/create",
    webhook_id: str | None = "wh-1",
    secret: str = SHOPIFY_SECRET,
    **extra: str,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64.b64encode(
            hmac.new(secret.encode(), body, hashlib.sha256).digest()
        ).decode(),
        **extra,
    }
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    return headers


def assert_unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["code"] in {"UNAUTHORIZED", "AUTHENTICATION_FAILED"}
    assert r.json()["message"] == "Invalid webhook credentials"  # never says which part was wrong


async def job_of(tenant: Tenant, job_id: str) -> dict[str, Any]:
    async with tenant.async_client() as c:
        r = await c.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_custom_token_creates_a_job_and_replays_collapse(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    token = await org_token(owner_db, tenant)
    url = f"/api/v1/webhooks/{tenant.org_id}/custom"
    body = {
        "queue_name": "orders",
        "payload": {"order": 7},
        "event_type": "order.paid",
        "idempotency_key": "order-7",
        "priority": 5,
    }
    async with webhooks_client(server) as c:
        r = await c.post(url, json=body, headers={"X-Webhook-Token": token})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["created"] is True and first["queue_name"] == "orders" and first["status"] == "pending"
        job = await job_of(tenant, first["job_id"])
        assert job["payload"] == {"order": 7} and job["priority"] == 5
        assert job["tags"] == {"source": "custom", "event_type": "order.paid"}

        again = await c.post(
            url, json={**body, "payload": {"order": "changed"}}, headers={"X-Webhook-Token": token}
        )
        assert again.status_code == 200
        assert again.json() == {
            "job_id": first["job_id"],
            "created": False,
            "queue_name": "orders",
            "status": "pending",
        }
        assert (await job_of(tenant, first["job_id"]))["payload"] == {"order": 7}

        for headers in [{"X-Webhook-Token": token + "x"}, {}, {"X-Webhook-Token": ""}]:
            assert_unauthorized(await c.post(url, json=body, headers=headers))
        r = await c.post(
            f"/api/v1/webhooks/{uuid.uuid4()}/custom", json=body, headers={"X-Webhook-Token": token}
        )
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        assert (await c.post("/api/v1/webhooks/not-an-org/custom", json=body)).status_code == 404

        ok = {"X-Webhook-Token": token, "Content-Type": "application/json"}
        r = await c.post(url, content=b"{not json", headers=ok)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"
        r = await c.post(url, json={"payload": {}}, headers={"X-Webhook-Token": token})
        assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"
        for bad in [
            {"event_type": "has space"},
            {"queue_name": ".hidden"},
            {"priority": 101},
            {"idempotency_key": "k" * 256},
        ]:
            r = await c.post(
                url, json={**body, "idempotency_key": None, **bad}, headers={"X-Webhook-Token": token}
            )
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"


async def test_github_signature_ping_override_and_redelivery(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await set_provider_secrets(owner_db, tenant)
    url = f"/api/v1/webhooks/{tenant.org_id}/github"
    body = json.dumps({"ref": "refs/heads/main", "commits": [{"id": "abc"}]}).encode()
    async with webhooks_client(server) as c:
        headers = github_headers(body, delivery="d-1")
        r = await c.post(url, content=body, headers=headers)
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["created"] is True and created["queue_name"] == "github-push"
        job = await job_of(tenant, created["job_id"])
        assert job["payload"] == json.loads(body) and job["tags"] == {
            "source": "github",
            "event_type": "push",
        }
        assert job["idempotency_key"] == "github:d-1"

        redelivery = await c.post(url, content=body, headers=headers)
        assert redelivery.json()["job_id"] == created["job_id"] and redelivery.json()["created"] is False

        assert_unauthorized(await c.post(url, content=body, headers=github_headers(body, secret="wrong")))
        assert_unauthorized(await c.post(url, content=body + b" ", headers=github_headers(body)))
        unsigned = {k: v for k, v in github_headers(body).items() if k != "X-Hub-Signature-256"}
        assert_unauthorized(await c.post(url, content=body, headers=unsigned))
        # A sent X-Webhook-Token must match the org's token as well.
        assert_unauthorized(
            await c.post(url, content=body, headers={**github_headers(body), "X-Webhook-Token": "whk_wrong"})
        )
        token = await org_token(owner_db, tenant)
        r = await c.post(url, content=body, headers={**github_headers(body), "X-Webhook-Token": token})
        assert r.status_code == 200 and r.json()["created"] is True

        ping = json.dumps({"zen": "Keep it logically awesome."}).encode()
        r = await c.post(url, content=ping, headers=github_headers(ping, event="ping"))
        assert r.status_code == 200, r.text
        assert r.json()["job_id"] is None and r.json()["status"] is None

        r = await c.post(
            url + "?queue=ci-events", content=body, headers=github_headers(body, event="workflow_run")
        )
        assert r.status_code == 200 and r.json()["queue_name"] == "ci-events"
        assert (await job_of(tenant, r.json()["job_id"]))["queue_name"] == "ci-events"

        bad_json = b"not json at all"
        r = await c.post(url, content=bad_json, headers=github_headers(bad_json))
        assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"


async def test_github_falls_back_to_the_webhook_token_as_secret(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    token = await org_token(owner_db, tenant)
    body = b'{"action":"opened"}'
    async with webhooks_client(server) as c:
        r = await c.post(
            f"/api/v1/webhooks/{tenant.org_id}/github",
            content=body,
            headers=github_headers(body, event="issues", secret=token),
        )
        assert r.status_code == 200 and r.json()["queue_name"] == "github-issues"


async def test_stripe_signature_tolerance_and_redelivery(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await set_provider_secrets(owner_db, tenant)
    url = f"/api/v1/webhooks/{tenant.org_id}/stripe"
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(
        {"id": event_id, "type": "invoice.payment_succeeded", "data": {"object": {"total": 100}}}
    ).encode()
    async with webhooks_client(server) as c:
        r = await c.post(url, content=body, headers=stripe_headers(body))
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["created"] is True and created["queue_name"] == "stripe-invoice-payment_succeeded"
        job = await job_of(tenant, created["job_id"])
        assert job["idempotency_key"] == f"stripe:{event_id}"
        assert job["tags"] == {"source": "stripe", "event_type": "invoice.payment_succeeded"}

        # Stripe retries with a new timestamp and signature: still the same event, the same job.
        r = await c.post(url, content=body, headers=stripe_headers(body, timestamp=int(time.time()) - 60))
        assert r.status_code == 200 and r.json() == {**created, "created": False}

        assert_unauthorized(
            await c.post(url, content=body, headers=stripe_headers(body, int(time.time()) - 400))
        )
        assert_unauthorized(
            await c.post(url, content=body, headers=stripe_headers(body, secret="whsec_other"))
        )
        assert_unauthorized(await c.post(url, content=body, headers={"Content-Type": "application/json"}))

        no_type = json.dumps({"id": "evt_x"}).encode()
        r = await c.post(url, content=no_type, headers=stripe_headers(no_type))
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


async def test_shopify_signature_and_redelivery(
    server: ServerProcess, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await set_provider_secrets(owner_db, tenant)
    url = f"/api/v1/webhooks/{tenant.org_id}/shopify"
    body = json.dumps({"id": 820982911946154508, "email": "jon@example.com"}).encode()
    webhook_id = f"b54557e4-{uuid.uuid4().hex[:8]}"
    async with webhooks_client(server) as c:
        r = await c.post(url, content=body, headers=shopify_headers(body, webhook_id=webhook_id))
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["created"] is True and created["queue_name"] == "shopify-orders-create"
        job = await job_of(tenant, created["job_id"])
        assert job["idempotency_key"] == f"shopify:{webhook_id}"
        assert job["payload"] == {"id": 820982911946154508, "email": "jon@example.com"}

        r = await c.post(url, content=body, headers=shopify_headers(body, webhook_id=webhook_id))
        assert r.json() == {**created, "created": False}

        # Without X-Shopify-Webhook-Id the event id is the key.
        by_event = shopify_headers(
            body, topic="products/update", webhook_id=None, **{"X-Shopify-Event-Id": "ev-9"}
        )
        r = await c.post(url, content=body, headers=by_event)
        assert r.status_code == 200 and r.json()["queue_name"] == "shopify-products-update"
        assert (await job_of(tenant, r.json()["job_id"]))["idempotency_key"] == "shopify:ev-9"

        assert_unauthorized(await c.post(url, content=body, headers=shopify_headers(body, secret="nope")))
        assert_unauthorized(await c.post(url, content=body + b"\n", headers=shopify_headers(body)))


async def test_audit_list_shows_accepted_requests_only(
    server: ServerProcess, tenant: Tenant, other_tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    await set_provider_secrets(owner_db, tenant)
    token = await org_token(owner_db, tenant)
    base = f"/api/v1/webhooks/{tenant.org_id}"
    before = time.time()
    async with webhooks_client(server) as c:
        custom = {
            "queue_name": "audit-q",
            "payload": {},
            "idempotency_key": "a-1",
            "event_type": "thing.done",
        }
        await c.post(f"{base}/custom", json=custom, headers={"X-Webhook-Token": token})
        await c.post(f"{base}/custom", json=custom, headers={"X-Webhook-Token": token})
        await c.post(f"{base}/custom", json=custom, headers={"X-Webhook-Token": "bad"})
        ping = b"{}"
        await c.post(f"{base}/github", content=ping, headers=github_headers(ping, event="ping"))
        body = b'{"ref":"x"}'
        r = await c.post(f"{base}/github", content=body, headers=github_headers(body, delivery="g-1"))
        github_job = r.json()["job_id"]

    async with tenant.async_client() as c:
        r = await c.get("/api/v1/webhooks/deliveries")
        assert r.status_code == 200, r.text
        rows = r.json()
        assert [(x["provider"], x["status"], x["matched_queue"]) for x in rows] == [
            ("github", "created", "github-push"),
            ("custom", "duplicate", "audit-q"),
            ("custom", "created", "audit-q"),
        ]
        assert set(rows[0]) == {
            "id",
            "provider",
            "event_type",
            "matched_queue",
            "job_id",
            "status",
            "created_at",
        }
        assert rows[0]["job_id"] == github_job and rows[0]["event_type"] == "push"
        assert rows[1]["job_id"] == rows[2]["job_id"] and rows[2]["event_type"] == "thing.done"

        dup = (await c.get("/api/v1/webhooks/deliveries", params={"status": "duplicate"})).json()
        assert [x["provider"] for x in dup] == ["custom"]
        by_queue = (await c.get("/api/v1/webhooks/deliveries", params={"queue_name": "github-push"})).json()
        assert [x["job_id"] for x in by_queue] == [github_job]
        paged = (await c.get("/api/v1/webhooks/deliveries", params={"limit": 1, "offset": 1})).json()
        assert [x["id"] for x in paged] == [rows[1]["id"]]
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before + 3600))
        assert (await c.get("/api/v1/webhooks/deliveries", params={"since": since})).json() == []
        r = await c.get("/api/v1/webhooks/deliveries", params={"since": "yesterday"})
        assert r.status_code == 400

        key = await c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["audit-q"]})
        assert key.status_code == 201, key.text
    async with tenant.async_client(key.json()["key"]) as scoped:
        assert (await scoped.get("/api/v1/webhooks/deliveries")).status_code == 403
    async with other_tenant.async_client() as c:
        assert (await c.get("/api/v1/webhooks/deliveries")).json() == []

    # Rejected requests and pings are kept, unlisted, and hold no payload or signature.
    kinds = await owner_db.fetch(
        "SELECT status, error FROM ingest_audit WHERE organization_id = $1", uuid.UUID(tenant.org_id)
    )
    assert sorted(k["status"] for k in kinds) == ["created", "created", "duplicate", "ignored", "rejected"]
    assert [k["error"] for k in kinds if k["status"] == "rejected"] == ["UNAUTHORIZED"]


async def test_body_limit_quotas_and_payload_caps(
    server: ServerProcess, owner_db: asyncpg.Connection
) -> None:
    free = create_tenant(server, plan_tier="free")  # 10 active jobs, 2 queues, 64 KiB payloads
    token = await org_token(owner_db, free)
    url = f"/api/v1/webhooks/{free.org_id}/custom"
    async with webhooks_client(server) as c:
        big = {"queue_name": "q0", "payload": {"blob": "x" * 200_000}}
        r = await c.post(url, json=big, headers={"X-Webhook-Token": token})
        assert r.status_code == 200, r.text  # the plan's 64 KiB cap does not apply to ingest
        for i in range(1, 10):  # new queues past the plan's 2 are fine too: ingest is exempt from the cap
            r = await c.post(
                url, json={"queue_name": f"q{i}", "payload": {"i": i}}, headers={"X-Webhook-Token": token}
            )
            assert r.status_code == 200, r.text
        r = await c.post(url, json={"queue_name": "q0", "payload": {}}, headers={"X-Webhook-Token": token})
        assert r.status_code == 429 and r.json()["code"] == "QUOTA_EXCEEDED"
        assert r.json()["resource"] == "active_jobs"

        huge = msgspec.json.encode({"queue_name": "q0", "payload": {"blob": "y" * (6 * 1024 * 1024)}})
        r = await c.post(
            url, content=huge, headers={"X-Webhook-Token": token, "Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
        over_five = msgspec.json.encode(
            {"queue_name": "q0", "payload": {"blob": "z" * (5 * 1024 * 1024 + 10)}}
        )
        assert len(over_five) < 6 * 1024 * 1024
        r = await c.post(
            url, content=over_five, headers={"X-Webhook-Token": token, "Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.timeout(240)
def test_production_requires_https(database: TestDatabase) -> None:
    url = database.create_database(f"spooled_ingest_{uuid.uuid4().hex[:10]}")
    server = ServerProcess(
        url, env={"SPOOLED_ENV": "production", "JWT_SECRET": "y" * 48, "SPOOLED_DB_POOL_SIZE": "4"}
    )
    try:
        server.start(timeout=100)  # a loaded 2-core machine can take half a minute to start a server
        tenant = create_tenant(server)

        async def token_of() -> str:
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                return await org_token(conn, tenant)
            finally:
                await conn.close()

        token = asyncio.run(token_of())
        body = {"queue_name": "q", "payload": {}}
        with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
            r = c.post(
                f"/api/v1/webhooks/{tenant.org_id}/custom", json=body, headers={"X-Webhook-Token": token}
            )
            assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
            r = c.post(
                f"/api/v1/webhooks/{tenant.org_id}/custom",
                json=body,
                headers={"X-Webhook-Token": token, "X-Forwarded-Proto": "https"},
            )
            assert r.status_code == 200, r.text
    finally:
        server.stop()
