"""API keys over real HTTP (rest.md §4): create, list, read, update, revoke, quota, scope."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ..support import Tenant, create_tenant

SUMMARY_FIELDS = {
    "id",
    "name",
    "key_prefix",
    "queues",
    "rate_limit",
    "is_active",
    "created_at",
    "last_used",
    "expires_at",
}
KEY_FORMAT = re.compile(r"^sp_test_[A-Za-z0-9_-]{43}$")


def test_create_returns_the_raw_key_once(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/api-keys", json={"name": "CI deploy (prod)-1.x"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert set(created) == {"id", "key", "name", "created_at", "expires_at", "queues"}
        assert KEY_FORMAT.match(created["key"])
        assert created["queues"] == [] and created["expires_at"] is None
        assert created["name"] == "CI deploy (prod)-1.x"
        summary = c.get(f"/api/v1/api-keys/{created['id']}").json()
        assert set(summary) == SUMMARY_FIELDS
        assert summary["key_prefix"] == created["key"][:12]
        assert summary["is_active"] is True and summary["queues"] == [] and summary["rate_limit"] is None
        assert "key" not in summary and "key_hash" not in summary
    # The new key works on its own.
    with tenant.client(key=created["key"]) as c2:
        assert c2.get("/api/v1/organizations").status_code == 200


async def test_only_the_hash_is_stored(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "hashed"}).json()
    row = await owner_db.fetchrow(
        "SELECT key_hash, key_prefix FROM api_keys WHERE id = $1", uuid.UUID(created["id"])
    )
    import hashlib

    assert row["key_hash"] == hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in row.values()


def test_list_is_newest_first_and_includes_revoked_keys(tenant: Tenant) -> None:
    with tenant.client() as c:
        first = c.post("/api/v1/api-keys", json={"name": "first"}).json()
        second = c.post(
            "/api/v1/api-keys", json={"name": "second", "queues": ["a", "b.*"], "rate_limit": 600}
        ).json()
        assert c.delete(f"/api/v1/api-keys/{first['id']}").status_code == 204
        keys = c.get("/api/v1/api-keys").json()
    names = [k["name"] for k in keys]
    assert names == ["second", "first", "Initial Admin Key"]
    assert all(set(k) == SUMMARY_FIELDS for k in keys)
    by_name = {k["name"]: k for k in keys}
    assert by_name["first"]["is_active"] is False
    assert by_name["second"]["queues"] == ["a", "b.*"] and by_name["second"]["rate_limit"] == 600
    assert by_name["Initial Admin Key"]["queues"] == ["*"]
    assert second["id"] == by_name["second"]["id"]


def test_expiry_must_be_in_the_future(tenant: Tenant) -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    with tenant.client() as c:
        r = c.post("/api/v1/api-keys", json={"name": "temp", "expires_at": future})
        assert r.status_code == 201
        assert r.json()["expires_at"].endswith("Z")
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        r = c.post("/api/v1/api-keys", json={"name": "temp", "expires_at": past})
        assert r.status_code == 400
        assert r.json()["message"].startswith("expires_at:")
        r = c.post("/api/v1/api-keys", json={"name": "temp", "expires_at": "tomorrow"})
        assert r.status_code == 400


async def test_expired_key_is_rejected(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "soon", "expires_at": future}).json()
    await owner_db.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(created["id"])
    )
    with tenant.client(key=created["key"]) as c:
        assert c.get("/api/v1/organizations").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad/name"}, "name"),
        ({"name": "ok", "queues": ["emails", "bad queue"]}, "queues[1]"),
        ({"name": "ok", "queues": ["x" * 256]}, "queues[0]"),
        ({"name": "ok", "queues": [f"q{i}" for i in range(51)]}, "queues"),
        ({"name": "ok", "rate_limit": 0}, "rate_limit"),
        ({"name": "ok", "rate_limit": 10001}, "rate_limit"),
        ({"name": "ok", "permissions": ["jobs:read"]}, "permissions"),
        ({"name": "ok", "permissions": None}, "permissions"),
    ],
)
def test_create_validation(tenant: Tenant, body: dict[str, object], field: str) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/api-keys", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert r.json()["message"].startswith(f"{field}:")
    assert r.json()["details"][0]["field"] == field


def test_create_shape_errors(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/api-keys", json={"queues": []})
        assert r.status_code == 422
        assert r.json()["details"][0] == {"field": "name", "message": "is required", "code": "missing_field"}
        r = c.post("/api/v1/api-keys", json={"name": "x", "rate_limit": "fast"})
        assert r.status_code == 422
        assert r.json()["details"][0]["code"] == "invalid_type"
        r = c.post("/api/v1/api-keys", content=b"name=x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415


def test_update_changes_fields_and_takes_effect_at_once(tenant: Tenant) -> None:
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "worker", "rate_limit": 100}).json()
        with tenant.client(key=created["key"]) as worker:
            assert worker.get("/api/v1/api-keys").status_code == 200  # unrestricted for now
            r = c.put(f"/api/v1/api-keys/{created['id']}", json={"name": "worker-2", "queues": ["emails"]})
            assert r.status_code == 200, r.text
            updated = r.json()
            assert set(updated) == SUMMARY_FIELDS
            assert updated["name"] == "worker-2" and updated["queues"] == ["emails"]
            assert updated["rate_limit"] == 100  # omitted fields are kept
            # The new scope applies on the next request (this replica dropped its cache).
            r = worker.get("/api/v1/api-keys")
            assert r.status_code == 403
            assert r.json()["code"] == "ACCESS_DENIED"
            r = c.put(f"/api/v1/api-keys/{created['id']}", json={"rate_limit": None})
            assert r.json()["rate_limit"] is None
            r = c.put(f"/api/v1/api-keys/{created['id']}", json={"is_active": False})
            assert r.json()["is_active"] is False
            assert worker.get("/api/v1/organizations").status_code == 401
            r = c.put(f"/api/v1/api-keys/{created['id']}", json={"is_active": True})
            assert r.json()["is_active"] is True
            assert worker.get("/api/v1/organizations").status_code == 200


def test_update_validation_and_missing_keys(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        key_id = c.post("/api/v1/api-keys", json={"name": "k"}).json()["id"]
        assert c.put(f"/api/v1/api-keys/{key_id}", json={"name": "no/slash"}).status_code == 400
        assert c.put(f"/api/v1/api-keys/{key_id}", json={"rate_limit": 0}).status_code == 400
        assert c.put(f"/api/v1/api-keys/{key_id}", json={"queues": ["a b"]}).status_code == 400
        assert c.put(f"/api/v1/api-keys/{key_id}", json={"permissions": {}}).status_code == 400
        assert c.put(f"/api/v1/api-keys/{key_id}", json={"is_active": "yes"}).status_code == 422
        missing = str(uuid.uuid4())
        for method in ("GET", "PUT", "DELETE"):
            r = c.request(method, f"/api/v1/api-keys/{missing}", json={} if method == "PUT" else None)
            assert r.status_code == 404, method
            assert r.json()["code"] == "NOT_FOUND"
        assert c.get("/api/v1/api-keys/not-a-uuid").status_code == 404
    # Another organization's key is invisible.
    with other_tenant.client() as other:
        for method in ("GET", "PUT", "DELETE"):
            r = other.request(method, f"/api/v1/api-keys/{key_id}", json={} if method == "PUT" else None)
            assert r.status_code == 404, method
    with tenant.client() as c:
        assert c.get(f"/api/v1/api-keys/{key_id}").json()["is_active"] is True


def test_revoke_stops_the_key_at_once(tenant: Tenant) -> None:
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "revoke-me"}).json()
        with tenant.client(key=created["key"]) as victim:
            assert victim.get("/api/v1/organizations").status_code == 200  # now cached on this replica
            r = c.delete(f"/api/v1/api-keys/{created['id']}")
            assert r.status_code == 204 and r.content == b""
            r = victim.get("/api/v1/organizations")
            assert r.status_code == 401
            assert r.json()["code"] == "UNAUTHORIZED"
        assert c.get(f"/api/v1/api-keys/{created['id']}").json()["is_active"] is False
        # Revoking again is harmless.
        assert c.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204


def test_scoped_keys_cannot_manage_keys(tenant: Tenant) -> None:
    with tenant.client() as c:
        scoped = c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["emails"]}).json()
        target = c.post("/api/v1/api-keys", json={"name": "target"}).json()["id"]
    with tenant.client(key=scoped["key"]) as s:
        for method, path in [
            ("GET", "/api/v1/api-keys"),
            ("POST", "/api/v1/api-keys"),
            ("GET", f"/api/v1/api-keys/{target}"),
            ("PUT", f"/api/v1/api-keys/{target}"),
            ("DELETE", f"/api/v1/api-keys/{target}"),
        ]:
            r = s.request(method, path, json={"name": "x"} if method in ("POST", "PUT") else None)
            assert r.status_code == 403, (method, path)
            assert r.json()["code"] == "ACCESS_DENIED"


def test_unauthenticated_requests_get_401(tenant: Tenant) -> None:
    import httpx

    r = httpx.get(tenant.server.base_url + "/api/v1/api-keys", timeout=30)
    assert r.status_code == 401
    r = httpx.get(
        tenant.server.base_url + "/api/v1/api-keys",
        headers={"Authorization": "Bearer nope-nope-nope"},
        timeout=30,
    )
    assert r.status_code == 401


def test_api_keys_quota_on_free_plan(tenant: Tenant) -> None:
    free = create_tenant(tenant.server, "free")  # max_api_keys = 2, the initial key counts
    with free.client() as c:
        second = c.post("/api/v1/api-keys", json={"name": "second"})
        assert second.status_code == 201
        r = c.post("/api/v1/api-keys", json={"name": "third"})
        assert r.status_code == 429
        body = r.json()
        assert body["code"] == "QUOTA_EXCEEDED"
        assert (body["resource"], body["current"], body["limit"], body["plan"], body["upgrade_to"]) == (
            "api_keys",
            2,
            2,
            "free",
            "starter",
        )
        # Revoking frees a slot; re-activating the revoked key would exceed the cap again.
        assert c.delete(f"/api/v1/api-keys/{second.json()['id']}").status_code == 204
        third = c.post("/api/v1/api-keys", json={"name": "third"})
        assert third.status_code == 201
        r = c.put(f"/api/v1/api-keys/{second.json()['id']}", json={"is_active": True})
        assert r.status_code == 429
        assert r.json()["resource"] == "api_keys"
