"""The README's curl quickstart is examples/curl/quickstart.sh, and it works against a live server."""

from __future__ import annotations

import json
import os
import re
import subprocess

from ..support import REPO_ROOT, Tenant

SCRIPT = REPO_ROOT / "examples" / "curl" / "quickstart.sh"


def test_readme_shows_the_example_verbatim() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert SCRIPT.read_text() in blocks


def test_quickstart_enqueues_claims_and_completes(tenant: Tenant) -> None:
    env = {**os.environ, "SPOOLED_URL": tenant.server.base_url, "SPOOLED_API_KEY": tenant.api_key}
    out = subprocess.run(["bash", "-euo", "pipefail", str(SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    decoder = json.JSONDecoder()
    created, end = decoder.raw_decode(out)
    completed, _ = decoder.raw_decode(out[end:].lstrip())
    job_id = created["id"]
    assert created["created"] is True
    assert completed == {"success": True}
    with tenant.client() as c:
        job = c.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "completed"
    assert job["result"] == {"sent": True}
    assert job["max_retries"] == 5
    assert job["idempotency_key"] == "welcome-usr_123"
