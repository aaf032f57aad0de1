"""Organizations over real HTTP (rest.md §3, §19 aliases): create, slugs, read, update, delete, members,
usage, the incoming-webhook token, and the registration modes."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import msgspec
import pytest

from ..support import ADMIN_KEY, ServerProcess, Tenant, TestDatabase, create_tenant, running_server

ORG_FIELDS = {
    "id",
    "name",
    "slug",
    "plan_tier",
    "billing_email",
    "settings",
    "custom_limits",
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_subscription_status",
    "stripe_current_period_end",
    "stripe_cancel_at_period_end",
    "created_at",
    "updated_at",
}
USAGE_KEYS = {
    "jobs_today",
    "active_jobs",
    "queues",
    "workers",
    "api_keys",
    "schedules",
    "workflows",
    "webhooks",
}
LIMIT_FIELDS = {
    "tier",
    "display_name",
    "max_jobs_per_day",
    "max_active_jobs",
    "max_queues",
    "max_workers",
    "max_api_keys",
    "max_schedules",
    "max_workflows",
    "max_webhooks",
    "max_payload_size_bytes",
    "rate_limit_requests_per_second",
    "rate_limit_burst",
    "job_retention_days",
    "history_retention_days",
}


def new_slug() -> str:
    return "o-" + uuid.uuid4().hex[:12]


def post_org(server: ServerProcess, body: dict[str, object], **kwargs: object) -> httpx.Response:
    return httpx.post(server.base_url + "/api/v1/organizations", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


# --- create -----------------------------------------------------------------------------------------------


def test_create_returns_the_org_and_its_initial_key(server: ServerProcess) -> None:
    slug = new_slug()
    email = f"{slug}@example.com"
    r = post_org(server, {"name": "Acme Inc", "slug": slug, "billing_email": email})
    assert r.status_code == 201, r.text
    body = r.json()
    org = body["organization"]
    assert set(org) == ORG_FIELDS
    assert (org["name"], org["slug"], org["billing_email"]) == ("Acme Inc", slug, email)
    assert org["plan_tier"] == "enterprise"  # the default `unlimited`, as tenant routes show it
    assert org["settings"]["webhook_token"].startswith("whk_")
    assert all(org[f] is None for f in ORG_FIELDS if f.startswith("stripe_"))
    assert org["created_at"].endswith("Z")
    assert set(body["api_key"]) == {"id", "key", "name", "created_at"}
    assert body["api_key"]["name"] == "Initial Admin Key"
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {body['api_key']['key']}"}
    ) as c:
        keys = c.get("/api/v1/api-keys").json()
        assert [k["queues"] for k in keys] == [["*"]]


def test_create_conflicts(server: ServerProcess) -> None:
    slug = new_slug()
    email = f"{slug}@example.com"
    assert post_org(server, {"name": "First", "slug": slug, "billing_email": email}).status_code == 201
    r = post_org(server, {"name": "Second", "slug": slug})
    assert r.status_code == 409
    assert r.json()["code"] == "CONFLICT"
    r = post_org(server, {"name": "Third", "slug": new_slug(), "billing_email": email.upper()})
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "ab", "slug": "valid-slug"}, "name"),
        ({"name": "x" * 101, "slug": "valid-slug"}, "name"),
        ({"name": "Good", "slug": "ab"}, "slug"),
        ({"name": "Good", "slug": "Upper"}, "slug"),
        ({"name": "Good", "slug": "9lives"}, "slug"),
        ({"name": "Good", "slug": "double--dash"}, "slug"),
        ({"name": "Good", "slug": "trailing-"}, "slug"),
        ({"name": "Good", "slug": "admin"}, "slug"),
        ({"name": "Good", "slug": "x" * 51}, "slug"),
        ({"name": "Good", "slug": "valid-slug-2", "billing_email": "not-an-email"}, "billing_email"),
    ],
)
def test_create_validation(server: ServerProcess, body: dict[str, object], field: str) -> None:
    r = post_org(server, body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert r.json()["message"].startswith(f"{field}:")


def test_create_shape_errors(server: ServerProcess) -> None:
    r = post_org(server, {"name": "No slug"})
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "slug"
    r = httpx.post(
        server.base_url + "/api/v1/organizations",
        content=b"name=x",
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415


# --- slugs --------------------------------------------------------------------------------------------------


def check_slug(server: ServerProcess, slug: str, *, alias: bool = False) -> dict[str, object]:
    if alias:
        r = httpx.get(f"{server.base_url}/api/v1/organizations/check-slug/{slug}", timeout=30)
    else:
        r = httpx.get(server.base_url + "/api/v1/organizations/check-slug", params={"slug": slug}, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    assert set(body) == {"available", "valid", "error", "suggestion", "slug"}
    return body


@pytest.mark.parametrize("alias", [False, True])
def test_check_slug(tenant: Tenant, alias: bool) -> None:
    free = check_slug(tenant.server, new_slug(), alias=alias)
    assert free["available"] is True and free["valid"] is True
    assert free["error"] is None and free["suggestion"] is None
    taken = check_slug(tenant.server, tenant.slug, alias=alias)
    assert taken["available"] is False and taken["valid"] is True and taken["slug"] == tenant.slug
    suggestion = str(taken["suggestion"])
    assert suggestion != tenant.slug
    assert check_slug(tenant.server, suggestion)["available"] is True
    reserved = check_slug(tenant.server, "admin", alias=alias)
    assert reserved["available"] is False and reserved["valid"] is False and reserved["error"]
    bad = check_slug(tenant.server, "No_Good", alias=alias)
    assert bad["valid"] is False and bad["available"] is False
    assert check_slug(tenant.server, str(bad["suggestion"]))["available"] is True


def test_check_slug_without_a_slug(server: ServerProcess) -> None:
    r = httpx.get(server.base_url + "/api/v1/organizations/check-slug", timeout=30)
    assert r.status_code == 200
    assert r.json()["valid"] is False and r.json()["available"] is False


def test_generate_slug(tenant: Tenant) -> None:
    url = tenant.server.base_url + "/api/v1/organizations/generate-slug"
    unique = uuid.uuid4().hex[:8]
    r = httpx.post(url, json={"name": f"Ünïcode Café {unique}!"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"slug": f"unicode-cafe-{unique}"}
    r = httpx.post(url, json={"name": "42 Robots"}, timeout=30)
    slug = r.json()["slug"]
    assert slug.startswith("org-42-robots")
    # A taken base gets a suffix; the result is always valid and free.
    taken = httpx.post(url, json={"name": tenant.slug}, timeout=30).json()["slug"]
    assert taken.startswith(tenant.slug + "-") and taken != tenant.slug
    assert len(httpx.post(url, json={"name": "word " * 40}, timeout=30).json()["slug"]) <= 50
    for name in ("admin", "A", "!!!"):
        generated = httpx.post(url, json={"name": name}, timeout=30).json()["slug"]
        assert check_slug(tenant.server, generated)["available"] is True, (name, generated)
    assert httpx.post(url, json={"name": "   "}, timeout=30).status_code == 400
    assert httpx.post(url, json={}, timeout=30).status_code == 422


# --- read ---------------------------------------------------------------------------------------------------


def test_list_shows_only_the_callers_org(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get("/api/v1/organizations")
    assert r.status_code == 200
    assert r.json() == [
        {
            "id": tenant.org_id,
            "name": f"Test {tenant.slug}",
            "slug": tenant.slug,
            "plan_tier": "enterprise",
            "created_at": r.json()[0]["created_at"],
        }
    ]


def test_get_own_org_and_404_for_others(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get(f"/api/v1/organizations/{tenant.org_id}")
        assert r.status_code == 200
        assert set(r.json()) == ORG_FIELDS
        assert r.json()["settings"]["webhook_token"].startswith("whk_")
        for other in (other_tenant.org_id, str(uuid.uuid4()), "not-a-uuid"):
            r = c.get(f"/api/v1/organizations/{other}")
            assert r.status_code == 404
            assert r.json() == {"code": "NOT_FOUND", "message": "Resource not found", "details": None}
    assert (
        httpx.get(f"{tenant.server.base_url}/api/v1/organizations/{tenant.org_id}", timeout=30).status_code
        == 401
    )


def test_scoped_keys_read_but_never_manage(tenant: Tenant) -> None:
    with tenant.client() as c:
        scoped = c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["emails"]}).json()["key"]
    with tenant.client(key=scoped) as s:
        assert s.get("/api/v1/organizations").status_code == 200
        r = s.get(f"/api/v1/organizations/{tenant.org_id}")
        assert r.status_code == 200
        assert r.json()["settings"]["webhook_token"] is None
        org = tenant.org_id
        for method, path in [
            ("PUT", f"/api/v1/organizations/{org}"),
            ("DELETE", f"/api/v1/organizations/{org}"),
            ("GET", f"/api/v1/organizations/{org}/members"),
            ("GET", "/api/v1/organizations/usage"),
            ("GET", f"/api/v1/organizations/{org}/usage"),
            ("GET", "/api/v1/organizations/webhook-token"),
            ("POST", "/api/v1/organizations/webhook-token/regenerate"),
            ("POST", "/api/v1/organizations/webhook-token/clear"),
            ("DELETE", "/api/v1/organizations/webhook-token"),
            ("GET", f"/api/v1/organizations/{org}/webhook-token"),
        ]:
            r = s.request(method, path, json={"name": "Renamed"} if method == "PUT" else None)
            assert r.status_code == 403, (method, path)
            assert r.json()["code"] == "ACCESS_DENIED"
    # The token is still there.
    with tenant.client() as c:
        assert c.get("/api/v1/organizations/webhook-token").json()["webhook_token"].startswith("whk_")


# --- update -------------------------------------------------------------------------------------------------


async def test_update_replaces_settings_but_keeps_token_and_secrets(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    with tenant.client() as c:
        token = c.get("/api/v1/organizations/webhook-token").json()["webhook_token"]
        r = c.put(
            f"/api/v1/organizations/{tenant.org_id}",
            json={
                "name": "Renamed Org",
                "billing_email": f"{tenant.slug}@example.com",
                "settings": {
                    "theme": "dark",
                    "ingest_secrets": {"github": "gh-secret", "stripe": "st-secret"},
                },
            },
        )
        assert r.status_code == 200, r.text
        org = r.json()
        assert set(org) == ORG_FIELDS
        assert org["name"] == "Renamed Org" and org["billing_email"] == f"{tenant.slug}@example.com"
        assert org["settings"] == {
            "theme": "dark",
            "webhook_token": token,
            "ingest_secrets": {"github": "********", "stripe": "********"},
        }
        # Replace: `theme` goes away; omitted secrets are kept; a masked value sent back keeps the secret.
        r = c.put(f"/api/v1/organizations/{tenant.org_id}", json={"settings": {"mode": "b"}})
        assert r.json()["settings"] == {
            "mode": "b",
            "webhook_token": token,
            "ingest_secrets": {"github": "********", "stripe": "********"},
        }
        r = c.put(
            f"/api/v1/organizations/{tenant.org_id}",
            json={"settings": {"ingest_secrets": {"github": "********", "shopify": "sh-secret"}}},
        )
        assert r.status_code == 200
        assert r.json()["name"] == "Renamed Org"  # omitted fields are kept
    stored = await owner_db.fetchval(
        "SELECT settings FROM organizations WHERE id = $1", uuid.UUID(tenant.org_id)
    )
    stored = msgspec.json.decode(stored) if isinstance(stored, (str, bytes)) else stored
    assert stored["ingest_secrets"] == {"github": "gh-secret", "shopify": "sh-secret"}
    assert stored["webhook_token"] == token


def test_update_validation(tenant: Tenant, other_tenant: Tenant) -> None:
    email = f"{other_tenant.slug}@example.com"
    with other_tenant.client() as o:
        assert (
            o.put(f"/api/v1/organizations/{other_tenant.org_id}", json={"billing_email": email}).status_code
            == 200
        )
    with tenant.client() as c:
        url = f"/api/v1/organizations/{tenant.org_id}"
        for body, status in [
            ({"name": "ab"}, 400),
            ({"billing_email": "nope"}, 400),
            ({"settings": {"blob": "x" * 70000}}, 400),
            ({"settings": [1, 2]}, 422),
            ({"settings": {"ingest_secrets": "plain"}}, 400),
            ({"settings": {"ingest_secrets": {"github": 5}}}, 400),
            ({"billing_email": email.upper()}, 409),
        ]:
            r = c.put(url, json=body)
            assert r.status_code == status, (body, r.text)
        assert (
            c.put(f"/api/v1/organizations/{other_tenant.org_id}", json={"name": "Mine now"}).status_code
            == 404
        )
        assert c.put(f"/api/v1/organizations/{uuid.uuid4()}", json={"name": "Ghost"}).status_code == 404
    with other_tenant.client() as o:
        assert (
            o.get(f"/api/v1/organizations/{other_tenant.org_id}").json()["name"]
            == f"Test {other_tenant.slug}"
        )


# --- delete -------------------------------------------------------------------------------------------------


async def test_delete_refuses_while_work_is_active(
    server: ServerProcess, owner_db: asyncpg.Connection
) -> None:
    victim = create_tenant(server)
    url = f"/api/v1/organizations/{victim.org_id}"
    with victim.client() as c:
        job = c.post("/api/v1/jobs", json={"queue_name": "busy", "payload": {}}).json()["id"]
        r = c.delete(url)
        assert r.status_code == 409
        assert r.json()["code"] == "CONFLICT"
        assert "jobs" in r.json()["message"]
        assert c.delete(f"/api/v1/jobs/{job}").status_code == 204  # cancel
    await owner_db.execute(
        "INSERT INTO workers (id, organization_id, queue_name, hostname, status)"
        " VALUES ($1, $2, 'busy', 'h', $3)",
        f"w-{uuid.uuid4().hex[:8]}",
        uuid.UUID(victim.org_id),
        "draining",
    )
    with victim.client() as c:
        r = c.delete(url)
        assert r.status_code == 409
        assert "workers" in r.json()["message"]
    await owner_db.execute(
        "UPDATE workers SET status = 'offline' WHERE organization_id = $1", uuid.UUID(victim.org_id)
    )
    with victim.client() as c:
        assert c.delete(f"/api/v1/organizations/{uuid.uuid4()}").status_code == 404
        r = c.delete(url)
        assert r.status_code == 204, r.text
        # Everything of it is gone, and its key stops working at once.
        assert c.get("/api/v1/organizations").status_code == 401
    org = uuid.UUID(victim.org_id)
    assert await owner_db.fetchval("SELECT count(*) FROM organizations WHERE id = $1", org) == 0
    tables = await owner_db.fetch(
        "SELECT table_name FROM information_schema.columns"
        " WHERE column_name = 'organization_id' AND table_schema = current_schema()"
    )
    assert {"api_keys", "jobs", "job_history", "workers", "usage_daily"} <= {t["table_name"] for t in tables}
    for t in tables:
        name = t["table_name"]
        left = await owner_db.fetchval(f'SELECT count(*) FROM "{name}" WHERE organization_id = $1', org)
        assert left == 0, name


async def test_delete_refuses_with_an_active_schedule(
    server: ServerProcess, owner_db: asyncpg.Connection
) -> None:
    if await owner_db.fetchval("SELECT to_regclass('schedules') IS NULL"):
        pytest.skip("the schedules table does not exist yet")
    victim = create_tenant(server)
    with victim.client() as c:
        r = c.post(
            "/api/v1/schedules",
            json={
                "name": "nightly",
                "cron_expression": "0 3 * * *",
                "queue_name": "cron-q",
                "payload_template": {},
            },
        )
        assert r.status_code == 201, r.text
        r = c.delete(f"/api/v1/organizations/{victim.org_id}")
        assert r.status_code == 409
        assert "schedules" in r.json()["message"]


# --- members, usage -----------------------------------------------------------------------------------------


def test_members_are_the_active_keys(tenant: Tenant) -> None:
    with tenant.client() as c:
        c.put(f"/api/v1/organizations/{tenant.org_id}", json={"billing_email": f"{tenant.slug}@example.com"})
        scoped = c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["emails"]}).json()
        revoked = c.post("/api/v1/api-keys", json={"name": "gone"}).json()
        c.delete(f"/api/v1/api-keys/{revoked['id']}")
        r = c.get(f"/api/v1/organizations/{tenant.org_id}/members")
        assert r.status_code == 200
        members = r.json()
        assert [m["name"] for m in members] == ["Initial Admin Key", "scoped"]
        for m in members:
            assert set(m) == {"id", "user_id", "email", "name", "role", "joined_at", "invited_by"}
            assert m["email"] == f"{tenant.slug}@example.com" and m["user_id"] == m["id"]
            assert m["joined_at"].endswith("Z")
        assert [m["role"] for m in members] == ["owner", "member"]
        assert members[1]["id"] == scoped["id"]
        assert c.get(f"/api/v1/organizations/{uuid.uuid4()}/members").status_code == 404


def test_members_email_is_empty_without_billing_email(tenant: Tenant) -> None:
    with tenant.client() as c:
        assert c.get(f"/api/v1/organizations/{tenant.org_id}/members").json()[0]["email"] == ""


def assert_usage_shape(usage: dict[str, object]) -> None:
    assert set(usage) == {"plan", "plan_display_name", "limits", "usage", "warnings"}
    assert set(usage["limits"]) == LIMIT_FIELDS  # type: ignore[arg-type]
    assert set(usage["usage"]) == USAGE_KEYS  # type: ignore[arg-type]
    for item in usage["usage"].values():  # type: ignore[attr-defined]
        assert set(item) == {"current", "limit", "percentage", "is_disabled"}


@pytest.mark.parametrize("alias", [False, True])
def test_usage_on_the_unlimited_plan(tenant: Tenant, alias: bool) -> None:
    path = f"/api/v1/organizations/{tenant.org_id}/usage" if alias else "/api/v1/organizations/usage"
    with tenant.client() as c:
        c.post("/api/v1/jobs/bulk", json={"queue_name": "u1", "jobs": [{"payload": {}}] * 3})
        c.post("/api/v1/jobs", json={"queue_name": "u2", "payload": {}})
        r = c.get(path)
    assert r.status_code == 200, r.text
    usage = r.json()
    assert_usage_shape(usage)
    assert usage["plan"] == "enterprise"
    assert usage["limits"]["tier"] == "unlimited"
    assert usage["plan_display_name"] == "Unlimited (self-hosted)"
    assert usage["limits"]["rate_limit_requests_per_second"] == 0 and usage["limits"]["max_queues"] is None
    # jobs_today is buffered in memory on unlimited plans; the usage read flushes it.
    assert usage["usage"]["jobs_today"] == {
        "current": 4,
        "limit": None,
        "percentage": None,
        "is_disabled": False,
    }
    assert usage["usage"]["active_jobs"]["current"] == 4
    assert usage["usage"]["queues"]["current"] == 2
    assert usage["usage"]["api_keys"]["current"] == 1
    assert usage["warnings"] == []


def test_usage_alias_for_another_org_is_404(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        assert c.get(f"/api/v1/organizations/{other_tenant.org_id}/usage").status_code == 404
        assert c.get("/api/v1/organizations/nope/usage").status_code == 404


def test_usage_warnings_on_the_free_plan(server: ServerProcess) -> None:
    free = create_tenant(server, "free")
    with free.client() as c:
        c.post("/api/v1/jobs/bulk", json={"queue_name": "wq", "jobs": [{"payload": {}}] * 5})
        usage = c.get("/api/v1/organizations/usage").json()
        assert_usage_shape(usage)
        assert usage["plan"] == "free" and usage["limits"]["tier"] == "free"
        assert usage["usage"]["jobs_today"] == {
            "current": 5,
            "limit": 1000,
            "percentage": 0.5,
            "is_disabled": False,
        }
        assert usage["usage"]["active_jobs"] == {
            "current": 5,
            "limit": 10,
            "percentage": 50.0,
            "is_disabled": False,
        }
        assert usage["usage"]["workflows"] == {
            "current": 0,
            "limit": 0,
            "percentage": None,
            "is_disabled": True,
        }
        warnings = {w["resource"]: w for w in usage["warnings"]}
        # free warns from 50 %: active jobs 5/10, queues 1/2, api keys 1/2.
        assert set(warnings) == {"active_jobs", "queues", "api_keys"}
        assert all(w["severity"] == "warning" and w["message"] for w in warnings.values())
        c.post("/api/v1/api-keys", json={"name": "second"})
        usage = c.get("/api/v1/organizations/usage").json()
        critical = [w for w in usage["warnings"] if w["resource"] == "api_keys"]
        assert critical[0]["severity"] == "critical"
        assert usage["usage"]["api_keys"]["percentage"] == 100.0


# --- webhook token ------------------------------------------------------------------------------------------


def test_webhook_token_read_regenerate_clear(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get("/api/v1/organizations/webhook-token")
        assert r.status_code == 200
        first = r.json()
        assert set(first) == {"webhook_token", "webhook_url"}
        assert first["webhook_token"].startswith("whk_")
        assert first["webhook_url"] == f"{tenant.server.base_url}/api/v1/webhooks/{tenant.org_id}/custom"
        r = c.post("/api/v1/organizations/webhook-token/regenerate")
        assert r.status_code == 200
        second = r.json()["webhook_token"]
        assert second.startswith("whk_") and second != first["webhook_token"]
        assert c.get(f"/api/v1/organizations/{tenant.org_id}").json()["settings"]["webhook_token"] == second
        r = c.post("/api/v1/organizations/webhook-token/clear", json={"confirm": True})
        assert r.status_code == 200
        assert r.json()["webhook_token"] is None
        assert c.get("/api/v1/organizations/webhook-token").json()["webhook_token"] is None
        r = c.post("/api/v1/organizations/webhook-token/clear", json={"confirm": False})
        assert r.status_code == 400


def test_webhook_token_aliases(tenant: Tenant, other_tenant: Tenant) -> None:
    org = tenant.org_id
    with tenant.client(headers={"Content-Type": "application/json"}) as c:
        token = c.get(f"/api/v1/organizations/{org}/webhook-token").json()["webhook_token"]
        assert token.startswith("whk_")
        regenerated = c.post(f"/api/v1/organizations/{org}/webhook-token/regenerate").json()["webhook_token"]
        assert regenerated != token
        for method, path in [
            ("POST", f"/api/v1/organizations/{org}/webhook-token/clear"),
            ("DELETE", f"/api/v1/organizations/{org}/webhook-token"),
            ("DELETE", "/api/v1/organizations/webhook-token"),
        ]:
            c.post("/api/v1/organizations/webhook-token/regenerate")
            r = c.request(method, path)
            assert r.status_code == 200, (method, path, r.text)
            assert r.json()["webhook_token"] is None
        other = other_tenant.org_id
        for method, path in [
            ("GET", f"/api/v1/organizations/{other}/webhook-token"),
            ("POST", f"/api/v1/organizations/{other}/webhook-token/regenerate"),
            ("POST", f"/api/v1/organizations/{other}/webhook-token/clear"),
            ("DELETE", f"/api/v1/organizations/{other}/webhook-token"),
        ]:
            assert c.request(method, path).status_code == 404, (method, path)
    with other_tenant.client() as o:
        assert o.get("/api/v1/organizations/webhook-token").json()["webhook_token"].startswith("whk_")


def test_webhook_url_uses_public_base_url(database: TestDatabase) -> None:
    with running_server(database.url, PUBLIC_BASE_URL="https://queue.example.com/") as srv:
        t = create_tenant(srv)
        with t.client() as c:
            url = c.get("/api/v1/organizations/webhook-token").json()["webhook_url"]
    assert url == f"https://queue.example.com/api/v1/webhooks/{t.org_id}/custom"


# --- registration modes -------------------------------------------------------------------------------------


def test_closed_registration_needs_the_admin_key(database: TestDatabase) -> None:
    with running_server(database.url, REGISTRATION_MODE="closed") as srv:
        r = post_org(srv, {"name": "Closed Co", "slug": new_slug()})
        assert r.status_code == 403
        assert r.json()["code"] == "ACCESS_DENIED"
        r = post_org(srv, {"name": "Closed Co", "slug": new_slug()}, headers={"X-Admin-Key": "wrong-key-123"})
        assert r.status_code == 403
        r = post_org(srv, {"name": "Closed Co", "slug": new_slug()}, headers={"X-Admin-Key": ADMIN_KEY})
        assert r.status_code == 201, r.text
        # The slug helpers stay public.
        assert (
            httpx.get(
                srv.base_url + "/api/v1/organizations/check-slug", params={"slug": "abc"}, timeout=30
            ).status_code
            == 200
        )


def test_invite_registration_refuses_everyone(database: TestDatabase) -> None:
    with running_server(database.url, REGISTRATION_MODE="invite") as srv:
        for headers in ({}, {"X-Admin-Key": ADMIN_KEY}):
            r = post_org(srv, {"name": "Invite Co", "slug": new_slug()}, headers=headers)
            assert r.status_code == 403
            assert r.json()["code"] == "ACCESS_DENIED"
