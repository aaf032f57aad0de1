"""``python -m build`` makes a wheel that installs into a clean venv and runs the quickstart."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_readme import example_env, readme_examples, run_example

SDK_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_in_a_clean_venv_and_runs_the_quickstart(tenant: Any, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(SDK_ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheels = list(dist.glob("spooled-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    uv = shutil.which("uv")
    if uv:
        subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True)
        subprocess.run(
            [uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheels[0])],
            check=True,
            capture_output=True,
            timeout=600,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", str(wheels[0])],
            check=True,
            capture_output=True,
            timeout=600,
        )
    python = str(venv / "bin" / "python")
    env = example_env(tenant)
    where = run_example(
        python, "import spooled, sys; print(spooled.__file__); print(spooled.__version__)", env, tmp_path
    )
    assert str(venv) in where.splitlines()[0]  # the installed wheel, not the source tree
    installed = subprocess.run(
        [
            python,
            "-c",
            "import spooled._generated, spooled._grpc, spooled.types; "
            "import importlib.resources as r; print(r.files('spooled').joinpath('py.typed').is_file())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == "True"
    quickstart = dict(readme_examples())
    out = run_example(python, quickstart["enqueue"], env, tmp_path)
    assert out.startswith("Created job: ")
    assert "worker stopped" in run_example(python, quickstart["worker"], env, tmp_path)
    assert "job.created:" in run_example(python, quickstart["realtime"], env, tmp_path)
