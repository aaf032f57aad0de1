"""Job dependencies over real HTTP (rest.md §7, semantics.md §9): gating, release, aliases, cycles, errors."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg
import httpx

from ..support import Tenant

DEP_FIELDS = {"job_id", "queue_name", "status", "completed"}


async def scoped_key(owner_db: asyncpg.Connection, tenant: Tenant, queues: list[str]) -> str:
    key = "sp_test_" + secrets.token_urlsafe(32)
    await owner_db.execute(
        "INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues)"
        " VALUES ($1, $2, 'scoped', $3, $4, $5)",
        uuid.uuid4(),
        uuid.UUID(tenant.org_id),
        hashlib.sha256(key.encode()).hexdigest(),
        key[:12],
        queues,
    )
    return key


async def enqueue(c: httpx.AsyncClient, queue: str, **extra: object) -> str:
    r = await c.post("/api/v1/jobs", json={"queue_name": queue, "payload": {}} | extra)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def claim_ids(c: httpx.AsyncClient, queue: str, worker: str = "w") -> dict[str, str]:
    r = await c.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": worker, "limit": 10})
    assert r.status_code == 200, r.text
    return {j["id"]: j["lease_id"] for j in r.json()["jobs"]}


async def run(c: httpx.AsyncClient, queue: str, job_id: str, *, fail: bool = False) -> None:
    """Claim `job_id` (and only it) from `queue` and complete or fail it."""
    leases = await claim_ids(c, queue, "runner")
    assert list(leases) == [job_id], leases
    if fail:
        r = await c.post(
            f"/api/v1/jobs/{job_id}/fail",
            json={"worker_id": "runner", "lease_id": leases[job_id], "error": "x"},
        )
    else:
        r = await c.post(
            f"/api/v1/jobs/{job_id}/complete", json={"worker_id": "runner", "lease_id": leases[job_id]}
        )
    assert r.status_code == 200, r.text


async def add(c: httpx.AsyncClient, job_id: str, body: dict) -> httpx.Response:
    return await c.post(f"/api/v1/jobs/{job_id}/dependencies", json=body)


async def test_dependent_waits_for_its_parent(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        parent = await enqueue(c, "parents")
        child = await enqueue(c, "children")
        r = await add(c, child, {"depends_on": [parent]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {
            "job_id",
            "success",
            "dependencies_added",
            "added_count",
            "added",
            "dependencies_met",
            "dependencies",
        }
        assert (
            body["job_id"],
            body["success"],
            body["dependencies_added"],
            body["added_count"],
            body["added"],
            body["dependencies_met"],
        ) == (child, True, 1, 1, 1, False)
        assert body["dependencies"] == [
            {"job_id": parent, "queue_name": "parents", "status": "pending", "completed": False}
        ]
        assert await claim_ids(c, "children") == {}
        r = await c.get(f"/api/v1/jobs/{child}/dependencies")
        assert r.status_code == 200, r.text
        view = r.json()
        assert set(view) == {
            "job_id",
            "status",
            "dependency_mode",
            "dependencies_met",
            "job",
            "dependencies",
            "dependents",
        }
        assert (view["job_id"], view["status"], view["dependency_mode"], view["dependencies_met"]) == (
            child,
            "pending",
            "all",
            False,
        )
        assert view["job"]["id"] == child and view["job"]["dependencies_met"] is False
        assert [d["job_id"] for d in view["dependencies"]] == [parent]
        assert set(view["dependencies"][0]) == DEP_FIELDS
        assert view["dependents"] == []
        parent_view = (await c.get(f"/api/v1/jobs/{parent}/dependencies")).json()
        assert parent_view["dependencies_met"] is True
        assert parent_view["dependents"] == [
            {"job_id": child, "queue_name": "children", "status": "pending", "completed": False}
        ]

        await run(c, "parents", parent)
        assert list(await claim_ids(c, "children")) == [child]
        view = (await c.get(f"/api/v1/jobs/{child}/dependencies")).json()
        assert view["dependencies"][0]["completed"] is True and view["dependencies_met"] is True


async def test_mode_all_needs_every_dependency(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        p1 = await enqueue(c, "p1")
        p2 = await enqueue(c, "p2")
        child = await enqueue(c, "kids")
        r = await add(c, child, {"dependency_job_ids": [p1, p2], "dependency_mode": "all"})
        assert r.json()["dependencies_added"] == 2
        await run(c, "p1", p1)
        assert await claim_ids(c, "kids") == {}
        await run(c, "p2", p2)
        assert list(await claim_ids(c, "kids")) == [child]


async def test_mode_any_with_alias_keys(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        p1 = await enqueue(c, "a1")
        p2 = await enqueue(c, "a2")
        child = await enqueue(c, "anykid")
        r = await add(c, child, {"depends_on_job_ids": [p1, p2], "dependency_type": "any"})
        assert r.status_code == 200, r.text
        assert r.json()["dependencies_met"] is False
        assert (await c.get(f"/api/v1/jobs/{child}/dependencies")).json()["dependency_mode"] == "any"
        assert await claim_ids(c, "anykid") == {}
        await run(c, "a2", p2)
        assert list(await claim_ids(c, "anykid")) == [child]


async def test_already_completed_dependencies_are_met_at_once(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        parent = await enqueue(c, "done-parent")
        await run(c, "done-parent", parent)
        child = await enqueue(c, "free-kid")
        r = await add(c, child, {"depends_on": [parent, parent]})
        assert (r.json()["dependencies_added"], r.json()["dependencies_met"]) == (1, True)
        assert r.json()["dependencies"][0]["completed"] is True
        assert list(await claim_ids(c, "free-kid")) == [child]


async def test_self_edges_duplicates_and_cycles_are_skipped(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        a = await enqueue(c, "cyc")
        b = await enqueue(c, "cyc")
        d = await enqueue(c, "cyc")
        # a waits for b, b waits for d.
        assert (await add(c, a, {"depends_on": [b]})).json()["dependencies_added"] == 1
        assert (await add(c, b, {"depends_on": [d]})).json()["dependencies_added"] == 1
        # Self edge: skipped.
        r = await add(c, a, {"depends_on": [a]})
        assert r.status_code == 200 and r.json()["dependencies_added"] == 0
        # Direct cycle (b → a) and transitive cycle (d → a, since a → b → d): skipped.
        assert (await add(c, b, {"depends_on": [a]})).json()["dependencies_added"] == 0
        r = await add(c, d, {"depends_on": [a, b]})
        assert r.json()["dependencies_added"] == 0
        assert r.json()["dependencies"] == [] and r.json()["dependencies_met"] is True
        # An existing edge is not added twice.
        assert (await add(c, a, {"depends_on": [b]})).json()["dependencies_added"] == 0
        view = (await c.get(f"/api/v1/jobs/{a}/dependencies")).json()
        assert [x["job_id"] for x in view["dependencies"]] == [b]
        # The chain still releases in order: d, then b, then a.
        assert list(await claim_ids(c, "cyc")) == [d]


async def test_errors(tenant: Tenant, other_tenant: Tenant) -> None:
    async with tenant.async_client() as c, other_tenant.async_client() as other:
        parent = await enqueue(c, "e")
        child = await enqueue(c, "e2")
        foreign = await enqueue(other, "e")
        cases: list[tuple[str, dict, int, str]] = [
            (child, {"depends_on": [str(uuid.uuid4())]}, 404, "NOT_FOUND"),
            (child, {"depends_on": [foreign]}, 404, "NOT_FOUND"),
            (child, {"depends_on": ["not-a-uuid"]}, 404, "NOT_FOUND"),
            (str(uuid.uuid4()), {"depends_on": [parent]}, 404, "NOT_FOUND"),
            (child, {"depends_on": []}, 400, "VALIDATION_ERROR"),
            (child, {"depends_on": [str(uuid.uuid4()) for _ in range(101)]}, 400, "VALIDATION_ERROR"),
            (child, {"depends_on": [parent], "dependency_mode": "some"}, 400, "VALIDATION_ERROR"),
            (child, {"dependency_mode": "all"}, 422, "VALIDATION_ERROR"),
            (child, {"depends_on": "abc"}, 422, "VALIDATION_ERROR"),
        ]
        for target, body, status, code in cases:
            r = await add(c, target, body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["code"] == code
        assert (
            await c.post("/api/v1/jobs/nope/dependencies", json={"depends_on": [parent]})
        ).status_code == 404
        assert (await c.get("/api/v1/jobs/nope/dependencies")).status_code == 404
        assert (await c.get(f"/api/v1/jobs/{uuid.uuid4()}/dependencies")).status_code == 404
        assert (await other.get(f"/api/v1/jobs/{child}/dependencies")).status_code == 404
        # Nothing above added an edge.
        assert (await c.get(f"/api/v1/jobs/{child}/dependencies")).json()["dependencies"] == []
        # The target must be pending or scheduled.
        await run(c, "e", parent)
        r = await add(c, parent, {"depends_on": [child]})
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "CONFLICT"


async def test_scheduled_target_is_accepted(tenant: Tenant) -> None:
    async with tenant.async_client() as c:
        parent = await enqueue(c, "rp")
        later = await enqueue(c, "rk", scheduled_at="2099-01-01T00:00:00Z")
        r = await add(c, later, {"depends_on": [parent]})
        assert r.status_code == 200 and r.json()["dependencies_met"] is False
        assert (await c.get(f"/api/v1/jobs/{later}")).json()["status"] == "scheduled"


async def test_scoped_key(tenant: Tenant, owner_db: asyncpg.Connection) -> None:
    key = await scoped_key(owner_db, tenant, ["visible"])
    async with tenant.async_client() as c, tenant.async_client(key) as scoped:
        hidden = await enqueue(c, "hidden")
        seen = await enqueue(c, "visible")
        seen2 = await enqueue(c, "visible")
        assert (await add(scoped, seen, {"depends_on": [hidden]})).status_code == 404
        assert (await add(scoped, hidden, {"depends_on": [seen]})).status_code == 404
        assert (await scoped.get(f"/api/v1/jobs/{hidden}/dependencies")).status_code == 404
        # An edge to a hidden job made by an unrestricted key is left out of a scoped view.
        assert (await add(c, seen, {"depends_on": [hidden, seen2]})).json()["dependencies_added"] == 2
        view = (await scoped.get(f"/api/v1/jobs/{seen}/dependencies")).json()
        assert [d["job_id"] for d in view["dependencies"]] == [seen2]
