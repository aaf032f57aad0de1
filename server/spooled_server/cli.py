"""`spooled-server serve | migrate | create-org | create-key`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .config import ConfigError, Settings
from .db.database import Database, connect_owner
from .db.embedded import EmbeddedPostgres
from .db.migrate import migrate

ADMIN_KEY_FILE = "admin-api-key"


def _apply_overrides(args: argparse.Namespace) -> None:
    """CLI flags become environment variables, so every server process (granian workers) sees them."""
    mapping = {"data_dir": "SPOOLED_DATA_DIR", "port": "PORT", "grpc_port": "GRPC_PORT", "host": "HOST",
               "workers": "SPOOLED_WORKERS"}
    for attr, env in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            os.environ[env] = str(value)


def _ensure_database() -> tuple[Settings, EmbeddedPostgres | None]:
    """Use DATABASE_URL, or start the embedded PostgreSQL in the data directory."""
    settings = Settings.from_env()
    if settings.database_url:
        return settings, None
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    os.environ.setdefault("SPOOLED_ENV", "development")
    os.environ["DATABASE_URL"] = url
    return Settings.from_env(), embedded


async def _migrate_and_bootstrap(settings: Settings) -> str | None:
    """Apply migrations; on the very first start create the default organization. Returns its new key."""
    from .core.orgs import create_organization

    assert settings.database_url
    owner = await connect_owner(settings.database_url)
    try:
        applied = await migrate(owner)
        for name in applied:
            print(f"  applied migration {name}")
        has_org = await owner.fetchval("SELECT EXISTS (SELECT 1 FROM organizations)")
    finally:
        await owner.close()
    if has_org:
        return None
    db = Database(settings.database_url, pool_size=1, maintenance_pool_size=1)
    try:
        _, key = await create_organization(
            db, name="Default Organization", slug="default", billing_email=None,
            plan_tier=settings.default_plan, key_kind=settings.key_kind,
        )
    finally:
        await db.dispose()
    return key.key


def _write_key_file(data_dir: Path, key: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    _apply_overrides(args)
    settings, embedded = _ensure_database()
    new_key = asyncio.run(_migrate_and_bootstrap(settings))
    base = f"http://localhost:{settings.port}"
    print("Spooled is starting")
    print(f"  environment: {settings.environment}")
    print("  database:    "
          f"{'embedded PostgreSQL in ' + str(settings.data_dir) if embedded else 'DATABASE_URL'}")
    if new_key:
        path = _write_key_file(settings.data_dir, new_key)
        print("  Created the default organization. Its admin API key (shown once, also saved to "
              f"{path} with mode 0600):")
        print(f"    {new_key}")
    elif embedded:
        print(f"  admin API key: see {settings.data_dir / ADMIN_KEY_FILE}")
    print(f"  REST API:    {base}/api/v1")
    print(f"  API docs:    {base}/docs")
    print(f"  dashboard:   {base}/dashboard")
    if settings.grpc_enabled:
        print(f"  gRPC:        localhost:{settings.grpc_port}")
    sys.stdout.flush()

    from granian.constants import Interfaces
    from granian.server import Server

    from .logging import granian_log_config

    server = Server(
        "spooled_server.app:create_asgi",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=max(1, settings.workers),
        factory=True,
        log_access=False,
        log_dictconfig=granian_log_config(),
    )
    try:
        server.serve()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _apply_overrides(args)
    settings, embedded = _ensure_database()

    async def run() -> list[str]:
        assert settings.database_url
        conn = await connect_owner(settings.database_url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_create_org(args: argparse.Namespace) -> int:
    from .core.orgs import create_organization

    _apply_overrides(args)
    settings, embedded = _ensure_database()

    async def run() -> tuple[str, str]:
        assert settings.database_url
        conn = await connect_owner(settings.database_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        db = Database(settings.database_url, pool_size=1, maintenance_pool_size=1)
        try:
            org, key = await create_organization(
                db, name=args.name, slug=args.slug, billing_email=args.billing_email,
                plan_tier=args.plan or settings.default_plan, key_kind=settings.key_kind,
            )
        finally:
            await db.dispose()
        return str(org["id"]), key.key

    try:
        org_id, key = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"organization: {org_id}\napi key:      {key}")
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    from .core.orgs import insert_api_key

    _apply_overrides(args)
    settings, embedded = _ensure_database()

    async def run() -> str:
        assert settings.database_url
        db = Database(settings.database_url, pool_size=1, maintenance_pool_size=1)
        try:
            async with db.maintenance() as conn:
                org = await conn.fetchval(
                    "SELECT id FROM organizations WHERE slug = $1 OR id::text = $1", args.org
                )
                if org is None:
                    raise SystemExit(f"no organization {args.org!r}")
                queues = [q for q in (args.queues or "").split(",") if q] or ["*"]
                key = await insert_api_key(conn, org, args.name, queues, settings.key_kind)
        finally:
            await db.dispose()
        return key.key

    try:
        key = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spooled-server", description="Spooled job queue server")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="where the embedded PostgreSQL keeps its data (SPOOLED_DATA_DIR)")

    serve = sub.add_parser("serve", help="start the REST and gRPC servers and the background loops")
    common(serve)
    serve.add_argument("--host", help="REST bind address (HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="REST port (PORT, default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (GRPC_PORT, default 50051)")
    serve.add_argument("--workers", type=int, help="server processes (SPOOLED_WORKERS, default 1)")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    common(mig)
    mig.set_defaults(func=cmd_migrate)

    org = sub.add_parser("create-org", help="create an organization and print its admin API key")
    common(org)
    org.add_argument("--name", required=True)
    org.add_argument("--slug", required=True)
    org.add_argument("--billing-email")
    org.add_argument("--plan", choices=["free", "starter", "pro", "enterprise", "unlimited"])
    org.set_defaults(func=cmd_create_org)

    key = sub.add_parser("create-key", help="create an API key for an organization (slug or id)")
    common(key)
    key.add_argument("--org", required=True)
    key.add_argument("--name", default="CLI key")
    key.add_argument("--queues", help="comma-separated queue scope (default: all queues)")
    key.set_defaults(func=cmd_create_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
