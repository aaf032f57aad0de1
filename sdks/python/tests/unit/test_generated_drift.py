"""The fenced generated layers match what the pinned generators make from today's contracts."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

SDK_ROOT = Path(__file__).resolve().parents[2]


def _diff(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    out = [f"only committed: {left / n}" for n in cmp.left_only] + [
        f"only fresh: {right / n}" for n in cmp.right_only
    ]
    out += [f"differs: {left / n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += _diff(left / sub, right / sub)
    return out


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SDK_ROOT / "scripts" / "generate.py"), "--into", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for part in ("_generated", "_grpc"):
        problems = _diff(SDK_ROOT / "spooled" / part, tmp_path / "spooled" / part)
        assert not problems, "generated code drifted; run python scripts/generate.py:\n" + "\n".join(problems)


def test_every_generated_file_has_the_do_not_edit_header() -> None:
    for part in ("_generated", "_grpc"):
        for path in (SDK_ROOT / "spooled" / part).rglob("*.py*"):
            if path.suffix in (".py", ".pyi"):
                assert "Generated - do not edit" in path.read_text().splitlines()[1], path


def test_sync_resources_match_the_async_source() -> None:
    result = subprocess.run(
        [sys.executable, str(SDK_ROOT / "scripts" / "unasync.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_operation_in_the_spec_is_reachable_from_the_generated_layer() -> None:
    import yaml

    spec = yaml.safe_load((SDK_ROOT.parents[1] / "openapi" / "openapi.yaml").read_text())
    generated = {p.stem for p in (SDK_ROOT / "spooled" / "_generated" / "api").rglob("*.py")}
    ops = {
        op["operationId"]
        for item in spec["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert ops - generated == set()
