"""The web dashboard in a real browser: Debian's headless Chromium driven by Playwright, on a real server.

Screenshots of every page land in test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from ..support import REPO_ROOT, ServerProcess, Tenant, TestDatabase, create_tenant

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def ui_server(database: TestDatabase) -> Iterator[ServerProcess]:
    server = ServerProcess(database.url, env={"SPOOLED_RETRY_BACKOFF_BASE_SECS": "0"}).start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.wait_for_timeout(300)  # let the charts and toasts settle
    await page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def seed(tenant: Tenant) -> dict[str, Any]:
    """Some history to look at: completed and failed jobs, a dead letter, a worker, a schedule, a workflow."""
    out: dict[str, Any] = {}
    with tenant.client() as c:
        r = c.post(
            "/api/v1/jobs/bulk",
            json={
                "queue_name": "emails",
                "jobs": [{"payload": {"to": f"user{i}@example.com"}} for i in range(12)],
            },
        )
        assert r.status_code in (200, 201), r.text
        claimed = c.post(
            "/api/v1/jobs/claim", json={"queue_name": "emails", "worker_id": "mailer-1", "limit": 12}
        ).json()["jobs"]
        for i, job in enumerate(claimed):
            if i % 4 == 3:
                c.post(
                    f"/api/v1/jobs/{job['id']}/fail",
                    json={
                        "worker_id": "mailer-1",
                        "lease_id": job["lease_id"],
                        "error": "SMTP 451: try again later",
                    },
                )
            else:
                c.post(
                    f"/api/v1/jobs/{job['id']}/complete",
                    json={"worker_id": "mailer-1", "lease_id": job["lease_id"], "result": {"sent": True}},
                )
        dead = c.post(
            "/api/v1/jobs",
            json={"queue_name": "payments", "payload": {"invoice": "INV-1042"}, "max_retries": 0},
        ).json()["id"]
        job = c.post("/api/v1/jobs/claim", json={"queue_name": "payments", "worker_id": "billing-1"}).json()[
            "jobs"
        ][0]
        r = c.post(
            f"/api/v1/jobs/{dead}/fail",
            json={
                "worker_id": "billing-1",
                "lease_id": job["lease_id"],
                "error": "card declined: insufficient funds",
            },
        )
        assert r.json()["will_retry"] is False
        out["dead"] = dead
        for n, queue in enumerate(("emails", "payments")):
            c.post(
                "/api/v1/workers/register",
                json={
                    "worker_id": f"worker-{n + 1}",
                    "queue_name": queue,
                    "hostname": f"host-{n + 1}.internal",
                    "max_concurrency": 8,
                },
            )
        c.post(
            "/api/v1/schedules",
            json={
                "name": "nightly-report",
                "cron_expression": "0 2 * * *",
                "queue_name": "reports",
                "payload_template": {"kind": "nightly"},
            },
        )
        r = c.post(
            "/api/v1/workflows",
            json={
                "name": "onboarding",
                "jobs": [
                    {"key": "create-account", "queue_name": "onboard", "payload": {}},
                    {
                        "key": "send-welcome",
                        "queue_name": "onboard",
                        "payload": {},
                        "depends_on": ["create-account"],
                    },
                    {
                        "key": "provision",
                        "queue_name": "onboard",
                        "payload": {},
                        "depends_on": ["create-account"],
                    },
                    {
                        "key": "notify-sales",
                        "queue_name": "onboard",
                        "payload": {},
                        "depends_on": ["send-welcome", "provision"],
                    },
                ],
            },
        )
        out["workflow"] = r.json().get("workflow_id") if r.status_code in (200, 201) else None
    return out


async def complete_when_claimable(tenant: Tenant, queue: str, job_id: str) -> None:
    """The test-side worker: claims the replayed job and completes it over REST."""
    async with tenant.async_client() as c:
        for _ in range(200):
            jobs = (
                await c.post("/api/v1/jobs/claim", json={"queue_name": queue, "worker_id": "e2e-worker"})
            ).json()
            for job in jobs["jobs"]:
                await asyncio.sleep(0.5)  # long enough for a person (and the test) to see it processing
                r = await c.post(
                    f"/api/v1/jobs/{job['id']}/complete",
                    json={"worker_id": "e2e-worker", "lease_id": job["lease_id"], "result": {"ok": 1}},
                )
                assert r.status_code == 200, r.text
                if job["id"] == job_id:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the replayed job never became claimable")


async def test_dashboard_end_to_end(ui_server: ServerProcess, browser: Browser) -> None:
    tenant = create_tenant(ui_server)
    seeded = seed(tenant)
    base = ui_server.base_url
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(base) else outside.append(req.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Sign in with the API key (a wrong key is refused first).
    await page.goto(base + "/dashboard")
    await expect(page.locator("#login-form")).to_be_visible()
    await shot(page, "login")
    await page.fill("#api-key", "sp_test_wrong")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("not accepted")
    await page.fill("#api-key", tenant.api_key)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#live")).to_have_class("live on", timeout=15000)
    assert await page.evaluate("sessionStorage.getItem('spooled.apiKey')") == tenant.api_key

    # A job appears live on the jobs page, then its status changes live.
    await page.click("#nav a[data-page=jobs]")
    await expect(page.locator("#job-table table")).to_be_visible()
    with tenant.client() as c:
        fresh = c.post(
            "/api/v1/jobs", json={"queue_name": "live-demo", "payload": {"hello": "world"}}
        ).json()["id"]
    row = page.locator(f'tr[data-id="{fresh}"]')
    await expect(row).to_be_visible(timeout=10000)
    await expect(row.locator(".pill")).to_have_text("pending")
    with tenant.client() as c:
        c.post("/api/v1/jobs/claim", json={"queue_name": "live-demo", "worker_id": "w-live"})
    await expect(row.locator(".pill")).to_have_text("processing", timeout=10000)
    await shot(page, "jobs")

    # The job page shows payload, result and the timeline of a job that went through failure.
    await page.goto(f"{base}/dashboard#/jobs/{seeded['dead']}")
    await expect(page.locator("#job-status .pill")).to_have_text("deadletter")
    await expect(page.locator(".timeline li")).not_to_have_count(0)
    await expect(page.locator("#job-body")).to_contain_text("card declined")
    await shot(page, "job-deadletter")

    # Replay the dead letter from the DLQ page, then watch it complete on its job page.
    await page.click("#nav a[data-page=dlq]")
    dlq_row = page.locator(f'tr[data-id="{seeded["dead"]}"]')
    await expect(dlq_row).to_be_visible()
    await expect(page.locator("#dlq-badge")).to_have_text("1")
    await shot(page, "dlq")
    await dlq_row.locator("button[data-replay]").click()
    await expect(dlq_row).to_have_count(0, timeout=10000)
    await page.goto(f"{base}/dashboard#/jobs/{seeded['dead']}")
    await expect(page.locator("#job-status .pill")).to_have_text("pending", timeout=10000)
    await asyncio.gather(
        complete_when_claimable(tenant, "payments", seeded["dead"]),
        expect(page.locator("#job-status .pill")).to_have_text("completed", timeout=20000),
    )
    await expect(page.locator("#job-body")).to_contain_text('"ok": 1')
    await shot(page, "job-completed")

    # Pause a queue.
    await page.click("#nav a[data-page=queues]")
    queue_row = page.locator('tr[data-queue="emails"]')
    await expect(queue_row).to_be_visible()
    await queue_row.locator("button[data-act=pause]").click()
    await expect(queue_row.locator(".pill")).to_have_text("paused", timeout=10000)
    with tenant.client() as c:
        assert c.get("/api/v1/queues/emails").json()["enabled"] is False
    await shot(page, "queues")

    # The remaining pages render their data.
    await page.click("#nav a[data-page=workers]")
    await expect(page.locator("#worker-table")).to_contain_text("host-1.internal")
    await shot(page, "workers")
    await page.click("#nav a[data-page=schedules]")
    await expect(page.locator("#schedule-table")).to_contain_text("nightly-report")
    await page.click("#preview")
    await expect(page.locator("#preview-out .chip, #preview-out .muted").first).to_be_visible()
    await shot(page, "schedules")
    await page.click("#nav a[data-page=workflows]")
    await expect(page.locator("#wf-table")).not_to_contain_text("Loading")
    if seeded["workflow"]:
        await page.goto(f"{base}/dashboard#/workflows/{seeded['workflow']}")
        await expect(page.locator("#dag .node")).to_have_count(4)
        await shot(page, "workflow")
    else:
        await shot(page, "workflows")

    # The overview's charts have drawn the traffic this test made.
    with tenant.client() as c:
        c.post(
            "/api/v1/jobs/bulk", json={"queue_name": "burst", "jobs": [{"payload": {}} for _ in range(20)]}
        )
        for job in c.post(
            "/api/v1/jobs/claim", json={"queue_name": "burst", "worker_id": "b", "limit": 20}
        ).json()["jobs"]:
            c.post(f"/api/v1/jobs/{job['id']}/complete", json={"worker_id": "b", "lease_id": job["lease_id"]})
    await page.click("#nav a[data-page=overview]")
    await expect(page.locator("#c-throughput path.series").first).to_be_visible(timeout=10000)
    await expect(page.locator("#feed li").first).to_be_visible()
    await shot(page, "overview")

    # Signing out forgets the key.
    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('spooled.apiKey')") is None
    await context.close()
    assert outside == [], f"the dashboard reached outside the server: {outside}"
    assert errors == [], errors


async def test_dashboard_assets_are_served_safely(ui_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=ui_server.base_url) as c:
        r = await c.get("/dashboard")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert (await c.get("/dashboard", headers={"If-None-Match": r.headers["etag"]})).status_code == 304
        for name in ("app.js", "charts.js", "style.css", "favicon.svg"):
            assert (await c.get(f"/dashboard/{name}")).status_code == 200, name
        for bad in ("../app.py", "%2e%2e%2fapp.py", "nope.js", "index.py"):
            r = await c.get(f"/dashboard/{bad}")
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", bad
