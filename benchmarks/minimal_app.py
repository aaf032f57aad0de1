"""The smallest useful Litestar app: the HTTP baseline that Spooled's REST enqueue is compared to.

``POST /jobs`` does one INSERT through an asyncpg pool and answers 201 ``{"id": ...}``;
``GET /health`` touches no database. Serve it with granian::

    BENCH_DATABASE_URL=postgresql://... granian --interface asgi --workers 1 benchmarks.minimal_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, get, post
from litestar.datastructures import State

from benchmarks.pg import connect_kwargs
from benchmarks.schema import INSERT_ONE

POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "16"))


class EnqueueBody(msgspec.Struct):
    queue_name: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: int = 0


class Created(msgspec.Struct):
    id: str


class Health(msgspec.Struct):
    status: str


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: the handlers leave no session state, so skip asyncpg's reset query.

    asyncpg's default release sends ``RESET ALL; UNLISTEN *; ...``: one more round trip per request.
    """


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    dsn = os.environ["BENCH_DATABASE_URL"]
    pool = await asyncpg.create_pool(
        **connect_kwargs(dsn), min_size=POOL_SIZE, max_size=POOL_SIZE, reset=keep_session
    )
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


@post("/jobs")  # Litestar answers POST with 201 by default
async def create_job(data: EnqueueBody, state: State) -> Created:
    pool: asyncpg.Pool = state.pool
    payload = msgspec.json.encode(data.payload).decode()
    job_id = await pool.fetchval(INSERT_ONE, data.queue_name, payload, data.priority)
    return Created(id=str(job_id))


@get("/health")
async def health() -> Health:
    return Health(status="ok")


app = Litestar(route_handlers=[create_job, health], lifespan=[lifespan], openapi_config=None)
