"""HTTP edge: one module per resource. Every module here that defines `ROUTES` is mounted by the app."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def route_modules() -> list[ModuleType]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "ROUTES"):
            found.append(module)
    return found
