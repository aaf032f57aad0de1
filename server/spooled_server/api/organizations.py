"""REST: organizations (rest.md §3) and their §19 aliases."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put

from ..core import orgs as svc
from ..core.auth import constant_time_equals
from ..core.errors import AccessDenied, ValidationFailed
from ..core.orgs import create_organization as create_org
from ..core.orgs import issued_key_to_wire, organization_to_wire
from .http import (
    authenticate,
    authenticate_unrestricted,
    core_of,
    json_response,
    limit_public,
    no_content,
    path_uuid,
    read_json,
)


class CreateOrganizationBody(msgspec.Struct):
    name: str
    slug: str
    billing_email: str | None = None


class GenerateSlugBody(msgspec.Struct):
    name: str


class UpdateOrganizationBody(msgspec.Struct):
    name: str | None = None
    billing_email: str | None = None
    settings: dict[str, Any] | None = None


class ClearTokenBody(msgspec.Struct):
    confirm: bool | None = None


def _admin_key_ok(request: Request[Any, Any, Any]) -> bool:
    configured = core_of(request).settings.admin_api_key
    given = request.headers.get("x-admin-key")
    return bool(configured and given and constant_time_equals(given, configured))


def _base_url(request: Request[Any, Any, Any]) -> str:
    configured = core_of(request).settings.public_base_url
    return configured or str(request.base_url)


@post("/api/v1/organizations", operation_id="create_organization")
async def create_organization(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    core = core_of(request)
    mode = core.settings.registration_mode
    if mode == "invite" or (mode == "closed" and not _admin_key_ok(request)):
        raise AccessDenied("Registration is closed")
    body = await read_json(request, CreateOrganizationBody)
    org, key = await create_org(
        core.db,
        name=body.name,
        slug=body.slug,
        billing_email=body.billing_email,
        plan_tier=core.settings.default_plan,
        key_kind=core.settings.key_kind,
    )
    key_wire = issued_key_to_wire(key)
    return json_response(
        {
            "organization": organization_to_wire(org),
            "api_key": {k: key_wire[k] for k in ("id", "key", "name", "created_at")},
        },
        201,
    )


@get("/api/v1/organizations/check-slug", operation_id="check_slug")
async def check_slug(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    return json_response(await svc.check_slug(core_of(request).db, request.query_params.get("slug")))


@get("/api/v1/organizations/check-slug/{slug:str}", operation_id="check_slug_alias")
async def check_slug_alias(request: Request[Any, Any, Any], slug: str) -> Response[bytes]:
    await limit_public(request)
    return json_response(await svc.check_slug(core_of(request).db, slug))


@post("/api/v1/organizations/generate-slug", operation_id="generate_slug")
async def generate_slug(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    body = await read_json(request, GenerateSlugBody)
    return json_response({"slug": await svc.generate_slug(core_of(request).db, body.name)})


@get("/api/v1/organizations", operation_id="list_organizations")
async def list_organizations(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.list_organizations(core_of(request).db, principal))


@get("/api/v1/organizations/{org_id:str}", operation_id="get_organization")
async def get_organization(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_organization(core_of(request).db, principal, path_uuid(org_id)))


@put("/api/v1/organizations/{org_id:str}", operation_id="update_organization")
async def update_organization(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    org = path_uuid(org_id)
    body = await read_json(request, UpdateOrganizationBody)
    return json_response(
        await svc.update_organization(
            core_of(request).db,
            principal,
            org,
            name=body.name,
            billing_email=body.billing_email,
            settings=body.settings,
        )
    )


@delete("/api/v1/organizations/{org_id:str}", operation_id="delete_organization", status_code=204)
async def delete_organization(request: Request[Any, Any, Any], org_id: str) -> Response[None]:
    principal = await authenticate_unrestricted(request)
    core = core_of(request)
    await svc.delete_organization(core.db, principal, path_uuid(org_id))
    core.auth.forget(principal.org_id)
    return no_content()


@get("/api/v1/organizations/{org_id:str}/members", operation_id="list_organization_members")
async def list_organization_members(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.list_members(core_of(request).db, principal, path_uuid(org_id)))


@get("/api/v1/organizations/usage", operation_id="get_organization_usage")
async def get_organization_usage(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.organization_usage(core_of(request), principal))


@get("/api/v1/organizations/{org_id:str}/usage", operation_id="get_organization_usage_alias")
async def get_organization_usage_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.organization_usage(core_of(request), principal, path_uuid(org_id)))


# --- incoming-webhook token (canonical paths and every §19 alias) -------------------------------------------


async def _token(request: Request[Any, Any, Any], org_id: str | None, action: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    org = None if org_id is None else path_uuid(org_id)
    if action == "clear":
        body = await read_json(request, ClearTokenBody, optional=True)
        if body.confirm is False:
            raise ValidationFailed("confirm", "must be true (or omitted) to clear the token", rule="value")
    return json_response(
        await svc.webhook_token(core_of(request).db, principal, org, _base_url(request), action=action)
    )


@get("/api/v1/organizations/webhook-token", operation_id="get_webhook_token")
async def get_webhook_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _token(request, None, "get")


@get("/api/v1/organizations/{org_id:str}/webhook-token", operation_id="get_webhook_token_alias")
async def get_webhook_token_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _token(request, org_id, "get")


@post(
    "/api/v1/organizations/webhook-token/regenerate", operation_id="regenerate_webhook_token", status_code=200
)
async def regenerate_webhook_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _token(request, None, "regenerate")


@post(
    "/api/v1/organizations/{org_id:str}/webhook-token/regenerate",
    operation_id="regenerate_webhook_token_alias",
    status_code=200,
)
async def regenerate_webhook_token_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _token(request, org_id, "regenerate")


@post("/api/v1/organizations/webhook-token/clear", operation_id="clear_webhook_token", status_code=200)
async def clear_webhook_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _token(request, None, "clear")


@post(
    "/api/v1/organizations/{org_id:str}/webhook-token/clear",
    operation_id="clear_webhook_token_alias",
    status_code=200,
)
async def clear_webhook_token_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _token(request, org_id, "clear")


@delete("/api/v1/organizations/webhook-token", operation_id="clear_webhook_token_delete", status_code=200)
async def clear_webhook_token_delete(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _token(request, None, "clear")


@delete(
    "/api/v1/organizations/{org_id:str}/webhook-token",
    operation_id="clear_webhook_token_delete_alias",
    status_code=200,
)
async def clear_webhook_token_delete_alias(request: Request[Any, Any, Any], org_id: str) -> Response[bytes]:
    return await _token(request, org_id, "clear")


ROUTES = [
    create_organization,
    check_slug,
    check_slug_alias,
    generate_slug,
    list_organizations,
    get_organization,
    update_organization,
    delete_organization,
    list_organization_members,
    get_organization_usage,
    get_organization_usage_alias,
    get_webhook_token,
    get_webhook_token_alias,
    regenerate_webhook_token,
    regenerate_webhook_token_alias,
    clear_webhook_token,
    clear_webhook_token_alias,
    clear_webhook_token_delete,
    clear_webhook_token_delete_alias,
]
