"""HTTP edge helpers: reading JSON bodies the contract's way, writing JSON responses, authenticating."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.response.base import ASGIResponse

from ..core.auth import Principal
from ..core.context import Core
from ..core.errors import (
    InvalidJson,
    NotFound,
    PayloadTooLarge,
    ShapeInvalid,
    Unauthorized,
    UnsupportedMediaType,
)

T = TypeVar("T")
JSON = "application/json"
MAX_BODY_BYTES = 2 * 1024 * 1024
_ENCODER = msgspec.json.Encoder()


def core_of(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=_ENCODER.encode(content), status_code=status, media_type=JSON, headers=headers)


def hot_json(content: Any, status: int = 200) -> ASGIResponse:
    """`json_response` for the hot routes (enqueue, claim, settle): handlers annotated `-> ASGIResponse` hand
    Litestar the finished ASGI response, skipping the `Response` object it would otherwise build and convert
    on every request."""
    return ASGIResponse(body=_ENCODER.encode(content), status_code=status, media_type=JSON)


def no_content() -> Response[None]:
    return Response(content=None, status_code=204)


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


async def raw_body(request: Request[Any, Any, Any], *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    body = await request.body()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    return body


def _shape_error(exc: msgspec.ValidationError) -> ShapeInvalid:
    text = str(exc)
    field = "body"
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        field = path.rstrip("`")
    elif text.startswith("Object missing required field `"):
        field = text.split("`")[1]
        return ShapeInvalid(field, "is required", rule="missing_field")
    if text.startswith("Object missing required field `"):
        inner = text.split("`")[1]
        field = f"{field}.{inner}" if field != "body" else inner
        return ShapeInvalid(field, "is required", rule="missing_field")
    return ShapeInvalid(field, text, rule="invalid_type")


async def read_json(
    request: Request[Any, Any, Any], type_: type[T], *, optional: bool = False,
    max_bytes: int = MAX_BODY_BYTES,
) -> T:
    """Decode the body into `type_`: 415 for a non-JSON type, 400 INVALID_JSON, 422 for the wrong shape.

    With `optional`, an empty body (whatever its Content-Type) decodes as `{}`.
    """
    body = await raw_body(request, max_bytes=max_bytes)
    if not body.strip():
        if optional:
            body = b"{}"
        else:
            raise InvalidJson("Request body is empty", details=[{"field": "body", "message": "empty body",
                                                                  "code": "empty_body"}])
    else:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json_type(content_type):
            raise UnsupportedMediaType()
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise _shape_error(exc) from None
    except msgspec.DecodeError:
        raise InvalidJson(
            details=[{"field": "body", "message": "malformed JSON", "code": "invalid_json"}]
        ) from None


def bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    """K routes: a Bearer API key or JWT access token (never in the query string)."""
    credential = bearer(request)
    if credential is None:
        raise Unauthorized("Missing or invalid Authorization header")
    core = core_of(request)
    principal = await core.auth.credential(credential)
    request.state.principal = principal
    limiter = getattr(core, "rate_limits", None)
    if limiter is not None:
        await limiter.limit_principal(principal, "rest")
    return principal


def client_ip(request: Request[Any, Any, Any]) -> str:
    """The caller's address for per-IP limits (trusted headers and proxy hops per semantics.md §13)."""
    from ..core.ratelimit import client_ip as resolve

    peer = request.client.host if request.client else None
    return resolve(request.headers, peer, core_of(request).settings)


async def limit_public(request: Request[Any, Any, Any]) -> None:
    """Public (unauthenticated) routes: the per-IP token bucket."""
    limiter = getattr(core_of(request), "rate_limits", None)
    if limiter is not None:
        await limiter.limit_public(client_ip(request))


async def authenticate_unrestricted(request: Request[Any, Any, Any]) -> Principal:
    """K* routes: an unrestricted key only (a scoped key gets 403)."""
    principal = await authenticate(request)
    principal.require_unrestricted()
    return principal


def path_uuid(value: str) -> uuid.UUID:
    """An id from the path: anything that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound() from None


def query_int(request: Request[Any, Any, Any], name: str, default: int, lo: int, hi: int) -> int:
    """Pagination-style integers: invalid values fall back to the default, out-of-range values are clamped."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return max(lo, min(hi, value))


def query_bool(request: Request[Any, Any, Any], name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}
