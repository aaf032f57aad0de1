"""REST: JWT login, refresh, logout, me and validate (rest.md §2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, get, post

from ..core.errors import Unauthorized, ValidationFailed
from ..core.jobs import ts
from ..core.plans import wire_tier
from ..db.queries import Q
from .http import authenticate, bearer, core_of, json_response, limit_public, no_content, read_json


class LoginBody(msgspec.Struct):
    api_key: str


class RefreshBody(msgspec.Struct):
    refresh_token: str


class LogoutBody(msgspec.Struct):
    refresh_token: str | None = None


class ValidateBody(msgspec.Struct):
    token: str | None = None


def _unix_ts(value: Any) -> str | None:
    if value is None:
        return None
    return ts(datetime.fromtimestamp(int(value), UTC))


@post("/api/v1/auth/login", operation_id="login")
async def login(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    body = await read_json(request, LoginBody)
    if len(body.api_key) < 10:
        raise ValidationFailed("api_key", "must be at least 10 characters", rule="length")
    core = core_of(request)
    limiter = core.rate_limits
    await limiter.check_login(body.api_key)
    try:
        principal = await core.auth.api_key(body.api_key)
    except Unauthorized:
        await limiter.login_failed(body.api_key)
        raise Unauthorized("Invalid credentials") from None
    return json_response(core.auth.issue_tokens(principal))


@post("/api/v1/auth/refresh", operation_id="refresh_token")
async def refresh_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    body = await read_json(request, RefreshBody)
    auth = core_of(request).auth
    claims = auth.decode(body.refresh_token)
    if claims.get("token_type") != "refresh":
        raise Unauthorized("Invalid refresh token")
    principal = await auth.principal_from_claims(claims)  # revoked login, inactive or expired key -> 401
    ttl = auth.access_ttl()
    # The new access token keeps the login's `sid`, so logging out revokes it too.
    access = auth._sign(principal, str(claims["sid"]), "access", ttl)
    return json_response({"access_token": access, "token_type": "Bearer", "expires_in": ttl})


@post("/api/v1/auth/logout", operation_id="logout", status_code=204)
async def logout(request: Request[Any, Any, Any]) -> Response[None]:
    principal = await authenticate(request)
    body = await read_json(request, LogoutBody, optional=True)
    auth = core_of(request).auth
    refresh_lifetime = auth.access_ttl() * 24
    sessions: set[str] = set()
    credential = bearer(request)
    tokens = [credential] if principal.via_jwt and credential else []
    if body.refresh_token:
        tokens.append(body.refresh_token)
    for token in tokens:
        try:
            claims = auth.decode(token)
        except Unauthorized:
            continue  # an unusable refresh token needs no revoking
        if str(claims.get("org_id", claims.get("sub"))) != str(principal.org_id):
            continue
        sid = str(claims["sid"])
        if sid not in sessions:
            sessions.add(sid)
            # Revoked until the login's longest-lived token (the refresh token) would have expired.
            await auth.revoke_session(sid, principal.org_id, int(claims["iat"]) + refresh_lifetime)
    return no_content()


@get("/api/v1/auth/me", operation_id="get_me")
async def get_me(request: Request[Any, Any, Any]) -> Response[bytes]:
    credential = bearer(request)
    if credential is None or not credential.startswith("eyJ"):
        raise Unauthorized("This route needs a JWT access token")
    principal = await authenticate(request)
    core = core_of(request)
    async with core.db.tenant(principal.org_id) as conn:
        org = await conn.fetchrow(Q.get_organization, principal.org_id)
    if org is None:
        raise Unauthorized()
    return json_response(
        {
            "organization_id": str(principal.org_id),
            "api_key_id": str(principal.key_id),
            "queues": list(principal.queues),
            "issued_at": _unix_ts(principal.issued_at),
            "expires_at": _unix_ts(principal.expires_at),
            "organization": {
                "id": str(org["id"]),
                "name": org["name"],
                "slug": org["slug"],
                "plan_tier": wire_tier(org["plan_tier"]),
                "billing_email": org["billing_email"],
            },
        }
    )


def _invalid(error: str, message: str) -> dict[str, Any]:
    return {
        "valid": False,
        "error": error,
        "message": message,
        "organization_id": None,
        "api_key_id": None,
        "expires_at": None,
        "claims": None,
    }


@post("/api/v1/auth/validate", operation_id="validate_token")
async def validate_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    body = await read_json(request, ValidateBody)
    auth = core_of(request).auth
    token = (body.token or "").strip()
    if not token:
        return json_response(_invalid("missing_token", "No token given"))
    try:
        claims = auth.decode(token)
    except Unauthorized:
        return json_response(
            _invalid("invalid_token", "Token is malformed, has a bad signature or has expired")
        )
    try:
        uuid.UUID(str(claims["sid"]))
        principal = await auth.principal_from_claims(claims)
    except (Unauthorized, ValueError):
        return json_response(
            _invalid("revoked_token", "Token was revoked or its API key is no longer active")
        )
    return json_response(
        {
            "valid": True,
            "error": None,
            "message": None,
            "organization_id": str(principal.org_id),
            "api_key_id": str(principal.key_id),
            "expires_at": _unix_ts(claims.get("exp")),
            "claims": claims,
        }
    )


ROUTES = [login, refresh_token, logout, get_me, validate_token]
