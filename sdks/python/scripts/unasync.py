"""Write ``spooled/resources/_sync.py`` from ``spooled/resources/_async.py``.

The resources are written once, for asyncio; the blocking twin is a mechanical rewrite (drop
``async``/``await``, use the sync transport and ``sync_detailed`` calls, drop the ``Async`` prefix from
class names). ``--check`` exits 1 when the committed file differs from a fresh rewrite.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

SDK_ROOT = Path(__file__).resolve().parents[1]
SOURCE = SDK_ROOT / "spooled" / "resources" / "_async.py"
TARGET = SDK_ROOT / "spooled" / "resources" / "_sync.py"

HEADER = (
    "# Generated from _async.py by sdks/python/scripts/unasync.py - do not edit.\n"
    "# Change _async.py and run `python sdks/python/scripts/unasync.py`.\n"
)

RULES: list[tuple[str, str]] = [
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncTransport\b", "SyncTransport"),
    (r"\b_AsyncResource\b", "_SyncResource"),
    (r"\bAsyncSpooledClient\b", "SpooledClient"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basyncio_detailed\b", "sync_detailed"),
    (r"Awaitable\[(Response\[Any\])\]", r"\1"),
    (r"\bAwaitable, ", ""),
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"for asyncio;", "for asyncio (this file is its blocking twin);"),
]


def rewrite(text: str) -> str:
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    return HEADER + text


def render() -> str:
    # Formatted in place next to the real file, so ruff sees the same project settings and package.
    scratch = TARGET.with_name("_sync_unasync_scratch.py")
    try:
        scratch.write_text(rewrite(SOURCE.read_text()))
        ruff = str(Path(sys.executable).parent / "ruff")
        config = ["--no-cache", "--config", str(SDK_ROOT / "pyproject.toml")]
        # Import sorting first (Iterator sorts differently from AsyncIterator), then layout.
        subprocess.run(
            [ruff, "check", *config, "--select", "I", "--fix", "--quiet", str(scratch)], check=True
        )
        subprocess.run([ruff, "format", *config, "--quiet", str(scratch)], check=True)
        return scratch.read_text()
    finally:
        scratch.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if _sync.py is stale")
    args = parser.parse_args(argv)
    fresh = render()
    if args.check:
        if TARGET.read_text() != fresh:
            print(f"{TARGET} is stale: run python scripts/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
