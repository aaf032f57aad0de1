"""Every error the contract lists for the job routes gets its status, `code` and error body (README.md)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from ..support import Tenant, create_tenant
from .jobs_support import API, assert_error, claim_one, enqueue, get_job, new_queue

SOME_ID = "00000000-0000-4000-8000-000000000000"
BODY_ROUTES = [
    ("POST", "/jobs"),
    ("POST", "/jobs/bulk"),
    ("POST", "/jobs/claim"),
    ("PUT", f"/jobs/{SOME_ID}/priority"),
    ("POST", f"/jobs/{SOME_ID}/complete"),
    ("POST", f"/jobs/{SOME_ID}/fail"),
    ("POST", f"/jobs/{SOME_ID}/heartbeat"),
    ("POST", f"/jobs/{SOME_ID}/progress"),
]
ID_ROUTES = [
    ("GET", "/jobs/{id}", None),
    ("DELETE", "/jobs/{id}", None),
    ("POST", "/jobs/{id}/retry", None),
    ("GET", "/jobs/{id}/history", None),
    ("PUT", "/jobs/{id}/priority", {"priority": 1}),
    ("POST", "/jobs/{id}/complete", {"worker_id": "w", "lease_id": SOME_ID}),
    ("POST", "/jobs/{id}/fail", {"worker_id": "w", "lease_id": SOME_ID, "error": "e"}),
    ("POST", "/jobs/{id}/heartbeat", {"worker_id": "w", "lease_id": SOME_ID, "lease_duration_secs": 30}),
    ("POST", "/jobs/{id}/progress", {"worker_id": "w", "lease_id": SOME_ID, "percent": 1}),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_body_errors(tenant: Tenant, method: str, path: str) -> None:
    with tenant.client() as c:
        body = assert_error(c.request(method, API + path, content=b'{"queue_name": '), 400, "INVALID_JSON")
        assert body["details"][0]["code"] == "invalid_json"
        for empty in (b"", b"  \n"):
            body = assert_error(c.request(method, API + path, content=empty), 400, "INVALID_JSON")
            assert body["details"][0]["code"] == "empty_body"
        r = c.request(method, API + path, content=b'{"a": 1}', headers={"Content-Type": "text/plain"})
        assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        r = c.request(
            method, API + path, content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        for wrong_shape in (b"[]", b'"x"', b"17"):
            assert_error(
                c.request(
                    method, API + path, content=wrong_shape, headers={"Content-Type": "application/json"}
                ),
                422,
                "VALIDATION_ERROR",
            )


@pytest.mark.parametrize(("method", "path", "body"), ID_ROUTES)
def test_unknown_and_malformed_ids_are_404(tenant: Tenant, method: str, path: str, body: object) -> None:
    with tenant.client() as c:
        for job_id in (str(uuid.uuid4()), "not-a-uuid", "123", SOME_ID.upper()):
            r = c.request(method, API + path.format(id=job_id), json=body)
            assert_error(r, 404, "NOT_FOUND")


def test_missing_fields_are_422_with_details(tenant: Tenant) -> None:
    with tenant.client() as c:
        cases = [
            ("/jobs", {"payload": {}}, "queue_name"),
            ("/jobs", {"queue_name": "q"}, "payload"),
            ("/jobs/bulk", {"jobs": [{"payload": 1}]}, "queue_name"),
            ("/jobs/bulk", {"queue_name": "q"}, "jobs"),
            ("/jobs/claim", {"queue_name": "q"}, "worker_id"),
            (f"/jobs/{SOME_ID}/complete", {"lease_id": SOME_ID}, "worker_id"),
            (f"/jobs/{SOME_ID}/fail", {"worker_id": "w", "lease_id": SOME_ID}, "error"),
            (f"/jobs/{SOME_ID}/heartbeat", {"worker_id": "w", "lease_id": SOME_ID}, "lease_duration_secs"),
        ]
        for path, payload, field in cases:
            body = assert_error(c.post(API + path, json=payload), 422, "VALIDATION_ERROR")
            assert body["details"] == [
                {"field": field, "message": body["details"][0]["message"], "code": "missing_field"}
            ], (path, body)
            assert body["message"].startswith(field), body
        body = assert_error(
            c.post(f"{API}/jobs/bulk", json={"queue_name": "q", "jobs": [{"priority": 1}]}),
            422,
            "VALIDATION_ERROR",
        )
        assert body["details"][0]["code"] == "missing_field"
        assert "payload" in body["details"][0]["field"]


def test_wrong_types_are_422_invalid_type(tenant: Tenant) -> None:
    with tenant.client() as c:
        for payload in (
            {"queue_name": 5, "payload": {}},
            {"queue_name": "q", "payload": {}, "priority": "high"},
            {"queue_name": "q", "payload": {}, "priority": 1.5},
            {"queue_name": "q", "payload": {}, "max_retries": True},
            {"queue_name": "q", "payload": {}, "scheduled_at": 12},
        ):
            body = assert_error(c.post(f"{API}/jobs", json=payload), 422, "VALIDATION_ERROR")
            assert body["details"][0]["code"] == "invalid_type", body
        body = assert_error(
            c.post(f"{API}/jobs/bulk", json={"queue_name": "q", "jobs": {"payload": 1}}),
            422,
            "VALIDATION_ERROR",
        )
        assert body["details"][0]["code"] == "invalid_type"


def test_out_of_range_values_are_400(tenant: Tenant) -> None:
    with tenant.client() as c:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"priority": 101}, "priority"),
            ({"priority": -101}, "priority"),
            ({"max_retries": -1}, "max_retries"),
            ({"max_retries": 101}, "max_retries"),
            ({"timeout_seconds": 0}, "timeout_seconds"),
            ({"timeout_seconds": 86401}, "timeout_seconds"),
            ({"queue_name": ""}, "queue_name"),
            ({"queue_name": "x" * 101}, "queue_name"),
            ({"queue_name": ".hidden"}, "queue_name"),
            ({"queue_name": "-dash"}, "queue_name"),
            ({"queue_name": "a b"}, "queue_name"),
            ({"queue_name": "a/b"}, "queue_name"),
            ({"parent_job_id": "zzz"}, "parent_job_id"),
            ({"expires_at": "yesterday"}, "expires_at"),
        ]
        for extra, field in cases:
            r = c.post(f"{API}/jobs", json={"queue_name": "q", "payload": {}, **extra})
            body = assert_error(r, 400, "VALIDATION_ERROR")
            assert body["message"].startswith(f"{field}: "), body
            assert body["details"][0]["field"] == field
            assert {"field", "message", "code"} <= set(body["details"][0])
        # Boundaries are accepted; Unicode letters and dots/underscores are fine in queue names.
        for extra in (
            {"priority": 100},
            {"priority": -100},
            {"max_retries": 0},
            {"max_retries": 100},
            {"timeout_seconds": 1},
            {"timeout_seconds": 86400},
            {"queue_name": "x" * 100},
            {"queue_name": "émails_v2.high-prio"},
            {"queue_name": "_private"},
        ):
            r = c.post(f"{API}/jobs", json={"queue_name": "q", "payload": {}, **extra})
            assert r.status_code == 201, (extra, r.text)


def test_oversized_payloads_and_bodies_are_413(tenant: Tenant) -> None:
    q = new_queue()
    with tenant.client() as c:
        limit = 1024 * 1024
        ok = "x" * (limit - 10)  # a JSON string of limit - 8 bytes
        assert c.post(f"{API}/jobs", json={"queue_name": q, "payload": ok}).status_code == 201
        r = c.post(f"{API}/jobs", json={"queue_name": q, "payload": "x" * limit})
        body = assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert body["limit"] == limit and body["current"] == limit + 2
        huge = "x" * (2 * 1024 * 1024 + 10)
        assert_error(c.post(f"{API}/jobs", json={"queue_name": q, "payload": huge}), 413, "PAYLOAD_TOO_LARGE")
        r = c.post(
            f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": "x" * limit}, {"payload": 1}]}
        )
        assert r.status_code == 200
        assert r.json()["failure_count"] == 1 and r.json()["failed"][0]["index"] == 0
        job_id = enqueue(c, q, priority=50)
        lease = claim_one(c, q)["lease_id"]
        assert_error(
            c.post(
                f"{API}/jobs/{job_id}/complete",
                json={"worker_id": "w1", "lease_id": lease, "result": "x" * limit},
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        )
        assert get_job(c, job_id)["status"] == "processing"
        assert c.get(f"{API}/jobs/stats", params={"queue_name": q}).json()["total"] == 3


def test_plan_payload_cap_is_413_with_quota_keys(server: object) -> None:
    org = create_tenant(server, plan_tier="free")  # type: ignore[arg-type]
    with org.client() as c:
        r = c.post(f"{API}/jobs", json={"queue_name": "q", "payload": "x" * (64 * 1024)})
        body = assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert body["plan"] == "free" and body["upgrade_to"] == "starter"
        assert body["limit"] == 64 * 1024 and body["current"] == 64 * 1024 + 2


def test_authentication_errors(tenant: Tenant) -> None:
    base = tenant.server.base_url
    with httpx.Client(base_url=base) as anon:
        assert_error(anon.get(f"{API}/jobs/stats"), 401, "UNAUTHORIZED")
        assert_error(anon.post(f"{API}/jobs", json={"queue_name": "q", "payload": {}}), 401, "UNAUTHORIZED")
        r = anon.get(f"{API}/jobs/stats", headers={"Authorization": "Bearer sp_test_" + "A" * 43})
        assert r.status_code == 401 and r.json()["code"] in ("UNAUTHORIZED", "AUTHENTICATION_FAILED")
        r = anon.get(f"{API}/jobs/stats", headers={"Authorization": f"Basic {tenant.api_key}"})
        assert r.status_code == 401
        r = anon.get(f"{API}/jobs/stats", params={"api_key": tenant.api_key})
        assert r.status_code == 401


def test_unknown_route_and_wrong_method(tenant: Tenant) -> None:
    with tenant.client() as c:
        body = assert_error(c.get(f"{API}/jobz"), 404, "NOT_FOUND")
        assert body["message"] == "No route matches this path"
        assert_error(c.get(f"{API}/jobs/{SOME_ID}/nope"), 404, "NOT_FOUND")
        assert_error(c.patch(f"{API}/jobs/{SOME_ID}", json={}), 405, "METHOD_NOT_ALLOWED")
        assert_error(c.get(f"{API}/jobs/claim"), 405, "METHOD_NOT_ALLOWED")
        assert_error(c.delete(f"{API}/jobs/bulk"), 405, "METHOD_NOT_ALLOWED")
        assert_error(c.put(f"{API}/jobs/stats"), 405, "METHOD_NOT_ALLOWED")


def test_api_version_header(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get(f"{API}/jobs/stats")
        assert r.headers["X-API-Version"] == "1"
        for fine in ("1", "v2", "latest", ""):
            assert c.get(f"{API}/jobs/stats", headers={"X-API-Version": fine}).status_code == 200, fine
        for bad in ("2", "0", "-1"):
            assert_error(c.get(f"{API}/jobs/stats", headers={"X-API-Version": bad}), 400, "BAD_REQUEST")


def test_request_id_is_echoed_or_minted(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.get(f"{API}/jobs/stats", headers={"X-Request-Id": "trace-123"})
        assert r.headers["X-Request-Id"] == "trace-123"
        r = c.post(f"{API}/jobs", content=b"{", headers={"X-Request-Id": "trace-err"})
        assert r.status_code == 400 and r.headers["X-Request-Id"] == "trace-err"
        r = c.get(f"{API}/nowhere", headers={"X-Request-Id": "trace-404"})
        assert r.status_code == 404 and r.headers["X-Request-Id"] == "trace-404"
        minted = c.get(f"{API}/jobs/stats").headers["X-Request-Id"]
        assert uuid.UUID(minted).version == 4
        assert minted != c.get(f"{API}/jobs/stats").headers["X-Request-Id"]


def test_the_server_survives_hostile_input(tenant: Tenant) -> None:
    q = new_queue()
    json_type = {"Content-Type": "application/json"}
    with tenant.client() as c:
        fine: list[dict[str, Any]] = [
            {"queue_name": q, "payload": "\U0001f600 \u202e"},
            {"queue_name": q, "payload": {"a": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}},
            {"queue_name": q, "payload": 1e308},
            {"queue_name": q, "payload": {}, "idempotency_key": "'; DROP TABLE jobs; --"},
            {"queue_name": q, "payload": {"escaped": "\\u0000 is just text here"}},
        ]
        for body in fine:
            r = c.post(f"{API}/jobs", json=body)
            assert r.status_code == 201, (body, r.text)
            stored = get_job(c, r.json()["id"])["payload"]
            # jsonb keeps numbers as numeric: 1e308 comes back written out in full, the same number.
            assert stored == body["payload"] or float(stored) == body["payload"]
        # jsonb cannot hold U+0000 or numbers beyond its range: a 400 naming the field, never a 500.
        for field, body in (
            ("payload", {"queue_name": q, "payload": {"k": "a\u0000b"}}),
            ("payload", {"queue_name": q, "payload": {"\u0000": 1}}),
            ("tags", {"queue_name": q, "payload": {}, "tags": {"t": "\u0000"}}),
        ):
            body_out = assert_error(c.post(f"{API}/jobs", json=body), 400, "VALIDATION_ERROR")
            assert body_out["details"][0]["field"] == field
        r = c.post(f"{API}/jobs", content=b'{"queue_name": "q", "payload": 1e999999}', headers=json_type)
        assert_error(r, 400, "VALIDATION_ERROR")
        r = c.post(
            f"{API}/jobs/bulk", json={"queue_name": q, "jobs": [{"payload": "\u0000"}, {"payload": 1}]}
        )
        assert r.status_code == 200 and [f["index"] for f in r.json()["failed"]] == [0]
        assert r.json()["failed"][0]["error"].startswith("jobs[0].payload")
        job_id = enqueue(c, q, priority=99)
        lease = claim_one(c, q)["lease_id"]
        r = c.post(
            f"{API}/jobs/{job_id}/complete", json={"worker_id": "w1", "lease_id": lease, "result": "\u0000"}
        )
        assert_error(r, 400, "VALIDATION_ERROR")
        assert get_job(c, job_id)["status"] == "processing"
        # Not JSON at all: a lone surrogate escape, bytes that are not UTF-8.
        r = c.post(f"{API}/jobs", content=b'{"queue_name": "q", "payload": "\\ud800"}', headers=json_type)
        assert_error(r, 400, "INVALID_JSON")
        r = c.post(f"{API}/jobs", content=b'{"queue_name": "q", "payload": "\xff\xfe"}', headers=json_type)
        assert_error(r, 400, "INVALID_JSON")
        r = c.post(
            f"{API}/jobs",
            content=b'{"queue_name": "q", "payload": {}, "priority": 99999999999999999999}',
            headers=json_type,
        )
        assert r.status_code in (400, 422) and r.json()["code"] == "VALIDATION_ERROR"
        assert c.get(f"{API}/jobs/stats").status_code == 200
