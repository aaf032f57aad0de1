"""REST: admin routes (rest.md §17), authenticated by `X-Admin-Key` and limited per client IP."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put

from .. import __version__
from ..core import admin as svc
from ..core.orgs import issued_key_to_wire, organization_to_wire
from .health import STARTED
from .http import client_ip, core_of, json_response, no_content, path_uuid, query_bool, query_int, read_json


class AdminCreateOrganizationBody(msgspec.Struct):
    name: str
    slug: str
    billing_email: str | None = None
    plan_tier: str | None = None
    settings: dict[str, Any] | None = None
    custom_limits: dict[str, Any] | None = None


class AdminUpdateOrganizationBody(msgspec.Struct):
    name: str | None = None
    plan_tier: str | None = None
    billing_email: str | None = None
    settings: dict[str, Any] | None = None
    custom_limits: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class AdminCreateApiKeyBody(msgspec.Struct):
    name: str
    queues: list[str] | None = None
    rate_limit: int | None = None
    expires_at: str | None = None


async def require_admin(request: Request[Any, Any, Any]) -> None:
    """60 requests per minute per client IP (counted before the key check, so guessing is slow too)."""
    core = core_of(request)
    if core.rate_limits is not None:
        await core.rate_limits.limit_admin(client_ip(request))
    svc.verify_admin_key(core.settings, request.headers.get("x-admin-key"))


@get("/api/v1/admin/organizations", operation_id="admin_list_organizations")
async def admin_list_organizations(request: Request[Any, Any, Any]) -> Response[bytes]:
    await require_admin(request)
    q = request.query_params
    return json_response(
        await svc.list_organizations(
            core_of(request),
            plan_tier=q.get("plan_tier") or None,
            search=q.get("search") or None,
            limit=query_int(request, "limit", 50, 1, 100),
            offset=query_int(request, "offset", 0, 0, 2**31 - 1),
            sort_by=q.get("sort_by") or None,
            sort_order=q.get("sort_order") or None,
        )
    )


@post("/api/v1/admin/organizations", operation_id="admin_create_organization")
async def admin_create_organization(request: Request[Any, Any, Any]) -> Response[bytes]:
    await require_admin(request)
    body = await read_json(request, AdminCreateOrganizationBody)
    org, key = await svc.create_org(
        core_of(request),
        name=body.name,
        slug=body.slug,
        billing_email=body.billing_email,
        plan_tier=body.plan_tier,
        settings=body.settings,
        custom_limits=body.custom_limits,
    )
    key_wire = issued_key_to_wire(key)
    return json_response(
        {
            "organization": organization_to_wire(org, admin=True),
            "api_key": {k: key_wire[k] for k in ("id", "key", "name", "created_at")},
        },
        201,
    )


@get("/api/v1/admin/organizations/{org_id:str}", operation_id="admin_get_organization")
async def admin_get_organization(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    await require_admin(request)
    return json_response(await svc.get_org(core_of(request), path_uuid(org_id)))


async def _update(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    await require_admin(request)
    org = path_uuid(org_id)
    body = await read_json(request, AdminUpdateOrganizationBody)
    set_limits = body.custom_limits is not msgspec.UNSET
    return json_response(
        await svc.update_org(
            core_of(request),
            org,
            name=body.name,
            plan_tier=body.plan_tier,
            billing_email=body.billing_email,
            settings=body.settings,
            custom_limits=body.custom_limits if set_limits else None,
            set_custom_limits=set_limits,
        )
    )


@patch("/api/v1/admin/organizations/{org_id:str}", operation_id="admin_update_organization")
async def admin_update_organization(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _update(request, org_id)


@put("/api/v1/admin/organizations/{org_id:str}", operation_id="admin_update_organization_alias")
async def admin_update_organization_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _update(request, org_id)


@delete("/api/v1/admin/organizations/{org_id:str}", operation_id="admin_delete_organization", status_code=204)
async def admin_delete_organization(request: Request[Any, Any, Any], org_id: str) -> Response[None]:
    await require_admin(request)
    hard = query_bool(request, "hard_delete") or query_bool(request, "hard")
    await svc.delete_org(core_of(request), path_uuid(org_id), hard=hard)
    return no_content()


@post("/api/v1/admin/organizations/{org_id:str}/api-keys", operation_id="admin_create_api_key")
async def admin_create_api_key(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    await require_admin(request)
    org = path_uuid(org_id)
    body = await read_json(request, AdminCreateApiKeyBody)
    key = await svc.create_key(
        core_of(request),
        org,
        name=body.name,
        queues=body.queues,
        rate_limit=body.rate_limit,
        expires_at=body.expires_at,
    )
    return json_response(issued_key_to_wire(key), 201)


@post(
    "/api/v1/admin/organizations/{org_id:str}/reset-usage", operation_id="admin_reset_usage", status_code=200
)
async def admin_reset_usage(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    await require_admin(request)
    await svc.reset_usage(core_of(request), path_uuid(org_id))
    return json_response({"success": True})


@get("/api/v1/admin/stats", operation_id="admin_get_stats")
async def admin_get_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    await require_admin(request)
    return json_response(
        await svc.stats(core_of(request), uptime_seconds=int(time.time() - STARTED), api_version=__version__)
    )


@get("/api/v1/admin/plans", operation_id="admin_list_plans")
async def admin_list_plans(request: Request[Any, Any, Any]) -> Response[bytes]:
    await require_admin(request)
    return json_response(svc.plans(core_of(request)))


ROUTES = [
    admin_list_organizations,
    admin_create_organization,
    admin_get_organization,
    admin_update_organization,
    admin_update_organization_alias,
    admin_delete_organization,
    admin_create_api_key,
    admin_reset_usage,
    admin_get_stats,
    admin_list_plans,
]
