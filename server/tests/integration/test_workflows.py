"""Workflows over real HTTP against a real server and Postgres (rest.md §12, semantics.md §9)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from ..conftest import async_wait_until, wait_until
from ..support import ServerProcess, Tenant, create_tenant

CASCADE_ERROR = "Parent job failed or was deadlettered"


def job(key: str, queue: str = "wf", depends_on: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "queue_name": queue,
        "payload": {"step": key},
        "depends_on": depends_on or [],
        **extra,
    }


def create(c: httpx.Client, jobs: list[dict[str, Any]], name: str = "flow", **extra: Any) -> dict[str, Any]:
    r = c.post("/api/v1/workflows", json={"name": name, "jobs": jobs, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    body["ids"] = {j["key"]: j["job_id"] for j in body["job_ids"]}
    return body  # type: ignore[no-any-return]


def claim(c: httpx.Client, queue: str = "wf", worker: str = "w1", limit: int = 10) -> list[dict[str, Any]]:
    r = c.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": limit})
    assert r.status_code == 200, r.text
    return r.json()["jobs"]  # type: ignore[no-any-return]


def complete(c: httpx.Client, claimed: dict[str, Any], worker: str = "w1", result: Any = None) -> None:
    r = c.post(
        f"/api/v1/jobs/{claimed['id']}/complete",
        json={"worker_id": worker, "lease_id": claimed["lease_id"], "result": result},
    )
    assert r.status_code == 200, r.text


def fail(c: httpx.Client, claimed: dict[str, Any], worker: str = "w1", error: str = "boom") -> dict[str, Any]:
    r = c.post(
        f"/api/v1/jobs/{claimed['id']}/fail",
        json={"worker_id": worker, "lease_id": claimed["lease_id"], "error": error},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def status_by_key(c: httpx.Client, workflow_id: str) -> dict[str, str]:
    r = c.get(f"/api/v1/workflows/{workflow_id}/jobs/status")
    assert r.status_code == 200, r.text
    return {j["key"]: j["status"] for j in r.json()}


def workflow(c: httpx.Client, workflow_id: str) -> dict[str, Any]:
    r = c.get(f"/api/v1/workflows/{workflow_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def limited_tenant(
    server: ServerProcess, owner_db: asyncpg.Connection, tier: str, custom: str | None = None
) -> Tenant:
    t = create_tenant(server)
    await owner_db.execute(
        "UPDATE organizations SET plan_tier = $2, custom_limits = $3::jsonb WHERE id = $1",
        uuid.UUID(t.org_id),
        tier,
        custom,
    )
    return t


DIAMOND = [job("a"), job("b", depends_on=["a"]), job("c", depends_on=["a"]), job("d", depends_on=["b", "c"])]


# --- the diamond -----------------------------------------------------------------------------------------


def test_diamond_runs_in_order_with_parallel_branches(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, DIAMOND, name="diamond (v1)", description="A then B,C then D", metadata={"run": 1})
        assert wf["status"] == "pending" and [j["key"] for j in wf["job_ids"]] == ["a", "b", "c", "d"]
        wid, ids = wf["workflow_id"], wf["ids"]
        assert workflow(c, wid)["status"] == "pending"

        first = claim(c)
        assert [j["id"] for j in first] == [ids["a"]]  # only the root is claimable
        assert workflow(c, wid)["status"] == "running"
        complete(c, first[0], result={"a": "done"})

        # B and C are released the moment A completes and run in parallel on two workers.
        b_or_c = claim(c, worker="w1", limit=1) + claim(c, worker="w2", limit=1)
        assert {j["id"] for j in b_or_c} == {ids["b"], ids["c"]}
        assert status_by_key(c, wid) == {
            "a": "completed",
            "b": "processing",
            "c": "processing",
            "d": "pending",
        }
        assert claim(c, worker="w3") == []  # D waits for both

        complete(c, b_or_c[0], worker="w1")
        assert claim(c, worker="w3") == []  # still one branch to go
        complete(c, b_or_c[1], worker="w2")
        last = claim(c, worker="w3")  # no sweep wait: released in the completing transaction
        assert [j["id"] for j in last] == [ids["d"]]
        progress = workflow(c, wid)["progress"]
        assert progress == {"total": 4, "completed": 3, "failed": 0, "pending": 0, "processing": 1}
        complete(c, last[0], worker="w3")

        detail = workflow(c, wid)
        assert detail["status"] == "completed" and detail["completed_at"] is not None
        assert detail["started_at"] is not None and detail["name"] == "diamond (v1)"
        assert detail["metadata"] == {"run": 1} and detail["organization_id"] == tenant.org_id
        assert [j["key"] for j in detail["jobs"]] == ["a", "b", "c", "d"]
        a = detail["jobs"][0]
        assert a["queue"] == "wf" and a["job_type"] == "job" and a["backoff_type"] == "exponential"
        assert a["timeout_ms"] == 300_000 and a["attempt"] == 0 and a["error"] is None
        assert a["result"] == {"a": "done"} and a["workflow_id"] == wid and a["failed_at"] is None
        edges = {
            (e["parent_job_id"], e["child_job_id"], e["dependency_type"]) for e in detail["dependencies"]
        }
        assert edges == {
            (ids["a"], ids["b"], "all"),
            (ids["a"], ids["c"], "all"),
            (ids["b"], ids["d"], "all"),
            (ids["c"], ids["d"], "all"),
        }

        listed = c.get("/api/v1/workflows").json()
        summary = next(w for w in listed if w["id"] == wid)
        assert summary["total_jobs"] == 4 and summary["completed_jobs"] == 4 and summary["failed_jobs"] == 0
        assert summary["progress_percent"] == 100 and summary["status"] == "completed"
        assert summary["description"] == "A then B,C then D"

        jobs = c.get(f"/api/v1/workflows/{wid}/jobs").json()
        assert [j["key"] for j in jobs] == ["a", "b", "c", "d"]
        assert jobs[3]["depends_on"] == ["b", "c"] and jobs[3]["dependency_mode"] == "all"
        assert all(j["dependencies_met"] is True and j["status"] == "completed" for j in jobs)
        one = c.get(f"/api/v1/workflows/{wid}/jobs/{ids['b']}").json()
        assert one["key"] == "b" and one["depends_on"] == ["a"] and one["workflow_id"] == wid
        assert c.get(f"/api/v1/jobs/{ids['d']}").json()["workflow_id"] == wid


async def test_parallel_parents_completing_at_once_release_the_child(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    """B and C complete at the same moment: neither completing statement sees the other's change (both take
    their snapshot before either commits), yet D is released without waiting for the sweep."""
    async with tenant.async_client() as c:
        r = await c.post("/api/v1/workflows", json={"name": "race", "jobs": DIAMOND})
        ids = {j["key"]: j["job_id"] for j in r.json()["job_ids"]}
        claim_body = {"queue_name": "wf", "worker_id": "w", "limit": 2}
        a = (await c.post("/api/v1/jobs/claim", json=claim_body)).json()["jobs"][0]
        await c.post(f"/api/v1/jobs/{a['id']}/complete", json={"worker_id": "w", "lease_id": a["lease_id"]})
        bc = (await c.post("/api/v1/jobs/claim", json=claim_body)).json()["jobs"]
        assert {j["id"] for j in bc} == {ids["b"], ids["c"]}
        # Hold B's and C's rows so both completions start, take their snapshots, and wait on the row locks.
        tx = owner_db.transaction()
        await tx.start()
        try:
            await owner_db.execute(
                "SELECT 1 FROM jobs WHERE id = ANY($1::uuid[]) FOR UPDATE", [uuid.UUID(j["id"]) for j in bc]
            )
            completions = [
                asyncio.ensure_future(
                    c.post(
                        f"/api/v1/jobs/{j['id']}/complete", json={"worker_id": "w", "lease_id": j["lease_id"]}
                    )
                )
                for j in bc
            ]

            async def both_waiting() -> bool:
                # Inside a transaction the activity view is a snapshot taken once: drop it before each look.
                await owner_db.execute("SELECT pg_stat_clear_snapshot()")
                waiting = await owner_db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%complete_job%'"
                )
                return bool(waiting >= 2)

            await async_wait_until(both_waiting, timeout=15)
        finally:
            await tx.commit()
        for done in await asyncio.gather(*completions):
            assert done.status_code == 200, done.text
        d = (await c.post("/api/v1/jobs/claim", json=claim_body)).json()["jobs"]
        assert [j["id"] for j in d] == [ids["d"]]


def test_any_mode_releases_on_first_parent(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a"), job("b"), job("c", depends_on=["a", "b"], dependency_mode="any")])
        ids = wf["ids"]
        roots = claim(c)
        assert {j["id"] for j in roots} == {ids["a"], ids["b"]}
        complete(c, next(j for j in roots if j["id"] == ids["a"]))
        assert [j["id"] for j in claim(c, worker="w2")] == [ids["c"]]


# --- failure cascade and retry ---------------------------------------------------------------------------


def test_failure_cascades_transitively(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(
            c,
            [
                job("a", max_retries=0),
                job("b", depends_on=["a"]),
                job("c", depends_on=["b"]),
                job("r"),
                job("x", depends_on=["a", "r"], dependency_mode="any"),
                job("y", depends_on=["c", "r"]),
            ],
        )
        wid, ids = wf["workflow_id"], wf["ids"]
        roots = {j["id"]: j for j in claim(c)}
        assert set(roots) == {ids["a"], ids["r"]}
        outcome = fail(c, roots[ids["a"]])
        assert outcome["will_retry"] is False
        # Everything downstream of A that can no longer run is cancelled at once, all levels.
        statuses = status_by_key(c, wid)
        assert statuses == {
            "a": "deadletter",
            "b": "cancelled",
            "c": "cancelled",
            "r": "processing",
            "x": "pending",
            "y": "cancelled",
        }
        for key in ("b", "c", "y"):
            j = c.get(f"/api/v1/jobs/{ids[key]}").json()
            assert j["last_error"] == CASCADE_ERROR and j["completed_at"] is not None
        history = c.get(f"/api/v1/jobs/{ids['c']}/history").json()
        assert history[-1]["event_type"] == "cancelled"
        assert workflow(c, wid)["status"] == "running"
        # X (mode any) still has R: it runs once R completes.
        complete(c, roots[ids["r"]])
        x = claim(c, worker="w2")
        assert [j["id"] for j in x] == [ids["x"]]
        complete(c, x[0], worker="w2")
        detail = c.get("/api/v1/workflows", params={"status": "failed"}).json()
        summary = next(w for w in detail if w["id"] == wid)
        assert summary["failed_jobs"] == 1 and summary["completed_jobs"] == 2 and summary["completed_at"]
        failed_job = next(j for j in workflow(c, wid)["jobs"] if j["key"] == "a")
        assert failed_job["error"] == {"error_type": "JobError", "message": "boom", "stack": None}


def test_a_retrying_parent_does_not_cascade(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a", max_retries=2), job("b", depends_on=["a"])])
        a = claim(c)[0]
        assert fail(c, a)["will_retry"] is True
        assert status_by_key(c, wf["workflow_id"]) == {"a": "pending", "b": "pending"}


def test_cancelled_parent_cascades(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a"), job("b", depends_on=["a"]), job("c", depends_on=["b"])])
        assert c.delete(f"/api/v1/jobs/{wf['ids']['a']}").status_code == 204
        assert status_by_key(c, wf["workflow_id"]) == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
        assert workflow(c, wf["workflow_id"])["status"] == "completed"  # nothing ran, nothing failed


def test_workflow_retry_end_to_end(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a", max_retries=0), job("b", depends_on=["a"]), job("c", depends_on=["b"])])
        wid, ids = wf["workflow_id"], wf["ids"]
        r = c.post(f"/api/v1/workflows/{wid}/retry")
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"  # only from failed
        fail(c, claim(c)[0])
        assert workflow(c, wid)["status"] == "failed"
        r = c.post(f"/api/v1/workflows/{wid}/retry")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "running" and body["failed_jobs"] == 0 and body["completed_at"] is None
        jobs = {j["key"]: j for j in c.get(f"/api/v1/workflows/{wid}/jobs").json()}
        assert all(
            j["status"] == "pending"
            and j["retry_count"] == 0
            and j["last_error"] is None
            and j["started_at"] is None
            and j["completed_at"] is None
            for j in jobs.values()
        )
        assert [jobs[k]["dependencies_met"] for k in "abc"] == [True, False, False]
        for key in "abc":
            claimed = claim(c)
            assert [j["id"] for j in claimed] == [ids[key]]
            complete(c, claimed[0])
        final = workflow(c, wid)
        assert final["status"] == "completed" and final["progress"]["completed"] == 3
        # The dead-letter audit row went away with the retry.
        assert ids["a"] not in {j["id"] for j in c.get("/api/v1/jobs/dlq").json()}


def test_cancel_workflow(tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a"), job("b"), job("c", depends_on=["a", "b"])])
        wid, ids = wf["workflow_id"], wf["ids"]
        running = claim(c, limit=1)
        r = c.post(f"/api/v1/workflows/{wid}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        statuses = status_by_key(c, wid)
        processing_key = next(k for k, v in ids.items() if v == running[0]["id"])
        assert statuses[processing_key] == "processing"  # runs to the end
        assert [s for k, s in statuses.items() if k != processing_key] == ["cancelled", "cancelled"]
        assert claim(c) == []
        complete(c, running[0])
        final = workflow(c, wid)
        assert final["status"] == "cancelled" and final["progress"]["completed"] == 1
        assert c.post(f"/api/v1/workflows/{wid}/retry").status_code == 400
        assert c.post(f"/api/v1/workflows/{wid}/cancel").json()["status"] == "cancelled"  # idempotent


async def test_sweep_cascades_a_lease_expiry_dead_letter(
    tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    """A dead-letter from the lease-recovery loop is not followed by a hook: the 10 s sweep cascades it."""
    with tenant.client() as c:
        wf = create(c, [job("a", max_retries=0), job("b", depends_on=["a"])])
        wid = wf["workflow_id"]
        claim(c)
        await owner_db.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(wf["ids"]["a"]),
        )

        async def cascaded() -> bool:
            return status_by_key(c, wid) == {"a": "deadletter", "b": "cancelled"}

        await async_wait_until(cascaded, timeout=25, interval=0.5)
        wait_until(lambda: workflow(c, wid)["status"] == "failed", timeout=15, interval=0.5)


# --- validation, scope and quotas ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "field", "fragment"),
    [
        ([job("a"), job("a")], "jobs[1].key", "duplicate"),
        ([job("a", depends_on=["zzz"])], "jobs[0].depends_on", "unknown job key 'zzz'"),
        ([job("a", depends_on=["b"]), job("b", depends_on=["a"])], "jobs", "cycle"),
        ([job("a", depends_on=["a"])], "jobs[0].depends_on", "itself"),
        ([job("a b")], "jobs[0].key", ""),
        ([job("a", dependency_mode="some")], "jobs[0].dependency_mode", ""),
        ([job("a", queue="-bad")], "jobs[0].queue_name", ""),
        ([job("a", priority=500)], "jobs[0].priority", ""),
        ([job("a", depends_on=["b", "b"]), job("b")], "jobs[0].depends_on", ""),
        ([job(f"k{i}") for i in range(101)], "jobs", ""),
        ([], "jobs", ""),
    ],
)
def test_create_rejects_bad_graphs(
    tenant: Tenant, jobs: list[dict[str, Any]], field: str, fragment: str
) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/workflows", json={"name": "bad", "jobs": jobs})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["code"] == "VALIDATION_ERROR" and body["message"].startswith(f"{field}: ")
        assert fragment in body["message"]
        assert c.get("/api/v1/workflows").json() == []
        assert c.get("/api/v1/jobs/stats").json()["total"] == 0  # nothing was created


def test_create_rejects_bad_names_and_shapes(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/workflows", json={"name": "semi;colon", "jobs": [job("a")]})
        assert r.status_code == 400 and r.json()["message"].startswith("name: ")
        r = c.post("/api/v1/workflows", json={"name": "x"})
        assert r.status_code == 422
        r = c.post("/api/v1/workflows", json={"name": "x", "jobs": [{"key": "a", "queue_name": "q"}]})
        assert r.status_code == 422  # payload is required
        big = [job(f"k{i}", depends_on=[f"k{i - 1}"] if i else []) for i in range(100)]
        assert c.post("/api/v1/workflows", json={"name": "chain", "jobs": big}).status_code == 200


def test_reads_are_confined_to_the_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    with tenant.client() as c:
        wf = create(c, [job("a")])
        wid = wf["workflow_id"]
        assert c.get(f"/api/v1/workflows/{wid}/jobs/{uuid.uuid4()}").status_code == 404
        assert c.get("/api/v1/workflows/nope").status_code == 404
    with other_tenant.client() as o:
        for path in (
            f"/api/v1/workflows/{wid}",
            f"/api/v1/workflows/{wid}/jobs",
            f"/api/v1/workflows/{wid}/jobs/status",
            f"/api/v1/workflows/{wid}/jobs/{wf['ids']['a']}",
        ):
            r = o.get(path)
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", path
        assert o.post(f"/api/v1/workflows/{wid}/cancel").status_code == 404
        assert o.get("/api/v1/workflows").json() == []


async def test_free_plan_has_no_workflows(server: ServerProcess, owner_db: asyncpg.Connection) -> None:
    t = await limited_tenant(server, owner_db, "free")
    with t.client() as c:
        r = c.post("/api/v1/workflows", json={"name": "x", "jobs": [job("a")]})
        assert r.status_code == 403, r.text
        body = r.json()
        assert body["code"] == "FEATURE_DISABLED"
        assert body["feature"] == "workflows" and body["plan"] == "free" and body["upgrade_to"] == "starter"


async def test_workflow_and_daily_quotas(server: ServerProcess, owner_db: asyncpg.Connection) -> None:
    t = await limited_tenant(server, owner_db, "starter", '{"max_workflows": 2, "max_jobs_per_day": 5}')
    with t.client() as c:
        first = create(c, [job("a"), job("b")])
        r = c.post("/api/v1/workflows", json={"name": "big", "jobs": [job(f"k{i}") for i in range(4)]})
        assert r.status_code == 429 and r.json()["resource"] == "jobs_per_day"  # 2 + 4 > 5, nothing charged
        create(c, [job("x"), job("y"), job("z")])  # exactly fills the day
        r = c.post("/api/v1/workflows", json={"name": "third", "jobs": [job("a")]})
        assert r.status_code == 429 and r.json()["resource"] == "workflows" and r.json()["limit"] == 2
        # A finished workflow no longer counts.
        c.post(f"/api/v1/workflows/{first['workflow_id']}/cancel")
        r = c.post("/api/v1/workflows", json={"name": "third", "jobs": [job("a")]})
        assert r.status_code == 429 and r.json()["resource"] == "jobs_per_day"
        assert c.get("/api/v1/jobs/stats").json()["total"] == 5
