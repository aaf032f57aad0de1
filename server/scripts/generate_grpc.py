"""Regenerate the gRPC stubs in spooled_server/grpc/_generated/ from proto/spooled/v1/spooled.proto.

    python server/scripts/generate_grpc.py            # rewrite the committed files
    python server/scripts/generate_grpc.py --check    # exit 1 if they differ from a fresh generation

The proto is compiled with `-I proto`, so the descriptor keeps its canonical name `spooled/v1/spooled.proto`.
That name matters: protobuf's default descriptor pool refuses two files that define the same `spooled.v1.*`
symbols under different names, so a stub generated under any other path (for example by mapping the proto to
`spooled_server/grpc/_generated/spooled.proto` with `-I`) could not be imported in the same process as an SDK
or any other copy of the official proto. The price of the canonical name is that grpc's plugin writes an
absolute `from spooled.v1 import spooled_pb2` into the service module; that one line is rewritten to a
relative import, and every file gets a do-not-edit header. tests/contract/test_grpc_generated_drift.py runs
this generation into a temporary directory and fails on any difference from the committed files.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import tempfile
from pathlib import Path

SERVER_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = SERVER_ROOT.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "spooled/v1/spooled.proto"
OUT_DIR = SERVER_ROOT / "spooled_server" / "grpc" / "_generated"

HEADER = "# Generated from proto/spooled/v1/spooled.proto by server/scripts/generate_grpc.py: do not edit.\n"
ABSOLUTE_IMPORT = "from spooled.v1 import spooled_pb2 as "
RELATIVE_IMPORT = "from . import spooled_pb2 as "
INIT = HEADER + '"""Protobuf messages and gRPC stubs of the `spooled.v1` API."""\n'
GENERATED = ("spooled_pb2.py", "spooled_pb2.pyi", "spooled_pb2_grpc.py")


def generate() -> dict[str, str]:
    """Compile the proto and return {file name: text} of everything that belongs in _generated/."""
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="spooled-grpc-gen-") as tmp:
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO_FILE),
        ])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        out: dict[str, str] = {"__init__.py": INIT}
        for name in GENERATED:
            text = (Path(tmp) / "spooled" / "v1" / name).read_text(encoding="utf-8")
            if name == "spooled_pb2_grpc.py":
                if text.count(ABSOLUTE_IMPORT) != 1:
                    raise RuntimeError("grpc's plugin no longer writes the expected import; revisit this")
                text = text.replace(ABSOLUTE_IMPORT, RELATIVE_IMPORT)
            out[name] = HEADER + text
    return out


def write(files: dict[str, str], out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")


def differences(files: dict[str, str], out_dir: Path = OUT_DIR) -> list[str]:
    """Names of generated files that are missing, stale, or unexpected in `out_dir`."""
    wrong = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            wrong.append(name)
    for path in out_dir.glob("*.py*"):
        if path.is_file() and path.name not in files:
            wrong.append(path.name)
    return sorted(wrong)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        wrong = differences(files)
        if wrong:
            print("stale generated gRPC files: " + ", ".join(wrong), file=sys.stderr)
            return 1
        return 0
    write(files)
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
