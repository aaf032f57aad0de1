"""Named SQL statements, loaded from `sql/*.sql`.

A file holds blocks that start with `-- name: <name>` followed by a line saying what the statement does.
`Q.<name>` returns the statement text; unknown names fail at import time of the caller, not at run time.
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def _load() -> dict[str, str]:
    found: dict[str, str] = {}
    folder = resources.files("spooled_server.db") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        matches = list(_HEADER.finditer(text))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = text[match.end() : end].strip()
            name = match.group(1)
            if name in found:
                raise RuntimeError(f"duplicate query name {name!r} in {entry.name}")
            found[name] = body
    return found


class _Queries:
    def __init__(self) -> None:
        self._all = _load()

    def __getattr__(self, name: str) -> str:
        try:
            return self._all[name]
        except KeyError:
            raise AttributeError(f"no SQL statement named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._all)


Q = _Queries()
