"""HTTP machinery shared by the clients: configuration, error mapping, retries, extra headers.

The generated low-level calls (``spooled._generated.api``) send requests through an ``httpx`` client built
here. Two event hooks do the cross-cutting work without touching generated code: a request hook adds
per-call headers (admin key, webhook token) held in a context variable, and a response hook turns every
status >= 400 into the matching :mod:`spooled.errors` exception before the generated parser sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx

from . import _constants as c
from ._generated.client import AuthenticatedClient
from ._generated.types import Response
from ._retry import RetryPolicy, is_safe
from ._version import __version__
from .errors import NetworkError, SpooledError, TimeoutError, error_from_response

T = TypeVar("T")

_extra_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "spooled_extra_headers", default=None
)


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings. Arguments win over ``SPOOLED_*`` environment variables."""

    api_key: str | None
    base_url: str
    grpc_address: str
    admin_key: str | None
    timeout: float
    connect_timeout: float
    retry: RetryPolicy
    headers: Mapping[str, str] = field(default_factory=dict)
    grpc_secure: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        grpc_address: str | None = None,
        admin_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        grpc_secure: bool | None = None,
    ) -> ClientConfig:
        policy = retry or RetryPolicy()
        if max_retries is not None:
            if max_retries < 0:
                raise ValueError("max_retries must be >= 0")
            policy = replace(policy, max_retries=max_retries)
        url = (base_url or os.environ.get(c.ENV_BASE_URL) or c.DEFAULT_BASE_URL).rstrip("/")
        # A base URL given with the API prefix works too; routes are addressed from the root.
        if url.endswith("/api/v1"):
            url = url[: -len("/api/v1")]
        return cls(
            api_key=api_key or os.environ.get(c.ENV_API_KEY) or None,
            base_url=url,
            grpc_address=grpc_address or os.environ.get(c.ENV_GRPC_ADDRESS) or c.DEFAULT_GRPC_ADDRESS,
            admin_key=admin_key or os.environ.get(c.ENV_ADMIN_KEY) or None,
            timeout=c.DEFAULT_TIMEOUT if timeout is None else timeout,
            connect_timeout=c.DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
            retry=policy,
            headers=dict(headers or {}),
            grpc_secure=bool(grpc_secure),
        )

    def default_headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"spooled-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self.headers)
        return headers

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


@contextlib.contextmanager
def extra_headers(headers: Mapping[str, str] | None) -> Iterator[None]:
    if not headers:
        yield
        return
    token = _extra_headers.set(headers)
    try:
        yield
    finally:
        _extra_headers.reset(token)


def _add_extra_headers(request: httpx.Request) -> None:
    headers = _extra_headers.get()
    if headers:
        request.headers.update(headers)


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        error = error_from_response(response.status_code, response.content, response.headers)
        error.method = response.request.method
        raise error


def _map_transport_error(exc: httpx.HTTPError) -> SpooledError:
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(f"request timed out: {exc!r}")
    return NetworkError(f"network error: {exc!r}")


def _method_of(exc: BaseException) -> str:
    request = getattr(exc, "request", None)
    try:
        return str(request.method) if request is not None else "POST"
    except RuntimeError:  # httpx raises when an exception has no request attached
        return "POST"


class SyncTransport:
    """A blocking httpx client plus the generated client that rides on it."""

    def __init__(self, config: ClientConfig, http_client: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http_client or httpx.Client(
            base_url=config.base_url,
            headers=config.default_headers(),
            timeout=config.httpx_timeout(),
            event_hooks={"request": [_add_extra_headers], "response": [self._on_response]},
        )
        self.generated = AuthenticatedClient(base_url=config.base_url, token=config.api_key or "")
        self.generated.set_httpx_client(self.http)

    @staticmethod
    def _on_response(response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            _raise_for_error(response)

    def call(
        self,
        fn: Callable[..., Response[Any]],
        /,
        *,
        idempotent_post: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response[Any]:
        """Run one generated call with the retry policy; errors come out as :class:`SpooledError`."""
        return self.retrying(lambda: fn(client=self.generated, **kwargs), idempotent_post, headers)

    def retrying(
        self, attempt: Callable[[], T], idempotent_post: bool, headers: Mapping[str, str] | None
    ) -> T:
        retry_number = 0
        while True:
            try:
                with extra_headers(headers):
                    return attempt()
            except SpooledError as err:
                error, method = err, _method_from_error(err)
            except httpx.HTTPError as exc:
                error, method = _map_transport_error(exc), _method_of(exc)
                error.__cause__ = exc
            delay = self.config.retry.delay_for(
                error, retry_number, safe=is_safe(method, has_idempotency_key=idempotent_post)
            )
            if delay is None:
                raise error
            time.sleep(delay)
            retry_number += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent_post: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """A plain request (for routes the generated layer cannot express, e.g. raw signed bodies)."""

        def attempt() -> httpx.Response:
            return self.http.request(method, path, **kwargs)

        return self.retrying(attempt, idempotent_post, headers)

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """The asyncio twin of :class:`SyncTransport`."""

    def __init__(self, config: ClientConfig, http_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.http = http_client or httpx.AsyncClient(
            base_url=config.base_url,
            headers=config.default_headers(),
            timeout=config.httpx_timeout(),
            event_hooks={"request": [self._add_headers], "response": [self._on_response]},
        )
        self.generated = AuthenticatedClient(base_url=config.base_url, token=config.api_key or "")
        self.generated.set_async_httpx_client(self.http)

    @staticmethod
    async def _add_headers(request: httpx.Request) -> None:
        _add_extra_headers(request)

    @staticmethod
    async def _on_response(response: httpx.Response) -> None:
        if response.status_code >= 400:
            await response.aread()
            _raise_for_error(response)

    async def call(
        self,
        fn: Callable[..., Awaitable[Response[Any]]],
        /,
        *,
        idempotent_post: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response[Any]:
        return await self.retrying(lambda: fn(client=self.generated, **kwargs), idempotent_post, headers)

    async def retrying(
        self, attempt: Callable[[], Awaitable[T]], idempotent_post: bool, headers: Mapping[str, str] | None
    ) -> T:
        retry_number = 0
        while True:
            try:
                with extra_headers(headers):
                    return await attempt()
            except SpooledError as err:
                error, method = err, _method_from_error(err)
            except httpx.HTTPError as exc:
                error, method = _map_transport_error(exc), _method_of(exc)
                error.__cause__ = exc
            delay = self.config.retry.delay_for(
                error, retry_number, safe=is_safe(method, has_idempotency_key=idempotent_post)
            )
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            retry_number += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent_post: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        async def attempt() -> httpx.Response:
            return await self.http.request(method, path, **kwargs)

        return await self.retrying(attempt, idempotent_post, headers)

    async def close(self) -> None:
        await self.http.aclose()


def _method_from_error(err: SpooledError) -> str:
    return err.method or "POST"
