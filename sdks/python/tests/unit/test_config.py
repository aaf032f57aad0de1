"""Configuration: arguments win over SPOOLED_* environment variables, which win over defaults."""

from __future__ import annotations

import httpx
import pytest
import respx

from spooled import SpooledClient
from spooled._transport import ClientConfig


def test_environment_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPOOLED_API_KEY", "SPOOLED_BASE_URL", "SPOOLED_GRPC_ADDRESS", "SPOOLED_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    default = ClientConfig.resolve()
    assert (default.api_key, default.base_url, default.grpc_address) == (
        None,
        "http://localhost:8080",
        "localhost:50051",
    )
    monkeypatch.setenv("SPOOLED_API_KEY", "sp_test_env")
    monkeypatch.setenv("SPOOLED_BASE_URL", "http://env.test:9/api/v1")
    monkeypatch.setenv("SPOOLED_GRPC_ADDRESS", "env.test:1")
    env = ClientConfig.resolve()
    assert (env.api_key, env.base_url, env.grpc_address) == ("sp_test_env", "http://env.test:9", "env.test:1")
    args = ClientConfig.resolve(api_key="sp_test_arg", base_url="http://arg.test", grpc_address="arg:2")
    assert (args.api_key, args.base_url, args.grpc_address) == ("sp_test_arg", "http://arg.test", "arg:2")
    with pytest.raises(ValueError):
        ClientConfig.resolve(max_retries=-1)


@respx.mock
def test_requests_carry_bearer_user_agent_and_extra_headers() -> None:
    route = respx.get("http://h.test/health").mock(
        return_value=httpx.Response(
            200,
            json={"status": "healthy", "database": True, "cache": True, "version": "1", "uptime_seconds": 1},
        )
    )
    with SpooledClient("sp_test_abc", base_url="http://h.test", headers={"X-Trace": "t1"}) as client:
        assert client.health.get().status == "healthy"
    sent = route.calls[0].request.headers
    assert sent["authorization"] == "Bearer sp_test_abc"
    assert sent["user-agent"].startswith("spooled-python/")
    assert sent["x-trace"] == "t1"


@respx.mock
def test_admin_calls_send_the_admin_key_and_others_do_not() -> None:
    plans = respx.get("http://h.test/api/v1/admin/plans").mock(return_value=httpx.Response(200, json=[]))
    stats = respx.get("http://h.test/api/v1/jobs/stats").mock(
        return_value=httpx.Response(
            200,
            json={
                "pending": 0,
                "scheduled": 0,
                "processing": 0,
                "completed": 0,
                "failed": 0,
                "deadletter": 0,
                "cancelled": 0,
                "total": 0,
            },
        )
    )
    with SpooledClient("k", base_url="http://h.test", admin_key="adm") as client:
        assert client.admin.plans() == []
        client.jobs.stats()
    assert plans.calls[0].request.headers["x-admin-key"] == "adm"
    assert "x-admin-key" not in stats.calls[0].request.headers
