"""The committed gRPC stubs are exactly what server/scripts/generate_grpc.py produces from proto/ today."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_grpc.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_generate_grpc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(generator: ModuleType, tmp_path: Path) -> None:
    fresh = generator.generate()
    generator.write(fresh, tmp_path)
    committed: Path = generator.OUT_DIR
    for name in fresh:
        assert (committed / name).exists(), f"{name} is missing: run python server/scripts/generate_grpc.py"
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"{name} is stale: run python server/scripts/generate_grpc.py"
        )
    extra = sorted(p.name for p in committed.glob("*.py*") if p.is_file() and p.name not in fresh)
    assert not extra, f"unexpected files in {committed}: {extra}"


def test_every_generated_file_says_do_not_edit(generator: ModuleType) -> None:
    for name, text in generator.generate().items():
        assert text.splitlines()[0].endswith("do not edit."), name


def test_stubs_import_as_a_package_with_the_canonical_descriptor_name() -> None:
    from spooled_server.grpc._generated import spooled_pb2, spooled_pb2_grpc

    # The canonical name lets the stubs share a process with any other copy of the official proto.
    assert spooled_pb2.DESCRIPTOR.name == "spooled/v1/spooled.proto"
    assert spooled_pb2_grpc.spooled_dot_v1_dot_spooled__pb2 is spooled_pb2


def test_drift_is_detected(generator: ModuleType, tmp_path: Path) -> None:
    fresh = generator.generate()
    generator.write(fresh, tmp_path)
    assert generator.differences(fresh, tmp_path) == []
    stale = tmp_path / "spooled_pb2.py"
    stale.write_text(stale.read_text() + "\n# hand edit\n")
    (tmp_path / "leftover_pb2.py").write_text("")
    assert generator.differences(fresh, tmp_path) == ["leftover_pb2.py", "spooled_pb2.py"]
