"""A hypothesis state machine drives the job lifecycle through the real REST API and checks every answer
(status codes, error codes, statuses, retry counts, claim order) against a model of semantics.md §1 to §5."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from spooled_server.db.database import asyncpg_dsn

from ..support import Tenant, TestDatabase
from .jobs_support import API, new_queue

TERMINAL = ("completed", "deadletter", "cancelled")


@dataclass
class ModelJob:
    id: str
    seq: int
    priority: int
    max_retries: int
    status: str = "pending"
    retry_count: int = 0
    delayed: bool = False  # pending but waiting for a retry backoff
    worker: str | None = None  # assigned_worker_id as the server keeps it
    lease: str | None = None
    held: set[tuple[str, str]] = field(default_factory=set)  # every (worker, lease) it was claimed with


class Owner:
    """Synchronous access to the database as the schema owner, on a private event loop."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(asyncpg_dsn(url)))

    def execute(self, sql: str, *args: Any) -> str:
        return str(self.loop.run_until_complete(self.conn.execute(sql, *args)))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


class JobMachine(RuleBasedStateMachine):
    client: httpx.Client
    owner: Owner

    issued = Bundle("issued")  # (job id, worker, lease) of every claim

    def __init__(self) -> None:
        super().__init__()
        self.queue = new_queue("sm")
        # In creation order: rules pick jobs by position, which must not depend on the random ids.
        self.jobs: dict[str, ModelJob] = {}
        self.seq = 0

    # --- helpers -------------------------------------------------------------------------------------------

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.client.post(API + path, json=body)

    def eligible(self) -> list[ModelJob]:
        ready = [j for j in self.jobs.values() if j.status == "pending" and not j.delayed]
        return sorted(ready, key=lambda j: (-j.priority, j.seq))

    def expect_ack_miss(self, r: httpx.Response, job: ModelJob, worker: str, lease: str) -> None:
        """rest.md §6: how a fenced call that does not hold the live lease must be answered."""
        if job.worker == worker and job.status in TERMINAL:
            assert r.status_code == 409, r.text
            assert r.json() == {
                "code": "CONFLICT",
                "message": f"Job is already {job.status}",
                "details": None,
            }
        elif job.worker == worker and job.status == "processing":
            assert r.status_code == 409 and r.json()["code"] == "LEASE_EXPIRED", r.text
        elif (worker, lease) in job.held:
            assert r.status_code == 409 and r.json()["code"] == "LEASE_EXPIRED", r.text
        else:
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", r.text

    def holds(self, job: ModelJob, worker: str, lease: str) -> bool:
        return job.status == "processing" and job.worker == worker and job.lease == lease

    def settle_failure(self, job: ModelJob, *, delayed: bool) -> None:
        if job.retry_count < job.max_retries:
            job.status, job.delayed, job.worker, job.lease = "pending", delayed, None, None
        else:
            job.status = "deadletter"  # keeps its worker and lease
        job.retry_count += 1

    # --- rules ---------------------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.jobs.clear()

    @precondition(lambda self: len(self.jobs) < 5)  # a few jobs, many transitions
    @rule(priority=st.integers(-1, 1), max_retries=st.integers(0, 2), delayed=st.booleans())
    def create(self, priority: int, max_retries: int, delayed: bool) -> None:
        body: dict[str, Any] = {
            "queue_name": self.queue,
            "payload": {"seq": self.seq},
            "priority": priority,
            "max_retries": max_retries,
        }
        if delayed:
            body["scheduled_at"] = "2999-01-01T00:00:00Z"
        r = self.post("/jobs", body)
        assert r.status_code == 201, r.text
        job = ModelJob(r.json()["id"], self.seq, priority, max_retries)
        if delayed:
            job.status = "scheduled"
        self.jobs[job.id] = job
        self.seq += 1

    @rule(target=issued, worker=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> Any:
        r = self.post(
            "/jobs/claim",
            {"queue_name": self.queue, "worker_id": worker, "limit": limit, "lease_duration_secs": 300},
        )
        assert r.status_code == 200, r.text
        got = r.json()["jobs"]
        want = self.eligible()[:limit]
        if [j["id"] for j in got] != [j.id for j in want]:
            views = {i: self.client.get(f"{API}/jobs/{i}").json() for i in self.jobs}
            raise AssertionError(
                f"claimed {[j['id'] for j in got]}, model wants {[j.id for j in want]};"
                f" server: {views}; model: {self.jobs}"
            )
        out = []
        for wire, job in zip(got, want, strict=True):
            assert wire["retry_count"] == job.retry_count
            job.status, job.worker, job.lease = "processing", worker, wire["lease_id"]
            job.held.add((worker, wire["lease_id"]))
            out.append((job.id, worker, wire["lease_id"]))
        if not out:  # an ack for a job that never existed must be a 404
            out.append((str(uuid.uuid4()), worker, str(uuid.uuid4())))
        return multiple(*out)

    def ack(self, action: str, job_id: str, worker: str, lease: str, result: Any = None) -> None:
        """complete, fail or heartbeat with this worker and lease; check the answer and move the model."""
        body: dict[str, Any] = {"worker_id": worker, "lease_id": lease}
        if action == "complete" and result is not None:
            body["result"] = result
        elif action == "fail":
            body["error"] = "boom"
        elif action == "heartbeat":
            body["lease_duration_secs"] = 300
        r = self.post(f"/jobs/{job_id}/{action}", body)
        job = self.jobs.get(job_id)
        if job is None:
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", r.text
        elif not self.holds(job, worker, lease):
            self.expect_ack_miss(r, job, worker, lease)
        elif action == "complete":
            assert r.status_code == 200 and r.json() == {"success": True}, r.text
            job.status = "completed"
        elif action == "fail":
            assert r.status_code == 200, r.text
            will_retry = job.retry_count < job.max_retries
            self.settle_failure(job, delayed=True)
            answer = r.json()
            assert answer["will_retry"] is will_retry and answer["retry_count"] == job.retry_count
            assert (answer["next_retry_at"] is None) is (not will_retry)
        else:
            assert r.status_code == 200 and r.json()["success"] is True, r.text

    @precondition(lambda self: any(j.status == "processing" for j in self.jobs.values()))
    @rule(
        data=st.data(),
        action=st.sampled_from(["complete", "fail", "fail", "heartbeat"]),
        result=st.sampled_from([None, {"ok": True}, [1, 2], "done"]),
    )
    def ack_as_holder(self, data: st.DataObject, action: str, result: Any) -> None:
        running = [j.id for j in self.jobs.values() if j.status == "processing"]
        job = self.jobs[data.draw(st.sampled_from(running))]
        assert job.worker is not None and job.lease is not None
        self.ack(action, job.id, job.worker, job.lease, result)

    @rule(ack=issued, action=st.sampled_from(["complete", "fail", "heartbeat"]), other_worker=st.booleans())
    def ack_with_an_old_lease(self, ack: tuple[str, str, str], action: str, other_worker: bool) -> None:
        """Replays, stale leases after a requeue, and another worker holding someone else's lease."""
        job_id, worker, lease = ack
        if other_worker:
            worker = "w1" if worker == "w2" else "w2"
        self.ack(action, job_id, worker, lease)

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(list(self.jobs)))]
        r = self.client.delete(f"{API}/jobs/{job.id}")
        if job.status in ("pending", "scheduled"):
            assert r.status_code == 204, r.text
            job.status = "cancelled"
        else:
            assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(list(self.jobs)))]
        r = self.post(f"/jobs/{job.id}/retry")
        if job.status in ("failed", "deadletter"):
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "pending" and r.json()["retry_count"] == 0
            job.status, job.retry_count, job.delayed, job.worker, job.lease = "pending", 0, False, None, None
        else:
            assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data(), priority=st.integers(-1, 1))
    def boost(self, data: st.DataObject, priority: int) -> None:
        job = self.jobs[data.draw(st.sampled_from(list(self.jobs)))]
        r = self.client.put(f"{API}/jobs/{job.id}/priority", json={"priority": priority})
        if job.status in ("pending", "scheduled"):
            assert r.status_code == 200, r.text
            assert r.json() == {"job_id": job.id, "old_priority": job.priority, "new_priority": priority}
            job.priority = priority
        else:
            assert r.status_code == 404, r.text

    @precondition(lambda self: any(j.delayed or j.status == "scheduled" for j in self.jobs.values()))
    @rule(data=st.data())
    def come_due(self, data: st.DataObject) -> None:
        waiting = [j.id for j in self.jobs.values() if j.delayed or j.status == "scheduled"]
        job = self.jobs[data.draw(st.sampled_from(waiting))]
        self.owner.execute(
            "UPDATE jobs SET scheduled_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(job.id)
        )
        if job.status == "scheduled":
            # Wait for the activation loop (transition 3): while its UPDATE holds the row, a claim skips it
            # (skip-locked), which the model cannot predict.
            self.wait_for_status(job.id, "pending")
            job.status = "pending"
        job.delayed = False

    def wait_for_status(self, job_id: str, want: str) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            view: dict[str, Any] = self.client.get(f"{API}/jobs/{job_id}").json()
            if view["status"] == want:
                return view
            assert time.monotonic() < deadline, f"job {job_id} stayed {view['status']}, expected {want}"
            time.sleep(0.05)

    @precondition(lambda self: any(j.status == "processing" for j in self.jobs.values()))
    @rule(data=st.data())
    def lease_expires(self, data: st.DataObject) -> None:
        running = [j.id for j in self.jobs.values() if j.status == "processing"]
        job = self.jobs[data.draw(st.sampled_from(running))]
        self.owner.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(job.id)
        )
        # The recovery loop (every 0.3 s in tests) applies transition 8.
        deadline = time.monotonic() + 15
        while True:
            view = self.client.get(f"{API}/jobs/{job.id}").json()
            if view["status"] != "processing":
                break
            assert time.monotonic() < deadline, "lease recovery did not run"
            time.sleep(0.05)
        self.settle_failure(job, delayed=False)
        assert view["last_error"] == "Lease expired"

    # --- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def server_agrees(self) -> None:
        if not self.jobs:
            return
        r = self.client.get(f"{API}/jobs/status", params={"ids": ",".join(self.jobs)})
        assert r.status_code == 200, r.text
        seen = {row["id"]: row for row in r.json()}
        assert set(seen) == set(self.jobs)
        for job in self.jobs.values():
            row = seen[job.id]
            status = row["status"]
            if job.status == "pending" and status == "scheduled":
                status = "pending"  # made due; the activation loop may not have run yet
            assert (status, row["retry_count"]) == (job.status, job.retry_count), (job, row)
            assert (row["completed_at"] is not None) is (job.status in TERMINAL), (job, row)


def test_job_state_machine(tenant: Tenant, database: TestDatabase) -> None:
    owner = Owner(database.url)
    try:
        with tenant.client() as client:
            JobMachine.client = client
            JobMachine.owner = owner
            machine = JobMachine.TestCase
            machine.settings = settings(
                max_examples=20,
                stateful_step_count=30,
                deadline=None,
                # No shrinking against a live server (slow, and timing makes replays diverge); the failing
                # run's steps are printed as they happened.
                phases=[Phase.explicit, Phase.generate],
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            machine().runTest()
    finally:
        owner.close()
