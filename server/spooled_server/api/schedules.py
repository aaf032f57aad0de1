"""REST: cron schedules (rest.md §11) and the fire-time preview."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put

from ..core import schedules as svc
from ..core.errors import ValidationFailed
from .http import authenticate, core_of, json_response, no_content, path_uuid, query_int, read_json

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class CreateScheduleBody(msgspec.Struct):
    name: Any
    cron_expression: Any
    queue_name: Any
    payload_template: msgspec.Raw
    description: str | Unset | None = UNSET
    timezone: str | Unset | None = UNSET
    priority: int | Unset | None = UNSET
    max_retries: int | Unset | None = UNSET
    timeout_seconds: int | Unset | None = UNSET
    tags: msgspec.Raw | Unset = UNSET
    metadata: msgspec.Raw | Unset = UNSET


class UpdateScheduleBody(msgspec.Struct):
    name: Any = UNSET
    cron_expression: Any = UNSET
    queue_name: Any = UNSET
    payload_template: msgspec.Raw | Unset = UNSET
    description: str | Unset | None = UNSET
    timezone: str | Unset | None = UNSET
    priority: int | Unset | None = UNSET
    max_retries: int | Unset | None = UNSET
    timeout_seconds: int | Unset | None = UNSET
    tags: msgspec.Raw | Unset = UNSET
    metadata: msgspec.Raw | Unset = UNSET
    is_active: bool | Unset | None = UNSET


def _given(body: msgspec.Struct) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.__struct_fields__ if getattr(body, name) is not UNSET}


@post("/api/v1/schedules", operation_id="create_schedule")
async def create_schedule(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    body = await read_json(request, CreateScheduleBody)
    fields = _given(body)
    for optional in ("timezone", "priority"):
        if fields.get(optional, UNSET) is None:
            del fields[optional]  # null means the default
    return json_response(await svc.create_schedule(core_of(request), principal, fields), 201)


@get("/api/v1/schedules", operation_id="list_schedules")
async def list_schedules(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = await authenticate(request)
    limit = query_int(request, "limit", 100, 1, 500)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    queue = request.query_params.get("queue_name") or None
    raw_active = (request.query_params.get("is_active") or "").strip().lower()
    is_active = {"true": True, "1": True, "false": False, "0": False}.get(raw_active)
    return json_response(
        await svc.list_schedules(core_of(request), principal, queue, is_active, limit, offset)
    )


@get("/api/v1/schedules/preview", operation_id="preview_schedule")
async def preview_schedule(request: Request[Any, Any, Any]) -> Response[bytes]:
    await authenticate(request)
    params = request.query_params
    expression = params.get("cron") or params.get("cron_expression")
    if expression is None:
        raise ValidationFailed("cron", "is required", rule="required")
    raw_count = params.get("count")
    count = 5
    if raw_count is not None:
        try:
            count = int(raw_count)
        except ValueError:
            raise ValidationFailed("count", "must be an integer", rule="type") from None
    return json_response(svc.preview(expression, params.get("timezone") or "UTC", count))


@get("/api/v1/schedules/{schedule_id:str}", operation_id="get_schedule")
async def get_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.get_schedule(core_of(request), principal, path_uuid(schedule_id)))


@put("/api/v1/schedules/{schedule_id:str}", operation_id="update_schedule")
async def update_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    sid = path_uuid(schedule_id)
    body = await read_json(request, UpdateScheduleBody)
    return json_response(await svc.update_schedule(core_of(request), principal, sid, _given(body)))


@delete("/api/v1/schedules/{schedule_id:str}", operation_id="delete_schedule", status_code=204)
async def delete_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[None]:
    principal = await authenticate(request)
    await svc.delete_schedule(core_of(request), principal, path_uuid(schedule_id))
    return no_content()


@post("/api/v1/schedules/{schedule_id:str}/pause", operation_id="pause_schedule")
async def pause_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.pause_schedule(core_of(request), principal, path_uuid(schedule_id)))


@post("/api/v1/schedules/{schedule_id:str}/resume", operation_id="resume_schedule")
async def resume_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.resume_schedule(core_of(request), principal, path_uuid(schedule_id)))


@post("/api/v1/schedules/{schedule_id:str}/trigger", operation_id="trigger_schedule")
async def trigger_schedule(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    return json_response(await svc.trigger_schedule(core_of(request), principal, path_uuid(schedule_id)))


@get("/api/v1/schedules/{schedule_id:str}/history", operation_id="get_schedule_history")
async def get_schedule_history(request: Request[Any, Any, Any], schedule_id: str) -> Response[bytes]:
    principal = await authenticate(request)
    limit = query_int(request, "limit", 50, 1, 500)
    return json_response(
        await svc.schedule_history(core_of(request), principal, path_uuid(schedule_id), limit)
    )


ROUTES = [
    create_schedule,
    list_schedules,
    preview_schedule,
    get_schedule,
    update_schedule,
    delete_schedule,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
    get_schedule_history,
]
