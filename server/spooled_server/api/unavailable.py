"""REST: hosted-service routes that a self-hosted server does not offer (rest.md §18).

Email sign-in and billing belong to the hosted product. These paths answer 404 with a message that says
why, so clients fail clearly instead of with the generic unknown-route text.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from ..core.errors import NotFound
from .http import limit_public

MESSAGE = "Not available on self-hosted deployments"


async def _unavailable(request: Request[Any, Any, Any]) -> Response[bytes]:
    await limit_public(request)
    raise NotFound(MESSAGE)


@post("/api/v1/auth/email/start", operation_id="start_email_auth")
async def start_email_auth(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@post("/api/v1/auth/email/verify", operation_id="verify_email_auth")
async def verify_email_auth(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@post("/api/v1/auth/signup/complete", operation_id="complete_signup")
async def complete_signup(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@get("/api/v1/auth/check-email", operation_id="check_email")
async def check_email(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@get("/api/v1/auth/email/check", operation_id="check_email_alias")
async def check_email_alias(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@post("/api/v1/auth/email/check", operation_id="check_email_post_alias")
async def check_email_post_alias(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@get("/api/v1/billing/status", operation_id="get_billing_status")
async def get_billing_status(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@post("/api/v1/billing/portal", operation_id="create_billing_portal_session")
async def create_billing_portal_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


@post("/api/v1/billing/webhook", operation_id="receive_billing_webhook")
async def receive_billing_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await _unavailable(request)


ROUTES = [
    start_email_auth,
    verify_email_auth,
    complete_signup,
    check_email,
    check_email_alias,
    check_email_post_alias,
    get_billing_status,
    create_billing_portal_session,
    receive_billing_webhook,
]
