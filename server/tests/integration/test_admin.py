"""Admin routes over real HTTP (rest.md §17): X-Admin-Key checks, organizations, keys, usage reset, stats,
plans, and the per-IP limit."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest

from ..support import ADMIN_KEY, ServerProcess, Tenant, TestDatabase, create_tenant, running_server

ADMIN_ORG_FIELDS = {
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


def admin(server: ServerProcess, **headers: str) -> httpx.Client:
    """An admin client with a client address of its own, so other tests never share its 60/min limit."""
    all_headers = {
        "X-Admin-Key": ADMIN_KEY,
        "X-Real-IP": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7",
    }
    all_headers.update(headers)
    return httpx.Client(base_url=server.base_url + "/api/v1/admin", headers=all_headers, timeout=30)


def new_slug() -> str:
    return "a-" + uuid.uuid4().hex[:12]


def make_org(c: httpx.Client, **body: object) -> dict[str, object]:
    payload: dict[str, object] = {"name": "Admin Made", "slug": new_slug()}
    payload.update(body)
    r = c.post("/organizations", json=payload)
    assert r.status_code == 201, r.text
    result: dict[str, object] = r.json()
    return result


# --- X-Admin-Key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "MISSING_ADMIN_KEY"),
        ({"X-Admin-Key": b"\xc3\xa9t\xc3\xa9-key"}, "INVALID_HEADER"),  # type: ignore[dict-item]
        ({"X-Admin-Key": "wrong-admin-key-0123456789"}, "INVALID_ADMIN_KEY"),
        ({"X-Admin-Key": ADMIN_KEY + "x"}, "INVALID_ADMIN_KEY"),
    ],
)
def test_admin_key_is_required(server: ServerProcess, headers: dict[str, str], code: str) -> None:
    ip = {"X-Real-IP": f"10.1.{uuid.uuid4().int % 250}.1"}
    for method, path in [
        ("GET", "/organizations"),
        ("POST", "/organizations"),
        ("GET", "/stats"),
        ("GET", "/plans"),
        ("GET", f"/organizations/{uuid.uuid4()}"),
        ("POST", f"/organizations/{uuid.uuid4()}/reset-usage"),
    ]:
        r = httpx.request(
            method,
            server.base_url + "/api/v1/admin" + path,
            headers={**ip, **headers},
            json={"name": "x"} if method == "POST" else None,
            timeout=30,
        )
        assert r.status_code == 401, (method, path)
        assert r.json()["code"] == code


def test_a_bearer_key_is_not_an_admin_key(tenant: Tenant) -> None:
    with tenant.client(headers={"X-Real-IP": "10.2.0.1"}) as c:
        r = c.get("/api/v1/admin/plans")
        assert r.status_code == 401
        assert r.json()["code"] == "MISSING_ADMIN_KEY"


def test_admin_not_configured_and_invite_mode(database: TestDatabase) -> None:
    with running_server(database.url, ADMIN_API_KEY="", REGISTRATION_MODE="invite") as srv:
        r = httpx.get(srv.base_url + "/api/v1/admin/plans", headers={"X-Admin-Key": ADMIN_KEY}, timeout=30)
        assert r.status_code == 401
        assert r.json()["code"] == "ADMIN_NOT_CONFIGURED"
        r = httpx.post(
            srv.base_url + "/api/v1/organizations", json={"name": "Nope", "slug": new_slug()}, timeout=30
        )
        assert r.status_code == 403


# --- organizations --------------------------------------------------------------------------------


def test_create_with_plan_settings_and_limits(server: ServerProcess) -> None:
    with admin(server) as c:
        body = make_org(
            c,
            plan_tier="unlimited",
            billing_email="ops@example.com".replace("ops", new_slug()),
            settings={"team": "core"},
            custom_limits={"max_queues": 7, "max_workers": None},
        )
        org = body["organization"]
        assert set(org) == ADMIN_ORG_FIELDS  # type: ignore[arg-type]
        assert org["plan_tier"] == "unlimited"  # type: ignore[index]
        assert org["settings"]["team"] == "core"  # type: ignore[index]
        assert org["settings"]["webhook_token"].startswith("whk_")  # type: ignore[index]
        assert org["custom_limits"] == {"max_queues": 7, "max_workers": None}  # type: ignore[index]
        key = body["api_key"]
        assert set(key) == {"id", "key", "name", "created_at"}  # type: ignore[arg-type]
        # The key works, and tenant routes show the wire tier.
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key['key']}"}) as t:  # type: ignore[index]
            assert t.get("/api/v1/organizations").json()[0]["plan_tier"] == "enterprise"
            usage = t.get("/api/v1/organizations/usage").json()
            assert usage["limits"]["max_queues"] == 7
        # Default plan: SPOOLED_DEFAULT_PLAN (unlimited on the test server).
        assert make_org(c)["organization"]["plan_tier"] == "unlimited"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan_tier": "platinum"}, "plan_tier"),
        ({"plan_tier": "deleted"}, "plan_tier"),
        ({"custom_limits": {"max_bananas": 1}}, "custom_limits.max_bananas"),
        ({"custom_limits": {"max_queues": -1}}, "custom_limits.max_queues"),
        ({"custom_limits": {"rate_limit_burst": None}}, "custom_limits.rate_limit_burst"),
        ({"slug": "admin"}, "slug"),
        ({"name": "no"}, "name"),
    ],
)
def test_create_validation(server: ServerProcess, body: dict[str, object], field: str) -> None:
    with admin(server) as c:
        payload: dict[str, object] = {"name": "Valid Name", "slug": new_slug()}
        payload.update(body)
        r = c.post("/organizations", json=payload)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith(f"{field}:")
        r = c.post("/organizations", json={"name": "Valid"})
        assert r.status_code == 422


def test_list_filters_sorts_and_pages(server: ServerProcess) -> None:
    marker = uuid.uuid4().hex[:8]
    with admin(server) as c:
        made = [
            make_org(c, name=f"Zeta {marker}", slug=f"z-{marker}", plan_tier="pro"),
            make_org(
                c,
                name=f"Alpha {marker}",
                slug=f"a-{marker}",
                plan_tier="free",
                billing_email=f"{marker}@example.com",
            ),
        ]
        r = c.get("/organizations", params={"search": marker, "sort_by": "name", "sort_order": "asc"})
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"organizations", "total", "limit", "offset"}
        assert page["total"] == 2 and page["limit"] == 50 and page["offset"] == 0
        assert [o["name"] for o in page["organizations"]] == [f"Alpha {marker}", f"Zeta {marker}"]
        item = page["organizations"][0]
        assert set(item) == {
            "id",
            "name",
            "slug",
            "plan_tier",
            "billing_email",
            "created_at",
            "updated_at",
            "usage",
        }
        assert item["usage"] == {"jobs_today": 0, "active_jobs": 0, "queues": 0, "workers": 0, "api_keys": 1}
        desc = c.get("/organizations", params={"search": marker, "sort_by": "name"}).json()
        assert [o["name"] for o in desc["organizations"]] == [f"Zeta {marker}", f"Alpha {marker}"]
        only_pro = c.get("/organizations", params={"search": marker, "plan_tier": "pro"}).json()
        assert [o["id"] for o in only_pro["organizations"]] == [made[0]["organization"]["id"]]  # type: ignore[index]
        by_email = c.get("/organizations", params={"search": f"{marker}@example"}).json()
        assert by_email["total"] == 1
        paged = c.get(
            "/organizations",
            params={"search": marker, "limit": 1, "offset": 1, "sort_by": "slug", "sort_order": "asc"},
        ).json()
        assert paged["total"] == 2 and paged["limit"] == 1 and paged["offset"] == 1
        assert [o["slug"] for o in paged["organizations"]] == [f"z-{marker}"]
        assert c.get("/organizations", params={"limit": 1000}).json()["limit"] == 100
        for column in ("created_at", "updated_at", "plan_tier", "slug"):
            assert c.get("/organizations", params={"sort_by": column}).status_code == 200
        r = c.get("/organizations", params={"sort_by": "password"})
        assert r.status_code == 400
        assert r.json()["code"] == "VALIDATION_ERROR"


def test_list_usage_counts_work(tenant: Tenant) -> None:
    with tenant.client() as t:
        t.post("/api/v1/jobs/bulk", json={"queue_name": "aq", "jobs": [{"payload": {}}] * 3})
        t.post("/api/v1/jobs", json={"queue_name": "aq2", "payload": {}})
        t.post("/api/v1/api-keys", json={"name": "extra"})
    with admin(tenant.server) as c:
        page = c.get("/organizations", params={"search": tenant.slug}).json()
    assert page["organizations"][0]["usage"] == {
        "jobs_today": 4,
        "active_jobs": 4,
        "queues": 2,
        "workers": 0,
        "api_keys": 2,
    }


def test_get_shows_usage_info_and_totals(tenant: Tenant) -> None:
    with tenant.client() as t:
        t.post("/api/v1/jobs/bulk", json={"queue_name": "g", "jobs": [{"payload": {}}] * 2})
    with admin(tenant.server) as c:
        r = c.get(f"/organizations/{tenant.org_id}")
        assert r.status_code == 200, r.text
        detail = r.json()
        assert set(detail) == ADMIN_ORG_FIELDS | {"usage_info", "api_keys_count", "total_jobs"}
        assert detail["plan_tier"] == "unlimited"
        assert detail["usage_info"]["plan"] == "unlimited"
        assert detail["usage_info"]["usage"]["jobs_today"]["current"] == 2
        assert detail["api_keys_count"] == 1 and detail["total_jobs"] == 2
        assert c.get(f"/organizations/{uuid.uuid4()}").status_code == 404
        assert c.get("/organizations/not-a-uuid").status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_update_changes_plan_and_limits_at_once(tenant: Tenant, method: str) -> None:
    with admin(tenant.server) as c, tenant.client() as t:
        assert t.get("/api/v1/organizations/usage").json()["plan"] == "enterprise"
        r = c.request(
            method,
            f"/organizations/{tenant.org_id}",
            json={
                "plan_tier": "starter",
                "name": "Upgraded Org",
                "custom_limits": {"max_queues": 3},
                "billing_email": f"{tenant.slug}@example.com",
                "settings": {"region": "eu"},
            },
        )
        assert r.status_code == 200, r.text
        org = r.json()
        assert set(org) == ADMIN_ORG_FIELDS
        assert (org["plan_tier"], org["name"], org["custom_limits"]) == (
            "starter",
            "Upgraded Org",
            {"max_queues": 3},
        )
        assert org["settings"]["region"] == "eu" and org["settings"]["webhook_token"].startswith("whk_")
        # The tenant sees the new plan on its next request (this replica dropped its cached principal).
        usage = t.get("/api/v1/organizations/usage").json()
        assert usage["plan"] == "starter" and usage["limits"]["max_queues"] == 3
        # Omitted custom_limits are kept; null and {} reset them.
        assert c.request(method, f"/organizations/{tenant.org_id}", json={"name": "Again Org"}).json()[
            "custom_limits"
        ] == {"max_queues": 3}
        for reset in (None, {}):
            c.request(method, f"/organizations/{tenant.org_id}", json={"custom_limits": {"max_queues": 4}})
            r = c.request(method, f"/organizations/{tenant.org_id}", json={"custom_limits": reset})
            assert r.json()["custom_limits"] is None
        assert (
            c.request(method, f"/organizations/{tenant.org_id}", json={"plan_tier": "unlimited"}).json()[
                "plan_tier"
            ]
            == "unlimited"
        )
        assert t.get("/api/v1/organizations/usage").json()["plan"] == "enterprise"


def test_update_validation(tenant: Tenant) -> None:
    with admin(tenant.server) as c:
        url = f"/organizations/{tenant.org_id}"
        for body in (
            {"name": "ab"},
            {"plan_tier": "gold"},
            {"billing_email": "x"},
            {"custom_limits": {"nope": 1}},
        ):
            r = c.patch(url, json=body)
            assert r.status_code == 400, body
        assert c.patch(url, json={"settings": "flat"}).status_code == 422
        assert c.patch(f"/organizations/{uuid.uuid4()}", json={"name": "Ghost Org"}).status_code == 404


def test_soft_delete_revokes_every_key(server: ServerProcess) -> None:
    victim = create_tenant(server)
    with victim.client() as t:
        extra = t.post("/api/v1/api-keys", json={"name": "extra"}).json()["key"]
        assert t.get("/api/v1/organizations").status_code == 200
    with admin(server) as c:
        r = c.delete(f"/organizations/{victim.org_id}")
        assert r.status_code == 204
        detail = c.get(f"/organizations/{victim.org_id}").json()
        assert detail["plan_tier"] == "deleted"
        assert detail["api_keys_count"] == 0
        assert (
            c.get("/organizations", params={"plan_tier": "deleted", "search": victim.slug}).json()["total"]
            == 1
        )
    for key in (victim.api_key, extra):
        with victim.client(key=key) as t:
            assert t.get("/api/v1/organizations").status_code == 401
    r = httpx.post(server.base_url + "/api/v1/auth/login", json={"api_key": victim.api_key}, timeout=30)
    assert r.status_code == 401


@pytest.mark.parametrize("param", ["hard_delete", "hard"])
async def test_hard_delete_removes_everything(
    server: ServerProcess, owner_db: asyncpg.Connection, param: str
) -> None:
    victim = create_tenant(server)
    with victim.client() as t:
        t.post("/api/v1/jobs", json={"queue_name": "doomed", "payload": {"x": 1}})
    with admin(server) as c:
        r = c.delete(f"/organizations/{victim.org_id}", params={param: "true"})
        assert r.status_code == 204
        assert c.get(f"/organizations/{victim.org_id}").status_code == 404
        assert c.delete(f"/organizations/{victim.org_id}").status_code == 404
    org = uuid.UUID(victim.org_id)
    assert await owner_db.fetchval("SELECT count(*) FROM organizations WHERE id = $1", org) == 0
    tables = await owner_db.fetch(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'organization_id'"
        " AND table_schema = current_schema()"
    )
    for row in tables:
        n = await owner_db.fetchval(
            f'SELECT count(*) FROM "{row["table_name"]}" WHERE organization_id = $1', org
        )
        assert n == 0, row["table_name"]
    with victim.client() as t:
        assert t.get("/api/v1/organizations").status_code == 401


def test_admin_creates_keys_for_an_org(tenant: Tenant) -> None:
    with admin(tenant.server) as c:
        r = c.post(f"/organizations/{tenant.org_id}/api-keys", json={"name": "ops key"})
        assert r.status_code == 201, r.text
        key = r.json()
        assert set(key) == {"id", "key", "name", "created_at", "expires_at", "queues"}
        assert key["queues"] == ["*"] and key["expires_at"] is None
        scoped = c.post(
            f"/organizations/{tenant.org_id}/api-keys",
            json={"name": "scoped", "queues": ["emails"], "rate_limit": 60},
        ).json()
        assert scoped["queues"] == ["emails"]
        for body in (
            {"name": "x", "rate_limit": 0},
            {"name": "x", "queues": ["bad queue"]},
            {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
            {"name": ""},
        ):
            assert c.post(f"/organizations/{tenant.org_id}/api-keys", json=body).status_code == 400, body
        assert c.post(f"/organizations/{uuid.uuid4()}/api-keys", json={"name": "x"}).status_code == 404
    with tenant.client(key=key["key"]) as t:
        assert t.get("/api/v1/api-keys").status_code == 200
    with tenant.client(key=scoped["key"]) as t:
        assert t.get("/api/v1/api-keys").status_code == 403


def test_reset_usage_zeroes_todays_counter(server: ServerProcess) -> None:
    free = create_tenant(server, "free")
    with free.client() as t:
        assert (
            t.post("/api/v1/jobs/bulk", json={"queue_name": "r", "jobs": [{"payload": {}}] * 4}).status_code
            == 200
        )
        assert t.get("/api/v1/organizations/usage").json()["usage"]["jobs_today"]["current"] == 4
    with admin(server) as c:
        r = c.post(f"/organizations/{free.org_id}/reset-usage")
        assert r.status_code == 200
        assert r.json() == {"success": True}
        assert c.post(f"/organizations/{uuid.uuid4()}/reset-usage").status_code == 404
    with free.client() as t:
        usage = t.get("/api/v1/organizations/usage").json()["usage"]
        assert usage["jobs_today"]["current"] == 0
        assert usage["active_jobs"]["current"] == 4  # only the daily counter is reset


def test_stats_has_the_nested_and_flat_field_set(tenant: Tenant) -> None:
    with tenant.client() as t:
        t.post("/api/v1/jobs", json={"queue_name": "stats-q", "payload": {}})
    with admin(tenant.server) as c:
        r = c.get("/stats")
    assert r.status_code == 200, r.text
    stats = r.json()
    assert set(stats) == {
        "organizations",
        "jobs",
        "workers",
        "system",
        "total_organizations",
        "active_organizations",
        "organizations_by_plan",
        "total_jobs",
        "jobs_today",
        "jobs_by_status",
        "total_queues",
        "total_workers",
        "uptime_seconds",
    }
    assert set(stats["organizations"]) == {"total", "by_plan", "created_today", "created_this_week"}
    assert set(stats["jobs"]) == {"total_active", "pending", "processing", "completed_24h", "failed_24h"}
    assert set(stats["workers"]) == {"total", "healthy", "degraded"}
    assert set(stats["system"]) == {"api_version", "uptime_seconds"}
    assert isinstance(stats["system"]["api_version"], str)
    for value in (
        stats["total_organizations"],
        stats["active_organizations"],
        stats["total_jobs"],
        stats["jobs_today"],
        stats["total_queues"],
        stats["total_workers"],
        stats["uptime_seconds"],
        stats["organizations"]["total"],
        stats["organizations"]["created_today"],
        stats["organizations"]["created_this_week"],
        *stats["jobs"].values(),
        *stats["workers"].values(),
        stats["system"]["uptime_seconds"],
    ):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
    assert stats["organizations"]["total"] == stats["total_organizations"] >= 1
    assert stats["organizations"]["created_today"] >= 1
    assert stats["organizations"]["by_plan"] == stats["organizations_by_plan"]
    assert {"plan_tier", "count"} == set(stats["organizations_by_plan"][0])
    assert set(stats["jobs_by_status"]) == {
        "pending",
        "scheduled",
        "processing",
        "completed",
        "failed",
        "deadletter",
        "cancelled",
    }
    assert stats["total_jobs"] == sum(stats["jobs_by_status"].values()) >= 1
    js = stats["jobs_by_status"]
    assert stats["jobs"]["total_active"] == js["pending"] + js["scheduled"] + js["processing"]
    assert stats["jobs_today"] >= 1 and stats["total_queues"] >= 1


def test_plans_lists_every_tier(server: ServerProcess) -> None:
    with admin(server) as c:
        r = c.get("/plans")
    assert r.status_code == 200
    plans = r.json()
    assert [p["tier"] for p in plans] == ["free", "starter", "pro", "enterprise", "unlimited"]
    free = plans[0]
    assert (
        free["max_jobs_per_day"],
        free["max_active_jobs"],
        free["max_queues"],
        free["max_workers"],
        free["max_api_keys"],
        free["max_schedules"],
        free["max_workflows"],
        free["max_webhooks"],
        free["max_payload_size_bytes"],
        free["rate_limit_requests_per_second"],
        free["rate_limit_burst"],
        free["job_retention_days"],
        free["history_retention_days"],
    ) == (1000, 10, 2, 1, 2, 1, 0, 1, 65536, 5, 10, 3, 1)
    unlimited = plans[4]
    assert unlimited["display_name"] == "Unlimited (self-hosted)"
    assert unlimited["max_jobs_per_day"] is None and unlimited["rate_limit_requests_per_second"] == 0
    assert unlimited["max_payload_size_bytes"] == 1048576


def test_admin_routes_allow_60_requests_per_minute_per_ip(server: ServerProcess) -> None:
    ip = f"10.60.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    statuses = []
    with admin(server, **{"X-Real-IP": ip}) as c:
        # A fixed 60 s window: within 121 requests, one window must see its 61st.
        for _ in range(121):
            r = c.get("/plans")
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
    assert statuses[-1] == 429
    assert 60 <= statuses.index(429) <= 120
    assert r.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert r.headers["X-RateLimit-Limit"] == "60" and int(r.headers["Retry-After"]) >= 1
    # Another client address is not affected; neither are wrong keys counted elsewhere.
    with admin(server) as other:
        assert other.get("/plans").status_code == 200
    window_left = int(r.headers["X-RateLimit-Reset"]) - time.time()
    r = httpx.get(server.base_url + "/api/v1/admin/plans", headers={"X-Real-IP": ip}, timeout=30)
    if window_left > 3:  # still the same window: the limit applies before the key check
        assert r.status_code == 429
