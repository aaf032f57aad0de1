"""REST: organizations (rest.md §3)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post

from ..core.auth import constant_time_equals
from ..core.errors import AccessDenied
from ..core.orgs import create_organization as create_org, issued_key_to_wire, organization_to_wire
from .http import core_of, json_response, read_json


class CreateOrganizationBody(msgspec.Struct):
    name: str
    slug: str
    billing_email: str | None = None


def _admin_key_ok(request: Request[Any, Any, Any]) -> bool:
    configured = core_of(request).settings.admin_api_key
    given = request.headers.get("x-admin-key")
    return bool(configured and given and constant_time_equals(given, configured))


@post("/api/v1/organizations", operation_id="create_organization")
async def create_organization(request: Request[Any, Any, Any]) -> Response[bytes]:
    core = core_of(request)
    mode = core.settings.registration_mode
    if mode == "invite" or (mode == "closed" and not _admin_key_ok(request)):
        raise AccessDenied("Registration is closed")
    body = await read_json(request, CreateOrganizationBody)
    org, key = await create_org(
        core.db, name=body.name, slug=body.slug, billing_email=body.billing_email,
        plan_tier=core.settings.default_plan, key_kind=core.settings.key_kind,
    )
    key_wire = issued_key_to_wire(key)
    return json_response({
        "organization": organization_to_wire(org),
        "api_key": {k: key_wire[k] for k in ("id", "key", "name", "created_at")},
    }, 201)


ROUTES = [create_organization]
