"""Every code block of README.md runs, in order, against a real server (examples are tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```python\n# example: ([\w-]+)\n(.*?)```", re.S)


def readme_examples() -> list[tuple[str, str]]:
    return [(name, "# example: " + name + "\n" + code) for name, code in BLOCK.findall(README.read_text())]


def example_env(tenant: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    env.update(
        SPOOLED_API_KEY=tenant.api_key,
        SPOOLED_BASE_URL=tenant.server.base_url,
        SPOOLED_GRPC_ADDRESS=f"127.0.0.1:{tenant.server.grpc_port}",
    )
    return env


def run_example(python: str, code: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [python, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, f"example failed:\n{code}\n--- output ---\n{result.stdout}{result.stderr}"
    return result.stdout


def test_readme_has_the_product_page_quickstart() -> None:
    names = [name for name, _ in readme_examples()]
    assert names[:3] == ["enqueue", "worker", "realtime"] and len(names) >= 5


def test_readme_examples_run(tenant: Any, tmp_path: Path) -> None:
    env = example_env(tenant)
    outputs = {name: run_example(sys.executable, code, env, tmp_path) for name, code in readme_examples()}
    assert outputs["enqueue"].startswith("Created job: ")
    assert "worker stopped" in outputs["worker"]
    assert "job.created:" in outputs["realtime"] and "orders" in outputs["realtime"]
    assert "thumbnails made: [0, 1, 2]" in outputs["async-grpc"]
    assert "VALIDATION_ERROR" in outputs["errors"] and "409 CONFLICT" in outputs["errors"]
    # The quickstart's job went through the worker with the options the page shows.
    import httpx

    jobs = httpx.get(
        tenant.server.base_url + "/api/v1/jobs",
        params={"queue_name": "email-notifications"},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
    ).json()
    assert [(j["status"], j["max_retries"]) for j in jobs] == [("completed", 5)]
