"""Test support: a real PostgreSQL, real server processes on loopback, and per-test organizations.

- `TestDatabase`: the embedded PostgreSQL (or `SPOOLED_TEST_DATABASE_URL`), one fresh database per session.
- `ServerProcess`: `spooled-server serve` in a subprocess on free ports, with short background intervals.
- `Tenant`: an organization created through the public API, with an httpx client that carries its key.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from spooled_server.db.database import asyncpg_dsn
from spooled_server.db.embedded import EmbeddedPostgres

ADMIN_KEY = "test-admin-key-0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class TestDatabase:
    """A PostgreSQL server for the whole test session and a fresh database in it."""

    __test__ = False

    def __init__(self) -> None:
        self._tmp: str | None = None
        self._embedded: EmbeddedPostgres | None = None
        self.admin_url = ""
        self.url = ""
        self.name = f"spooled_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        given = os.environ.get("SPOOLED_TEST_DATABASE_URL")
        if given:
            self.admin_url = given
        else:
            self._tmp = tempfile.mkdtemp(prefix="spooled-test-pg-")
            os.chmod(self._tmp, 0o755)
            self._embedded = EmbeddedPostgres(Path(self._tmp), stop_on_exit=True)
            self.admin_url = with_database(self._embedded.start(), "postgres")
        self.url = self.create_database(self.name)

    def create_database(self, name: str) -> str:
        import asyncio

        async def run() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(self.admin_url))
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(run())
        return with_database(self.admin_url, name)

    def migrated(self, suffix: str, orgs: dict[uuid.UUID, str], *, hot: bool = False) -> str:
        """A fresh database `<session db>_<suffix>` with the schema (and the hot functions if asked) and
        the given organizations (id -> slug); returns its URL."""
        import asyncio

        from spooled_server.db.database import connect_owner
        from spooled_server.db.hot import install as install_hot
        from spooled_server.db.migrate import migrate

        url = self.create_database(f"{self.name}_{suffix}")

        async def run() -> None:
            conn = await connect_owner(url)
            try:
                await migrate(conn)
                if hot:
                    await install_hot(conn)
                for org, slug in orgs.items():
                    await conn.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $2)", org, slug)
            finally:
                await conn.close()

        asyncio.run(run())
        return url

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


@dataclass
class ServerProcess:
    """`spooled-server serve` as a real process on loopback."""

    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOOLED_", "DATABASE_URL", "REDIS_URL"))}
        env.update({
            "DATABASE_URL": self.database_url,
            "SPOOLED_ENV": "development",
            "PORT": str(self.port),
            "GRPC_PORT": str(self.grpc_port),
            "HOST": "127.0.0.1",
            "ADMIN_API_KEY": ADMIN_KEY,
            "SPOOLED_ACTIVATION_INTERVAL_SECS": "0.2",
            "SPOOLED_LEASE_RECOVERY_INTERVAL_SECS": "0.3",
            "SPOOLED_STALE_WORKER_INTERVAL_SECS": "0.5",
            "SPOOLED_DB_POOL_SIZE": "10",
            "LOG_LEVEL": "warning",
        })
        env.update(self.env)
        return env

    def start(self, timeout: float = 120.0) -> ServerProcess:
        fd, log_name = tempfile.mkstemp(prefix="spooled-server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spooled_server.cli", "serve"],
                env=self.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()  # never leave a half-started server behind
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                r = httpx.get(self.base_url + "/health", timeout=2.0)
                if r.status_code == 200 and r.json().get("database"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Tenant:
    """An organization of its own: the test's isolated world."""

    server: ServerProcess
    org_id: str
    api_key: str
    slug: str

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(base_url=self.server.base_url, headers=headers, timeout=30.0, **kwargs)

    def async_client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.AsyncClient(base_url=self.server.base_url, headers=headers, timeout=30.0, **kwargs)


def create_tenant(server: ServerProcess, plan_tier: str | None = None) -> Tenant:
    slug = "t-" + uuid.uuid4().hex[:12]
    body: dict[str, Any] = {"name": f"Test {slug}", "slug": slug}
    if plan_tier is None:
        r = httpx.post(server.base_url + "/api/v1/organizations", json=body, timeout=30)
    else:
        body["plan_tier"] = plan_tier
        # A client address of its own per call: the admin routes' per-IP limit (60/min) has its own tests.
        ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
        r = httpx.post(server.base_url + "/api/v1/admin/organizations", json=body,
                       headers={"X-Admin-Key": ADMIN_KEY, "X-Real-IP": ip}, timeout=30)
    assert r.status_code == 201, r.text
    data = r.json()
    return Tenant(server, data["organization"]["id"], data["api_key"]["key"], slug)


@contextmanager
def running_server(database_url: str, **env: str) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, env=env).start()
    try:
        yield server
    finally:
        server.stop()
