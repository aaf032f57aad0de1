"""Helpers for the job-lifecycle tests: the worker protocol over real HTTP, and moving time in the DB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from spooled_server.core.auth import generate_api_key, hash_api_key

API = "/api/v1"


def new_queue(prefix: str = "q") -> str:
    """A queue name no other test uses (the server and its database are shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


def assert_error(r: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """The contract's error body: `{code, message, details}` with the expected status and code."""
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text}"
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert "details" in body, body
    if message is not None:
        assert body["message"] == message, body
    return body


def enqueue(c: httpx.Client, queue: str, payload: Any = None, **fields: Any) -> str:
    body = {"queue_name": queue, "payload": {"n": 1} if payload is None else payload, **fields}
    r = c.post(f"{API}/jobs", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["created"] is True
    return str(r.json()["id"])


async def aenqueue(c: httpx.AsyncClient, queue: str, payload: Any = None, **fields: Any) -> str:
    body = {"queue_name": queue, "payload": {"n": 1} if payload is None else payload, **fields}
    r = await c.post(f"{API}/jobs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def claim(
    c: httpx.Client, queue: str, worker: str = "w1", limit: int = 1, **fields: Any
) -> list[dict[str, Any]]:
    r = c.post(f"{API}/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": limit, **fields})
    assert r.status_code == 200, r.text
    jobs: list[dict[str, Any]] = r.json()["jobs"]
    return jobs


async def aclaim(
    c: httpx.AsyncClient, queue: str, worker: str = "w1", limit: int = 1, **fields: Any
) -> list[dict[str, Any]]:
    r = await c.post(
        f"{API}/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": limit, **fields}
    )
    assert r.status_code == 200, r.text
    jobs: list[dict[str, Any]] = r.json()["jobs"]
    return jobs


def claim_one(c: httpx.Client, queue: str, worker: str = "w1", **fields: Any) -> dict[str, Any]:
    jobs = claim(c, queue, worker, 1, **fields)
    assert len(jobs) == 1, jobs
    return jobs[0]


def complete(
    c: httpx.Client, job_id: str, worker: str, lease: str | None, result: Any = None
) -> httpx.Response:
    body: dict[str, Any] = {"worker_id": worker, "lease_id": lease}
    if result is not None:
        body["result"] = result
    return c.post(f"{API}/jobs/{job_id}/complete", json=body)


def fail(c: httpx.Client, job_id: str, worker: str, lease: str | None, error: str = "boom") -> httpx.Response:
    return c.post(f"{API}/jobs/{job_id}/fail", json={"worker_id": worker, "lease_id": lease, "error": error})


def heartbeat(c: httpx.Client, job_id: str, worker: str, lease: str | None, secs: int = 30) -> httpx.Response:
    return c.post(
        f"{API}/jobs/{job_id}/heartbeat",
        json={"worker_id": worker, "lease_id": lease, "lease_duration_secs": secs},
    )


def get_job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"{API}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def history(c: httpx.Client, job_id: str, **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"{API}/jobs/{job_id}/history", params=params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


# --- the database as the schema owner -------------------------------------------------------------------


async def expire_lease(owner_db: asyncpg.Connection, job_id: str) -> None:
    """Move the lease into the past, as if the worker had gone silent."""
    status = await owner_db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second'"
        " WHERE id = $1 AND status = 'processing'",
        uuid.UUID(job_id),
    )
    assert status == "UPDATE 1", status


async def make_due(owner_db: asyncpg.Connection, job_id: str) -> None:
    """End a retry delay (or a schedule) now."""
    await owner_db.execute(
        "UPDATE jobs SET scheduled_at = now() - interval '1 millisecond' WHERE id = $1", uuid.UUID(job_id)
    )


async def db_status(owner_db: asyncpg.Connection, job_id: str) -> str:
    return str(await owner_db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id)))


async def scoped_key(owner_db: asyncpg.Connection, org_id: str, queues: list[str]) -> str:
    """A second API key of the organization, limited to `queues` (inserted the way the server stores keys)."""
    key = generate_api_key("test")
    await owner_db.execute(
        "INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.uuid4(),
        uuid.UUID(org_id),
        "scoped",
        hash_api_key(key),
        key[:12],
        queues,
    )
    return key


def now_utc() -> datetime:
    return datetime.now(UTC)
