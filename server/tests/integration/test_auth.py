"""Auth over real HTTP (rest.md §2): login, refresh, logout revocation, me, validate, failed-login lockout."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest

from ..support import ADMIN_KEY, ServerProcess, Tenant


def login(server: ServerProcess, api_key: str) -> httpx.Response:
    return httpx.post(server.base_url + "/api/v1/auth/login", json={"api_key": api_key}, timeout=30)


def tokens_of(tenant: Tenant) -> dict[str, object]:
    r = login(tenant.server, tenant.api_key)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_issues_access_and_refresh_tokens(tenant: Tenant) -> None:
    body = tokens_of(tenant)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 24 * 3600
    assert body["refresh_expires_in"] == 24 * 24 * 3600
    claims = jwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert claims["token_type"] == "access"
    assert claims["org_id"] == claims["sub"] == tenant.org_id
    assert claims["queues"] == ["*"]
    for name in ("api_key_id", "iat", "nbf", "exp", "jti", "sid"):
        assert name in claims
    refresh_claims = jwt.decode(str(body["refresh_token"]), options={"verify_signature": False})
    assert refresh_claims["token_type"] == "refresh"
    assert refresh_claims["sid"] == claims["sid"]


def test_access_token_authenticates_like_the_key(tenant: Tenant) -> None:
    access = str(tokens_of(tenant)["access_token"])
    with tenant.client(key=access) as c:
        r = c.post("/api/v1/jobs", json={"queue_name": "jwt-q", "payload": {}})
        assert r.status_code == 201, r.text
        assert c.get(f"/api/v1/organizations/{tenant.org_id}").status_code == 200


def test_login_rejects_bad_input(server: ServerProcess) -> None:
    r = login(server, "sp_test_" + "x" * 43)
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    assert r.json()["message"] == "Invalid credentials"
    r = login(server, "short")
    assert r.status_code == 400
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert r.json()["message"].startswith("api_key:")
    r = httpx.post(server.base_url + "/api/v1/auth/login", json={}, timeout=30)
    assert r.status_code == 422
    assert r.json()["details"][0]["code"] == "missing_field"
    r = httpx.post(
        server.base_url + "/api/v1/auth/login",
        content=b"{",
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "INVALID_JSON"


def test_login_locks_a_key_after_five_failures(tenant: Tenant) -> None:
    wrong = "sp_test_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
    statuses = []
    # Failures are counted per 60 s window: within 11 attempts some window must see its 6th one.
    for _ in range(11):
        r = login(tenant.server, wrong)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert 6 <= len(statuses) <= 11
    assert set(statuses[:-1]) == {401}
    assert r.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Limit"] == "5"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["X-RateLimit-Reset"]) > 0
    assert r.json()["retry_after_secs"] >= 1
    # Another key (here the right one) is not affected.
    assert login(tenant.server, tenant.api_key).status_code == 200


def test_refresh_issues_a_new_access_token_of_the_same_login(tenant: Tenant) -> None:
    body = tokens_of(tenant)
    r = httpx.post(
        tenant.server.base_url + "/api/v1/auth/refresh",
        json={"refresh_token": body["refresh_token"]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert set(fresh) == {"access_token", "token_type", "expires_in"}
    assert fresh["token_type"] == "Bearer"
    old = jwt.decode(str(body["access_token"]), options={"verify_signature": False})
    new = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert new["sid"] == old["sid"] and new["jti"] != old["jti"] and new["token_type"] == "access"
    r = httpx.get(
        tenant.server.base_url + "/api/v1/auth/me", headers=bearer(fresh["access_token"]), timeout=30
    )
    assert r.status_code == 200


def test_refresh_rejects_access_tokens_garbage_and_revoked_keys(tenant: Tenant) -> None:
    base = tenant.server.base_url
    body = tokens_of(tenant)
    r = httpx.post(base + "/api/v1/auth/refresh", json={"refresh_token": body["access_token"]}, timeout=30)
    assert r.status_code == 401
    r = httpx.post(base + "/api/v1/auth/refresh", json={"refresh_token": "eyJnot.a.token"}, timeout=30)
    assert r.status_code == 401
    # A token signed with another secret.
    forged = jwt.encode({"sub": tenant.org_id, "token_type": "refresh"}, "x" * 40, algorithm="HS256")
    assert (
        httpx.post(base + "/api/v1/auth/refresh", json={"refresh_token": forged}, timeout=30).status_code
        == 401
    )
    # Revoke the key behind the login: refresh stops working.
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "short-lived"}).json()
    second = login(tenant.server, created["key"]).json()
    with tenant.client() as c:
        assert c.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    r = httpx.post(base + "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}, timeout=30)
    assert r.status_code == 401
    r = httpx.get(base + "/api/v1/auth/me", headers=bearer(second["access_token"]), timeout=30)
    assert r.status_code == 401


def test_logout_revokes_both_tokens_of_the_login(tenant: Tenant) -> None:
    base = tenant.server.base_url
    body = tokens_of(tenant)
    other_login = tokens_of(tenant)
    access, refresh = str(body["access_token"]), str(body["refresh_token"])
    assert httpx.get(base + "/api/v1/auth/me", headers=bearer(access), timeout=30).status_code == 200
    r = httpx.post(base + "/api/v1/auth/logout", headers=bearer(access), timeout=30)
    assert r.status_code == 204
    assert r.content == b""
    r = httpx.get(base + "/api/v1/auth/me", headers=bearer(access), timeout=30)
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    r = httpx.post(base + "/api/v1/auth/refresh", json={"refresh_token": refresh}, timeout=30)
    assert r.status_code == 401
    # Another login of the same key is untouched, and so is the key itself.
    assert (
        httpx.get(
            base + "/api/v1/auth/me", headers=bearer(str(other_login["access_token"])), timeout=30
        ).status_code
        == 200
    )
    with tenant.client() as c:
        assert c.get("/api/v1/organizations").status_code == 200


def test_logout_with_an_api_key_and_a_refresh_token_body(tenant: Tenant) -> None:
    base = tenant.server.base_url
    body = tokens_of(tenant)
    with tenant.client(headers={"Content-Type": "application/json"}) as c:
        r = c.post("/api/v1/auth/logout", json={"refresh_token": body["refresh_token"]})
        assert r.status_code == 204
        # Empty body with a JSON content type (what the Python SDK sends) is fine too.
        assert c.post("/api/v1/auth/logout").status_code == 204
    assert (
        httpx.get(base + "/api/v1/auth/me", headers=bearer(str(body["access_token"])), timeout=30).status_code
        == 401
    )
    assert httpx.post(base + "/api/v1/auth/logout", timeout=30).status_code == 401


def test_me_describes_the_token(tenant: Tenant) -> None:
    body = tokens_of(tenant)
    r = httpx.get(
        tenant.server.base_url + "/api/v1/auth/me", headers=bearer(str(body["access_token"])), timeout=30
    )
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["organization_id"] == tenant.org_id
    assert me["queues"] == ["*"]
    assert me["issued_at"].endswith("Z") and me["expires_at"].endswith("Z")
    assert me["organization"] == {
        "id": tenant.org_id,
        "name": f"Test {tenant.slug}",
        "slug": tenant.slug,
        "plan_tier": "enterprise",
        "billing_email": None,
    }
    claims = jwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert me["api_key_id"] == claims["api_key_id"]


def test_me_needs_a_jwt_access_token(tenant: Tenant) -> None:
    base = tenant.server.base_url
    body = tokens_of(tenant)
    for credential in (tenant.api_key, str(body["refresh_token"])):
        r = httpx.get(base + "/api/v1/auth/me", headers=bearer(credential), timeout=30)
        assert r.status_code == 401, credential
        assert r.json()["code"] == "UNAUTHORIZED"
    assert httpx.get(base + "/api/v1/auth/me", timeout=30).status_code == 401
    # Credentials in the query string are not accepted.
    r = httpx.get(base + "/api/v1/auth/me", params={"token": body["access_token"]}, timeout=30)
    assert r.status_code == 401


def test_me_reports_the_current_scope_of_the_key(tenant: Tenant) -> None:
    with tenant.client() as c:
        created = c.post("/api/v1/api-keys", json={"name": "scoped", "queues": ["emails"]}).json()
        body = login(tenant.server, created["key"]).json()
        r = httpx.get(
            tenant.server.base_url + "/api/v1/auth/me", headers=bearer(body["access_token"]), timeout=30
        )
        assert r.json()["queues"] == ["emails"]
        c.put(f"/api/v1/api-keys/{created['id']}", json={"queues": ["emails", "sms"]})
        r = httpx.get(
            tenant.server.base_url + "/api/v1/auth/me", headers=bearer(body["access_token"]), timeout=30
        )
        assert r.json()["queues"] == ["emails", "sms"]


VALIDATE_FIELDS = {"valid", "error", "message", "organization_id", "api_key_id", "expires_at", "claims"}


def test_validate_always_answers_200(tenant: Tenant) -> None:
    url = tenant.server.base_url + "/api/v1/auth/validate"
    body = tokens_of(tenant)
    r = httpx.post(url, json={"token": body["access_token"]}, timeout=30)
    assert r.status_code == 200
    good = r.json()
    assert set(good) == VALIDATE_FIELDS
    assert good["valid"] is True and good["error"] is None and good["message"] is None
    assert good["organization_id"] == tenant.org_id
    assert good["claims"]["token_type"] == "access"
    assert good["expires_at"].endswith("Z")
    assert good["api_key_id"] == good["claims"]["api_key_id"]
    refresh = httpx.post(url, json={"token": body["refresh_token"]}, timeout=30).json()
    assert refresh["valid"] is True and refresh["claims"]["token_type"] == "refresh"
    for token in ("not-a-token", "eyJhbGciOiJIUzI1NiJ9.e30.bad", ""):
        r = httpx.post(url, json={"token": token}, timeout=30)
        assert r.status_code == 200
        bad = r.json()
        assert set(bad) == VALIDATE_FIELDS
        assert bad["valid"] is False and bad["error"] and bad["message"]
        assert bad["organization_id"] is None and bad["claims"] is None
    # A logged-out token is no longer valid.
    httpx.post(
        tenant.server.base_url + "/api/v1/auth/logout", headers=bearer(str(body["access_token"])), timeout=30
    )
    revoked = httpx.post(url, json={"token": body["access_token"]}, timeout=30).json()
    assert revoked["valid"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/auth/email/start"),
        ("POST", "/api/v1/auth/email/verify"),
        ("POST", "/api/v1/auth/signup/complete"),
        ("GET", "/api/v1/auth/check-email"),
        ("GET", "/api/v1/auth/email/check"),
        ("POST", "/api/v1/auth/email/check"),
        ("GET", "/api/v1/billing/status"),
        ("POST", "/api/v1/billing/portal"),
        ("POST", "/api/v1/billing/webhook"),
    ],
)
def test_hosted_only_routes_answer_404(server: ServerProcess, method: str, path: str) -> None:
    r = httpx.request(
        method,
        server.base_url + path,
        json={"email": "a@example.com"},
        headers={"X-Admin-Key": ADMIN_KEY},
        timeout=30,
    )
    assert r.status_code == 404
    assert r.json() == {
        "code": "NOT_FOUND",
        "message": "Not available on self-hosted deployments",
        "details": None,
    }


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/register", "/api/v1/auth/password/reset", "/api/v1/dashboard/overview"]
)
def test_routes_of_no_reference_version_are_unknown(server: ServerProcess, path: str) -> None:
    r = httpx.post(server.base_url + path, json={}, timeout=30)
    assert r.status_code in (404, 405)
    if r.status_code == 404:
        assert r.json()["message"] == "No route matches this path"
