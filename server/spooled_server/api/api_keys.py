"""REST: API keys of the caller's organization (rest.md §4)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put

from ..core import api_keys as svc
from ..core.errors import ValidationFailed
from ..core.orgs import issued_key_to_wire
from .http import authenticate_unrestricted, core_of, json_response, no_content, path_uuid, read_json


class CreateApiKeyBody(msgspec.Struct):
    name: str
    queues: list[str] | None = None
    rate_limit: int | None = None
    expires_at: str | None = None
    # Not part of the API: sending it is an error, so it has to be seen to be refused.
    permissions: Any = msgspec.UNSET


class UpdateApiKeyBody(msgspec.Struct):
    name: str | None = None
    queues: list[str] | None = None
    rate_limit: int | msgspec.UnsetType | None = msgspec.UNSET
    is_active: bool | None = None
    permissions: Any = msgspec.UNSET


def _refuse_permissions(value: Any) -> None:
    if value is not msgspec.UNSET:
        raise ValidationFailed(
            "permissions", "is not supported; scope keys with `queues`", rule="unknown_field"
        )


@get("/api/v1/api-keys", operation_id="list_api_keys")
async def list_api_keys(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.list_api_keys(core_of(request), principal))


@post("/api/v1/api-keys", operation_id="create_api_key")
async def create_api_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    body = await read_json(request, CreateApiKeyBody)
    _refuse_permissions(body.permissions)
    key = await svc.create_api_key(
        core_of(request),
        principal,
        name=body.name,
        queues=body.queues,
        rate_limit=body.rate_limit,
        expires_at=body.expires_at,
    )
    return json_response(issued_key_to_wire(key), 201)


@get("/api/v1/api-keys/{key_id:str}", operation_id="get_api_key")
async def get_api_key(request: Request[Any, Any, Any], key_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    return json_response(await svc.get_api_key(core_of(request), principal, path_uuid(key_id)))


@put("/api/v1/api-keys/{key_id:str}", operation_id="update_api_key")
async def update_api_key(request: Request[Any, Any, Any], key_id: str) -> Response[bytes]:
    principal = await authenticate_unrestricted(request)
    key = path_uuid(key_id)
    body = await read_json(request, UpdateApiKeyBody)
    _refuse_permissions(body.permissions)
    set_limit = body.rate_limit is not msgspec.UNSET
    return json_response(
        await svc.update_api_key(
            core_of(request),
            principal,
            key,
            name=body.name,
            queues=body.queues,
            rate_limit=body.rate_limit if set_limit else None,
            set_rate_limit=set_limit,
            is_active=body.is_active,
        )
    )


@delete("/api/v1/api-keys/{key_id:str}", operation_id="revoke_api_key", status_code=204)
async def revoke_api_key(request: Request[Any, Any, Any], key_id: str) -> Response[None]:
    principal = await authenticate_unrestricted(request)
    await svc.revoke_api_key(core_of(request), principal, path_uuid(key_id))
    return no_content()


ROUTES = [list_api_keys, create_api_key, get_api_key, update_api_key, revoke_api_key]
