"""Every other resource of the client, called against a real server."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest

from spooled import (
    AsyncSpooledClient,
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NotFoundError,
    SpooledClient,
    ValidationError,
)
from spooled.types import QueueSummary, Schedule, WorkerSummary

from ..conftest import ADMIN_KEY, wait_until


def test_queues(client: SpooledClient) -> None:
    client.jobs.create(queue_name="q-a", payload={})
    client.jobs.create(queue_name="q-b", payload={})
    names = [q.queue_name for q in client.queues.list()]
    assert names == ["q-a", "q-b"]
    assert [q.queue_name for q in client.queues.list_all(page_size=1)] == ["q-a", "q-b"]
    assert all(isinstance(q, QueueSummary) for q in client.queues.list(limit=1))
    config = client.queues.update_config("q-a", max_retries=7, default_timeout=60, settings={"owner": "ops"})
    assert (config.max_retries, config.default_timeout, config.queue_name) == (7, 60, "q-a")
    assert client.queues.get("q-a").max_retries == 7
    stats = client.queues.stats("q-a")
    assert stats.queue_name == "q-a" and stats.pending_jobs == 1
    paused = client.queues.pause("q-a", reason="maintenance")
    assert paused.paused and paused.reason == "maintenance"
    assert client.jobs.claim("q-a", "w").jobs == []
    resumed = client.queues.resume("q-a")
    assert resumed.resumed and isinstance(resumed.paused_duration_secs, int)
    with pytest.raises(ConflictError):
        client.queues.delete("q-a")
    client.queues.delete("q-b", delete_jobs=True)
    assert [q.queue_name for q in client.queues.list()] == ["q-a"]
    with pytest.raises(NotFoundError):
        client.queues.get("nope")


def test_workers(client: SpooledClient) -> None:
    registered = client.workers.register(
        worker_id="host-1.w", queue_name="wq", hostname="host-1", max_concurrency=4, metadata={"zone": "a"}
    )
    assert registered.id == "host-1.w" and registered.heartbeat_interval_secs == 10
    assert [w.id for w in client.workers.list()] == ["host-1.w"]
    assert all(isinstance(w, WorkerSummary) for w in client.workers.list_all(page_size=1))
    worker = client.workers.get("host-1.w")
    assert (worker.hostname, worker.max_concurrency, worker.status) == ("host-1", 4, "healthy")
    beat = client.workers.heartbeat("host-1.w", current_jobs=2)
    assert beat.acknowledged and beat.should_drain is False
    assert client.workers.drain("host-1.w").status == "draining"
    assert client.workers.heartbeat("host-1.w", current_jobs=0).should_drain is True
    client.workers.deregister("host-1.w")
    assert client.workers.get("host-1.w").status == "offline"
    with pytest.raises(NotFoundError):
        client.workers.heartbeat("unknown-worker", current_jobs=0)


def test_schedules(client: SpooledClient) -> None:
    preview = client.schedules.preview("0 9 * * *", timezone="Europe/Paris", count=3)
    assert len(preview.next_runs) == 3
    created = client.schedules.create(
        name="nightly",
        cron_expression="0 0 3 * * *",
        queue_name="reports",
        payload_template={"kind": "nightly"},
    )
    assert created.name == "nightly" and created.next_run_at is not None
    assert [s.id for s in client.schedules.list()] == [created.id]
    assert all(isinstance(s, Schedule) for s in client.schedules.list_all(page_size=1))
    got = client.schedules.get(created.id)
    assert (got.queue_name, got.max_retries, got.timezone) == ("reports", 3, "UTC")
    updated = client.schedules.update(created.id, description="at three", priority=5)
    assert updated.description == "at three" and updated.priority == 5
    assert client.schedules.pause(created.id).is_active is False
    assert client.schedules.resume(created.id).is_active is True
    fired = client.schedules.trigger(created.id)
    job = client.jobs.get(fired.job_id)
    assert job.queue_name == "reports" and job.payload == {"kind": "nightly"}
    history = client.schedules.history(created.id)
    assert [h.job_id for h in history] == [fired.job_id]
    with pytest.raises(ValidationError):
        client.schedules.create(name="bad", cron_expression="not cron", queue_name="q", payload_template={})
    client.schedules.delete(created.id)
    with pytest.raises(NotFoundError):
        client.schedules.get(created.id)


def test_workflows(client: SpooledClient) -> None:
    created = client.workflows.create(
        name="onboarding",
        jobs=[
            {"key": "account", "queue_name": "wf", "payload": {"step": 1}},
            {"key": "email", "queue_name": "wf", "payload": {"step": 2}, "depends_on": ["account"]},
        ],
    )
    wf_id = created.workflow_id
    keys = {ref.key: ref.job_id for ref in created.job_ids}
    assert set(keys) == {"account", "email"}
    assert [w.id for w in client.workflows.list()] == [wf_id]
    assert [w.id for w in client.workflows.list_all(page_size=1)] == [wf_id]
    detail = client.workflows.get(wf_id)
    assert detail.name == "onboarding" and detail.progress.total == 2
    jobs = client.workflows.jobs.list(wf_id)
    assert [j.key for j in jobs] == ["account", "email"]
    assert [j.key for j in client.workflows.jobs.list_all(wf_id)] == ["account", "email"]
    statuses = {s.key: s.status for s in client.workflows.jobs.status(wf_id)}
    assert statuses == {"account": "pending", "email": "pending"}
    assert client.workflows.jobs.get(wf_id, keys["email"]).depends_on == ["account"]
    # Only the unblocked step is claimable.
    assert [j.id for j in client.jobs.claim("wf", "w", limit=10).jobs] == [keys["account"]]
    cancelled = client.workflows.cancel(wf_id)
    assert cancelled.status == "cancelled"
    with pytest.raises(ValidationError):
        client.workflows.retry(wf_id)  # only failed workflows can be retried


def test_outgoing_webhooks(client: SpooledClient) -> None:
    hook = client.webhooks.create(
        name="ops", url="http://127.0.0.1:9/hook", events=["job.completed"], secret="s3cret"
    )
    assert hook.enabled and hook.events == ["job.completed"]
    assert [h.id for h in client.webhooks.list()] == [hook.id]
    assert [h.id for h in client.webhooks.list_all()] == [hook.id]
    assert client.webhooks.get(hook.id).url == "http://127.0.0.1:9/hook"
    updated = client.webhooks.update(hook.id, events=["job.completed", "job.failed"], enabled=False)
    assert updated.events == ["job.completed", "job.failed"] and updated.enabled is False
    tested = client.webhooks.test(hook.id)
    assert tested.success is False and isinstance(tested.response_time_ms, int)
    assert client.webhooks.deliveries(hook.id) == []
    assert list(client.webhooks.deliveries_all(hook.id)) == []
    with pytest.raises(NotFoundError):
        client.webhooks.retry_delivery(hook.id, str(uuid.uuid4()))
    with pytest.raises(ValidationError):
        client.webhooks.create(name="bad", url="http://127.0.0.1:9/x", events=["no.such.event"])
    client.webhooks.delete(hook.id)
    with pytest.raises(NotFoundError):
        client.webhooks.get(hook.id)


def test_api_keys_and_scope(client: SpooledClient, tenant: Any) -> None:
    created = client.api_keys.create(name="reports only", queues=["reports"])
    assert created.key.startswith("sp_test_") and created.queues == ["reports"]
    assert created.id in {k.id for k in client.api_keys.list()}
    assert created.id in {k.id for k in client.api_keys.list_all()}
    assert client.api_keys.get(created.id).key_prefix == created.key[:12]
    renamed = client.api_keys.update(created.id, name="reports")
    assert renamed.name == "reports"
    with SpooledClient(created.key, base_url=tenant.server.base_url, max_retries=0) as scoped:
        scoped.jobs.create(queue_name="reports", payload={})
        with pytest.raises(AuthorizationError):
            scoped.jobs.create(queue_name="billing", payload={})
        with pytest.raises(AuthorizationError):
            scoped.api_keys.list()
    client.api_keys.revoke(created.id)
    assert client.api_keys.get(created.id).is_active is False
    with SpooledClient(created.key, base_url=tenant.server.base_url, max_retries=0) as revoked:
        with pytest.raises(AuthenticationError):
            wait_until(lambda: _rejects(revoked), timeout=70)
            revoked.jobs.stats()


def _rejects(client: SpooledClient) -> bool:
    try:
        client.jobs.stats()
    except AuthenticationError:
        return True
    return False


def test_organizations(client: SpooledClient, tenant: Any) -> None:
    assert [o.id for o in client.organizations.list()] == [tenant.org_id]
    assert [o.id for o in client.organizations.list_all()] == [tenant.org_id]
    org = client.organizations.get(tenant.org_id)
    assert org.slug == tenant.slug
    renamed = client.organizations.update(tenant.org_id, name="Renamed Org")
    assert renamed.name == "Renamed Org"
    members = client.organizations.members(tenant.org_id)
    assert members and members[0].role == "owner"
    usage = client.organizations.usage()
    assert usage.limits.tier == "unlimited"
    token = client.organizations.webhook_token()
    assert token.webhook_token and token.webhook_token.startswith("whk_")
    new = client.organizations.regenerate_webhook_token()
    assert new.webhook_token != token.webhook_token
    assert client.organizations.clear_webhook_token().webhook_token is None
    slug = client.organizations.check_slug(tenant.slug)
    assert slug.available is False and slug.valid is True
    assert client.organizations.generate_slug("Acme Widgets Ltd").slug.startswith("acme")
    with pytest.raises(NotFoundError):
        client.organizations.get(str(uuid.uuid4()))


def test_signup_and_delete_organization(server: Any) -> None:
    slug = "sdk-" + uuid.uuid4().hex[:10]
    with SpooledClient(base_url=server.base_url, max_retries=0) as anonymous:
        created = anonymous.organizations.create(name="SDK Signup", slug=slug)
        assert created.organization.slug == slug and created.api_key.key.startswith("sp_test_")
        with pytest.raises(ConflictError):
            anonymous.organizations.create(name="SDK Signup", slug=slug)
    with SpooledClient(created.api_key.key, base_url=server.base_url) as owner:
        owner.organizations.delete(created.organization.id)


def test_auth_sessions(client: SpooledClient, tenant: Any) -> None:
    tokens = client.auth.login()
    assert tokens.token_type == "Bearer" and tokens.access_token.startswith("eyJ")
    with SpooledClient(tokens.access_token, base_url=tenant.server.base_url, max_retries=0) as jwt_client:
        me = jwt_client.auth.me()
        assert me.organization_id == tenant.org_id
        assert jwt_client.jobs.stats().total == 0  # a JWT works on ordinary routes too
        refreshed = jwt_client.auth.refresh(tokens.refresh_token)
        assert refreshed.access_token.startswith("eyJ")
        assert client.auth.validate(tokens.access_token).valid is True
        jwt_client.auth.logout(tokens.refresh_token)
        with pytest.raises(AuthenticationError):
            jwt_client.auth.me()
    with pytest.raises(AuthenticationError):
        client.auth.login("sp_test_definitely-not-a-real-key")


def test_admin(client: SpooledClient, tenant: Any) -> None:
    plans = client.admin.plans()
    assert {p.tier for p in plans} >= {"free", "pro", "unlimited"}
    stats = client.admin.stats()
    assert stats.organizations.total >= 1
    listed = client.admin.list_organizations(search=tenant.slug)
    assert [o.id for o in listed.organizations] == [tenant.org_id]
    assert tenant.org_id in {o.id for o in client.admin.list_all(page_size=50)}
    slug = "adm-" + uuid.uuid4().hex[:10]
    created = client.admin.create_organization(name="Admin Made", slug=slug, plan_tier="free")
    org_id = created.organization.id
    detail = client.admin.get_organization(org_id)
    assert detail.plan_tier == "free"
    assert client.admin.update_organization(org_id, plan_tier="pro").plan_tier == "pro"
    key = client.admin.create_api_key(org_id, name="ops")
    assert key.key.startswith("sp_test_")
    assert client.admin.reset_usage(org_id).success
    client.admin.delete_organization(org_id, hard_delete=True)
    with pytest.raises(NotFoundError):
        client.admin.get_organization(org_id)
    with SpooledClient(
        tenant.api_key, base_url=tenant.server.base_url, admin_key="wrong-admin-key", max_retries=0
    ) as bad:
        with pytest.raises(AuthenticationError) as info:
            bad.admin.stats()
        assert info.value.code == "INVALID_ADMIN_KEY"
    assert ADMIN_KEY


def test_dashboard_health_metrics(client: SpooledClient) -> None:
    client.jobs.create(queue_name="dash", payload={})
    dashboard = client.dashboard.get()
    assert dashboard.jobs.pending == 1 and [q.name for q in dashboard.queues] == ["dash"]
    health = client.health.get()
    assert health.status == "healthy" and health.database is True
    assert client.health.live() is True
    assert client.health.ready().database is True
    text = client.metrics.get()
    assert "spooled_jobs_enqueued_total" in text


def test_ingest(client: SpooledClient, tenant: Any) -> None:
    token = client.organizations.webhook_token().webhook_token
    assert token is not None
    first = client.ingest.custom(
        tenant.org_id,
        token=token,
        queue_name="ingested",
        payload={"a": 1},
        event_type="order.created",
        idempotency_key="evt-1",
    )
    again = client.ingest.custom(
        tenant.org_id, token=token, queue_name="ingested", payload={"a": 1}, idempotency_key="evt-1"
    )
    assert first.created and not again.created and again.job_id == first.job_id
    with pytest.raises(AuthenticationError):
        client.ingest.custom(tenant.org_id, token="whk_wrong", queue_name="ingested", payload={})
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    pushed = client.ingest.provider(
        tenant.org_id,
        "github",
        body,
        {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"},
    )
    assert pushed.created and pushed.queue_name == "github-push"
    assert client.jobs.get(str(pushed.job_id)).payload == {"ref": "refs/heads/main"}
    deliveries = client.ingest.deliveries()
    assert {d.provider for d in deliveries} == {"custom", "github"}
    assert len(list(client.ingest.deliveries_all(page_size=1))) == len(deliveries)


async def test_async_resources(aclient: AsyncSpooledClient, tenant: Any) -> None:
    await aclient.jobs.create(queue_name="aq", payload={})
    assert [q.queue_name async for q in aclient.queues.list_all()] == ["aq"]
    worker = await aclient.workers.register(queue_name="aq", hostname="async-host")
    assert [w.id async for w in aclient.workers.list_all()] == [worker.id]
    assert (await aclient.organizations.get(tenant.org_id)).id == tenant.org_id
    assert (await aclient.health.get()).status == "healthy"
    assert (await aclient.admin.stats()).organizations.total >= 1
    assert "spooled_" in await aclient.metrics.get()


def test_unknown_keys_are_sent_through(client: SpooledClient, tenant: Any) -> None:
    # A field the spec does not know yet still reaches the server (forward compatibility).
    with httpx.Client() as raw:
        assert raw.get(tenant.server.base_url + "/health").status_code == 200
    job = client.jobs.create({"queue_name": "fwd", "payload": {}, "future_field": 1})
    assert client.jobs.get(job.id).queue_name == "fwd"
