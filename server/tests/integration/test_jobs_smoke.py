"""The job lifecycle over real HTTP: enqueue, claim, complete."""

from __future__ import annotations

from ..support import Tenant


def test_enqueue_claim_complete(tenant: Tenant) -> None:
    with tenant.client() as c:
        r = c.post("/api/v1/jobs", json={"queue_name": "emails", "payload": {"to": "a@example.com"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        claimed = c.post("/api/v1/jobs/claim", json={"queue_name": "emails", "worker_id": "w1"}).json()["jobs"]
        assert [j["id"] for j in claimed] == [job_id]
        lease = claimed[0]["lease_id"]
        r = c.post(f"/api/v1/jobs/{job_id}/complete",
                   json={"worker_id": "w1", "lease_id": lease, "result": {"sent": True}})
        assert r.status_code == 200, r.text
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "completed"
        assert job["result"] == {"sent": True}
