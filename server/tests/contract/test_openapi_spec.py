"""Contract test: openapi/openapi.yaml describes the whole REST surface of shared/contract/rest.md.

Checks that the document is valid OpenAPI 3.1, that every operationId is a unique snake_case name
(they are the canonical service-function and SDK method names), and that every route of rest.md
§§1-17 and §19, plus the §18 routes that always answer 404, is present with its agreed operationId.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_PATH = REPO_ROOT / "openapi" / "openapi.yaml"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

# (method, path, operationId) for every route of rest.md §§1-17 and every alias of §19.
CONTRACT_ROUTES: list[tuple[str, str, str]] = [
    # health
    ("GET", "/health", "health"),
    ("GET", "/health/live", "liveness"),
    ("GET", "/health/ready", "readiness"),
    # metrics
    ("GET", "/metrics", "metrics"),
    ("GET", "/api/v1/metrics", "metrics_alias"),
    ("GET", "/api/v1/metrics/prometheus", "metrics_prometheus_alias"),
    # auth
    ("POST", "/api/v1/auth/login", "login"),
    ("POST", "/api/v1/auth/refresh", "refresh_token"),
    ("POST", "/api/v1/auth/logout", "logout"),
    ("GET", "/api/v1/auth/me", "get_me"),
    ("POST", "/api/v1/auth/validate", "validate_token"),
    # organizations
    ("POST", "/api/v1/organizations", "create_organization"),
    ("GET", "/api/v1/organizations/check-slug", "check_slug"),
    ("GET", "/api/v1/organizations/check-slug/{slug}", "check_slug_alias"),
    ("POST", "/api/v1/organizations/generate-slug", "generate_slug"),
    ("GET", "/api/v1/organizations", "list_organizations"),
    ("GET", "/api/v1/organizations/usage", "get_organization_usage"),
    ("GET", "/api/v1/organizations/webhook-token", "get_webhook_token"),
    ("DELETE", "/api/v1/organizations/webhook-token", "clear_webhook_token_delete"),
    ("POST", "/api/v1/organizations/webhook-token/regenerate", "regenerate_webhook_token"),
    ("POST", "/api/v1/organizations/webhook-token/clear", "clear_webhook_token"),
    ("GET", "/api/v1/organizations/{id}", "get_organization"),
    ("PUT", "/api/v1/organizations/{id}", "update_organization"),
    ("DELETE", "/api/v1/organizations/{id}", "delete_organization"),
    ("GET", "/api/v1/organizations/{id}/members", "list_organization_members"),
    ("GET", "/api/v1/organizations/{id}/usage", "get_organization_usage_alias"),
    ("GET", "/api/v1/organizations/{id}/webhook-token", "get_webhook_token_alias"),
    ("DELETE", "/api/v1/organizations/{id}/webhook-token", "clear_webhook_token_delete_alias"),
    ("POST", "/api/v1/organizations/{id}/webhook-token/regenerate", "regenerate_webhook_token_alias"),
    ("POST", "/api/v1/organizations/{id}/webhook-token/clear", "clear_webhook_token_alias"),
    # api_keys
    ("GET", "/api/v1/api-keys", "list_api_keys"),
    ("POST", "/api/v1/api-keys", "create_api_key"),
    ("GET", "/api/v1/api-keys/{id}", "get_api_key"),
    ("PUT", "/api/v1/api-keys/{id}", "update_api_key"),
    ("DELETE", "/api/v1/api-keys/{id}", "revoke_api_key"),
    # jobs
    ("POST", "/api/v1/jobs", "create_job"),
    ("POST", "/api/v1/jobs/bulk", "bulk_create_jobs"),
    ("GET", "/api/v1/jobs", "list_jobs"),
    ("GET", "/api/v1/jobs/stats", "get_job_stats"),
    ("GET", "/api/v1/jobs/status", "get_jobs_batch_status"),
    ("GET", "/api/v1/jobs/{id}", "get_job"),
    ("DELETE", "/api/v1/jobs/{id}", "cancel_job"),
    ("GET", "/api/v1/jobs/{id}/history", "get_job_history"),
    ("POST", "/api/v1/jobs/{id}/retry", "retry_job"),
    ("PUT", "/api/v1/jobs/{id}/priority", "boost_job_priority"),
    # worker_protocol
    ("POST", "/api/v1/jobs/claim", "claim_jobs"),
    ("POST", "/api/v1/jobs/{id}/complete", "complete_job"),
    ("POST", "/api/v1/jobs/{id}/fail", "fail_job"),
    ("POST", "/api/v1/jobs/{id}/heartbeat", "heartbeat_job"),
    ("POST", "/api/v1/jobs/{id}/progress", "report_job_progress"),
    # dependencies
    ("GET", "/api/v1/jobs/{id}/dependencies", "get_job_dependencies"),
    ("POST", "/api/v1/jobs/{id}/dependencies", "add_job_dependencies"),
    # dlq
    ("GET", "/api/v1/jobs/dlq", "list_dlq_jobs"),
    ("POST", "/api/v1/jobs/dlq/retry", "retry_dlq_jobs"),
    ("POST", "/api/v1/jobs/dlq/purge", "purge_dlq_jobs"),
    # queues
    ("GET", "/api/v1/queues", "list_queues"),
    ("GET", "/api/v1/queues/{name}", "get_queue"),
    ("PUT", "/api/v1/queues/{name}/config", "update_queue_config"),
    ("PUT", "/api/v1/queues/{name}", "update_queue_config_alias"),
    ("DELETE", "/api/v1/queues/{name}", "delete_queue"),
    ("GET", "/api/v1/queues/{name}/stats", "get_queue_stats"),
    ("POST", "/api/v1/queues/{name}/pause", "pause_queue"),
    ("POST", "/api/v1/queues/{name}/resume", "resume_queue"),
    # workers
    ("POST", "/api/v1/workers/register", "register_worker"),
    ("GET", "/api/v1/workers", "list_workers"),
    ("GET", "/api/v1/workers/{id}", "get_worker"),
    ("DELETE", "/api/v1/workers/{id}", "deregister_worker_delete"),
    ("POST", "/api/v1/workers/{id}/heartbeat", "heartbeat_worker"),
    ("POST", "/api/v1/workers/{id}/deregister", "deregister_worker"),
    ("POST", "/api/v1/workers/{id}/drain", "drain_worker"),
    # schedules
    ("POST", "/api/v1/schedules", "create_schedule"),
    ("GET", "/api/v1/schedules", "list_schedules"),
    ("GET", "/api/v1/schedules/{id}", "get_schedule"),
    ("PUT", "/api/v1/schedules/{id}", "update_schedule"),
    ("DELETE", "/api/v1/schedules/{id}", "delete_schedule"),
    ("POST", "/api/v1/schedules/{id}/pause", "pause_schedule"),
    ("POST", "/api/v1/schedules/{id}/resume", "resume_schedule"),
    ("POST", "/api/v1/schedules/{id}/trigger", "trigger_schedule"),
    ("GET", "/api/v1/schedules/{id}/history", "get_schedule_history"),
    ("GET", "/api/v1/schedules/preview", "preview_schedule"),
    # workflows
    ("POST", "/api/v1/workflows", "create_workflow"),
    ("GET", "/api/v1/workflows", "list_workflows"),
    ("GET", "/api/v1/workflows/{id}", "get_workflow"),
    ("POST", "/api/v1/workflows/{id}/cancel", "cancel_workflow"),
    ("POST", "/api/v1/workflows/{id}/retry", "retry_workflow"),
    ("GET", "/api/v1/workflows/{id}/jobs", "list_workflow_jobs"),
    ("GET", "/api/v1/workflows/{id}/jobs/status", "get_workflow_jobs_status"),
    ("GET", "/api/v1/workflows/{id}/jobs/{job_id}", "get_workflow_job"),
    # outgoing_webhooks
    ("GET", "/api/v1/outgoing-webhooks", "list_outgoing_webhooks"),
    ("POST", "/api/v1/outgoing-webhooks", "create_outgoing_webhook"),
    ("GET", "/api/v1/outgoing-webhooks/{id}", "get_outgoing_webhook"),
    ("PUT", "/api/v1/outgoing-webhooks/{id}", "update_outgoing_webhook"),
    ("DELETE", "/api/v1/outgoing-webhooks/{id}", "delete_outgoing_webhook"),
    ("POST", "/api/v1/outgoing-webhooks/{id}/test", "test_outgoing_webhook"),
    ("GET", "/api/v1/outgoing-webhooks/{id}/deliveries", "list_webhook_deliveries"),
    ("POST", "/api/v1/outgoing-webhooks/{id}/retry/{delivery_id}", "retry_webhook_delivery"),
    ("POST", "/api/v1/outgoing-webhooks/{id}/deliveries/{delivery_id}/retry", "retry_webhook_delivery_alias"),
    # ingest
    ("POST", "/api/v1/webhooks/{org_id}/custom", "ingest_custom"),
    ("POST", "/api/v1/webhooks/{org_id}/github", "ingest_github"),
    ("POST", "/api/v1/webhooks/{org_id}/stripe", "ingest_stripe"),
    ("POST", "/api/v1/webhooks/{org_id}/shopify", "ingest_shopify"),
    ("GET", "/api/v1/webhooks/deliveries", "list_ingest_deliveries"),
    # realtime
    ("GET", "/api/v1/ws", "open_websocket"),
    ("GET", "/api/v1/events", "stream_events"),
    ("GET", "/api/v1/events/jobs/{id}", "stream_job_events"),
    ("GET", "/api/v1/events/queues/{name}", "stream_queue_events"),
    # dashboard
    ("GET", "/api/v1/dashboard", "get_dashboard"),
    # admin
    ("GET", "/api/v1/admin/organizations", "admin_list_organizations"),
    ("POST", "/api/v1/admin/organizations", "admin_create_organization"),
    ("GET", "/api/v1/admin/organizations/{id}", "admin_get_organization"),
    ("PATCH", "/api/v1/admin/organizations/{id}", "admin_update_organization"),
    ("PUT", "/api/v1/admin/organizations/{id}", "admin_update_organization_alias"),
    ("DELETE", "/api/v1/admin/organizations/{id}", "admin_delete_organization"),
    ("POST", "/api/v1/admin/organizations/{id}/api-keys", "admin_create_api_key"),
    ("POST", "/api/v1/admin/organizations/{id}/reset-usage", "admin_reset_usage"),
    ("GET", "/api/v1/admin/stats", "admin_get_stats"),
    ("GET", "/api/v1/admin/plans", "admin_list_plans"),
]

# rest.md §18: outside self-hosting scope; documented with a single 404 response.
UNAVAILABLE_ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/api/v1/auth/email/start", "start_email_auth"),
    ("POST", "/api/v1/auth/email/verify", "verify_email_auth"),
    ("POST", "/api/v1/auth/signup/complete", "complete_signup"),
    ("GET", "/api/v1/auth/check-email", "check_email"),
    ("GET", "/api/v1/auth/email/check", "check_email_alias"),
    ("POST", "/api/v1/auth/email/check", "check_email_post_alias"),
    ("GET", "/api/v1/billing/status", "get_billing_status"),
    ("POST", "/api/v1/billing/portal", "create_billing_portal_session"),
    ("POST", "/api/v1/billing/webhook", "receive_billing_webhook"),
]

# Routes whose auth column in rest.md is `—` (public).
PUBLIC_ROUTES = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/metrics/prometheus"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/validate"),
    ("GET", "/api/v1/organizations/check-slug"),
    ("GET", "/api/v1/organizations/check-slug/{slug}"),
    ("POST", "/api/v1/organizations/generate-slug"),
}

# Auth `— or A` (rest.md §3): public unless REGISTRATION_MODE=closed; refusals are 403, not 401.
OPTIONAL_CREDENTIAL_ROUTES = {("POST", "/api/v1/organizations")}

ERROR_RESPONSES = {
    "ValidationError": "400",
    "InvalidJson": "400",
    "BadRequest": "400",
    "Unauthorized": "401",
    "AccessDenied": "403",
    "NotFound": "404",
    "Conflict": "409",
    "PayloadTooLarge": "413",
    "UnsupportedMediaType": "415",
    "Unprocessable": "422",
    "RateLimited": "429",
    "QuotaExceeded": "429",
    "InternalError": "500",
    "ServiceUnavailable": "503",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    import yaml

    assert SPEC_PATH.is_file(), f"missing {SPEC_PATH}"
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    ops: dict[tuple[str, str], dict[str, Any]] = {}
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                ops[(method.upper(), path)] = item[method]
    return ops


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_info_and_servers(spec: dict[str, Any]) -> None:
    assert spec["info"]["title"] == "Spooled API"
    assert spec["info"]["version"] == "1.0.0"
    assert spec["info"]["license"]["name"] == "Apache-2.0"
    assert {"url": "http://localhost:8080"}.items() <= spec["servers"][0].items()


def test_operation_ids_are_unique_snake_case(spec: dict[str, Any]) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for key, op in _operations(spec).items():
        op_id = op.get("operationId")
        assert op_id, f"{key} has no operationId"
        assert SNAKE_CASE.match(op_id), f"{key}: operationId {op_id!r} is not snake_case"
        assert op_id not in seen, f"operationId {op_id!r} used by {seen[op_id]} and {key}"
        seen[op_id] = key


def test_contract_route_list_is_consistent() -> None:
    all_routes = CONTRACT_ROUTES + UNAVAILABLE_ROUTES
    assert len({(m, p) for m, p, _ in all_routes}) == len(all_routes)
    assert len({o for _, _, o in all_routes}) == len(all_routes)


@pytest.mark.parametrize(("method", "path", "operation_id"), CONTRACT_ROUTES + UNAVAILABLE_ROUTES)
def test_contract_route_is_documented(
    spec: dict[str, Any], method: str, path: str, operation_id: str
) -> None:
    ops = _operations(spec)
    assert (method, path) in ops, f"{method} {path} is missing from openapi.yaml"
    assert ops[(method, path)]["operationId"] == operation_id


def test_no_route_outside_the_contract(spec: dict[str, Any]) -> None:
    expected = {(m, p) for m, p, _ in CONTRACT_ROUTES + UNAVAILABLE_ROUTES}
    extra = sorted(set(_operations(spec)) - expected)
    assert not extra, f"routes not in rest.md: {extra}"


def test_paths_are_rooted_correctly(spec: dict[str, Any]) -> None:
    for path in spec["paths"]:
        assert path == "/health" or path.startswith(("/health/", "/metrics", "/api/v1/")), path
        assert not path.endswith("/"), path


def test_every_operation_has_tags_and_responses(spec: dict[str, Any]) -> None:
    tag_names = {t["name"] for t in spec.get("tags", [])}
    for key, op in _operations(spec).items():
        assert op.get("tags"), f"{key} has no tags"
        assert set(op["tags"]) <= tag_names, f"{key} uses an undeclared tag"
        assert op.get("responses"), f"{key} has no responses"


@pytest.mark.parametrize(("method", "path", "operation_id"), UNAVAILABLE_ROUTES)
def test_unavailable_routes_only_answer_404(
    spec: dict[str, Any], method: str, path: str, operation_id: str
) -> None:
    op = _operations(spec)[(method, path)]
    assert set(op["responses"]) == {"404"}


def test_authenticated_routes_document_core_errors(spec: dict[str, Any]) -> None:
    unavailable = {(m, p) for m, p, _ in UNAVAILABLE_ROUTES}
    default_security = spec.get("security", [])
    for key, op in _operations(spec).items():
        if key in unavailable or key in PUBLIC_ROUTES or key in OPTIONAL_CREDENTIAL_ROUTES:
            continue
        security = op.get("security", default_security)
        assert security, f"{key} should require a credential"
        missing = {"400", "401", "404", "429"} - set(op["responses"])
        assert not missing, f"{key} lacks error responses {sorted(missing)}"


def test_public_routes_need_no_credential(spec: dict[str, Any]) -> None:
    ops = _operations(spec)
    for key in PUBLIC_ROUTES:
        assert ops[key].get("security") == [], f"{key} should be public"
    for key in OPTIONAL_CREDENTIAL_ROUTES:
        assert {} in ops[key]["security"], f"{key} should allow anonymous calls"
        assert {"adminKey": []} in ops[key]["security"]


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    assert (schemes["adminKey"]["in"], schemes["adminKey"]["name"]) == ("header", "X-Admin-Key")
    assert (schemes["webhookToken"]["in"], schemes["webhookToken"]["name"]) == ("header", "X-Webhook-Token")
    assert (schemes["realtimeToken"]["in"], schemes["realtimeToken"]["name"]) == ("query", "token")
    ops = _operations(spec)
    for key in [("GET", p) for p in ("/api/v1/ws", "/api/v1/events")]:
        assert {"realtimeToken": []} in ops[key]["security"]
    admin = [k for k in ops if k[1].startswith("/api/v1/admin/")]
    assert admin
    for key in admin:
        assert ops[key]["security"] == [{"adminKey": []}], key
    assert ops[("POST", "/api/v1/webhooks/{org_id}/custom")]["security"] == [{"webhookToken": []}]


def test_error_responses_use_error_body(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    for name in ERROR_RESPONSES:
        assert name in responses, f"components/responses/{name} missing"
    error_body = "#/components/schemas/ErrorBody"
    for name, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        reachable = _refs(schema)
        for ref in list(reachable):
            reachable |= _refs(_resolve(spec, {"$ref": ref}))
        assert error_body in reachable or schema == {"$ref": error_body}, name
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"code", "message"}
    assert {"code", "message", "details"} <= set(body["properties"])
    assert body.get("additionalProperties") is True


def test_operation_errors_use_matching_status(spec: dict[str, Any]) -> None:
    for key, op in _operations(spec).items():
        for status, response in op["responses"].items():
            ref = response.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if name in ERROR_RESPONSES:
                assert ERROR_RESPONSES[name] == status, f"{key}: {status} -> {name}"


def test_rate_limited_response_headers(spec: dict[str, Any]) -> None:
    for name in ("RateLimited", "QuotaExceeded"):
        headers = spec["components"]["responses"][name]["headers"]
        for header in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert header in headers, f"{name} lacks {header}"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/v1/jobs", {"X-Total-Count", "X-Has-More", "X-Request-Id"}),
        ("GET", "/api/v1/jobs/dlq", {"X-Has-More"}),
        ("GET", "/api/v1/jobs/{id}/history", {"X-Has-More"}),
    ],
)
def test_list_headers(spec: dict[str, Any], method: str, path: str, headers: set[str]) -> None:
    ok = _operations(spec)[(method, path)]["responses"]["200"]
    assert headers <= set(ok["headers"])


def test_job_create_documents_contract_statuses(spec: dict[str, Any]) -> None:
    responses = _operations(spec)[("POST", "/api/v1/jobs")]["responses"]
    assert {"200", "201", "403", "413", "429"} <= set(responses)


def test_realtime_media_types(spec: dict[str, Any]) -> None:
    ops = _operations(spec)
    for path in ("/api/v1/events", "/api/v1/events/jobs/{id}", "/api/v1/events/queues/{name}"):
        assert "text/event-stream" in ops[("GET", path)]["responses"]["200"]["content"]
    assert "101" in ops[("GET", "/api/v1/ws")]["responses"]
    assert "text/plain; version=0.0.4" in ops[("GET", "/metrics")]["responses"]["200"]["content"]


def test_response_objects_require_every_field(spec: dict[str, Any]) -> None:
    # The contract: optional response fields are present with null, never omitted.
    schemas = spec["components"]["schemas"]
    for name in ("Job", "JobSummary", "QueueConfig", "Worker", "Schedule", "Organization", "UsageInfo",
                 "PlanLimits", "ApiKeySummary", "OutgoingWebhook", "Delivery", "HealthResponse",
                 "DashboardResponse", "AdminStats", "WorkflowResponse", "WorkflowJob"):
        schema = schemas[name]
        assert set(schema["required"]) == set(schema["properties"]), name
