"""Every task of the monorepo is a nox session: `./dev <session>` runs `nox -s <session>`.

Sessions share one helper that installs the server (and the SDKs that exist) into the session's venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]
PYTHON = "3.11"


def system_packages(session: nox.Session) -> None:
    """Debian packages the tests use (browser, Redis, wrk, PHP); installed when missing and we are root."""
    wanted = {"chromium": "chromium", "redis-server": "redis-server", "wrk": "wrk"}
    missing = [pkg for binary, pkg in wanted.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        session.warn(f"missing system packages (install them): {' '.join(missing)}")
        return
    session.run("apt-get", "update", "-qq", external=True)
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, external=True,
                env={"DEBIAN_FRONTEND": "noninteractive"})


def install_project(session: nox.Session) -> None:
    session.install("-e", f"{ROOT / 'server'}[test,redis]")
    sdk = ROOT / "sdks" / "python"
    if (sdk / "pyproject.toml").exists():
        session.install("-e", f"{sdk}[test]")
    session.install("-r", str(ROOT / "benchmarks" / "requirements.txt"))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every test: contracts, server (unit, integration, e2e browser), SDKs, examples."""
    system_packages(session)
    install_project(session)
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    # Each package is its own pytest run from its own folder: each has its own `tests` package and settings.
    with session.chdir(ROOT / "server"):
        session.run("pytest", "-p", "no:cacheprovider", *session.posargs, env=env)
    sdk = ROOT / "sdks" / "python"
    if (sdk / "tests").exists():
        with session.chdir(sdk):
            session.run("pytest", "-p", "no:cacheprovider", *session.posargs, env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy over the hand-written Python (generated code is excluded)."""
    install_project(session)
    session.install("ruff==0.17.6", "mypy==2.4.1")
    session.run("ruff", "check", "server/spooled_server", "benchmarks", "noxfile.py")
    session.run("mypy", "server/spooled_server", "--config-file", "server/pyproject.toml")


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Start Spooled (embedded PostgreSQL unless DATABASE_URL is set)."""
    session.install("-e", str(ROOT / "server"))
    session.run("spooled-server", "serve", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark harness: baselines and Spooled, reported as ratios (`-- --quick` for a short run)."""
    system_packages(session)
    install_project(session)
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Regenerate every generated file (gRPC stubs, SDK clients); `git diff` shows any drift."""
    install_project(session)
    for script in sorted(ROOT.glob("**/scripts/generate*.py")):
        if ".nox" in script.parts or "node_modules" in script.parts:
            continue
        session.run("python", str(script))
    out = subprocess.run(
        ["git", "status", "--porcelain"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout
    if out.strip():
        session.log(out)
