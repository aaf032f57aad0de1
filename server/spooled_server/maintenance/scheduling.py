"""Lifespan hook: the precise cron loop and the dependency/workflow sweep (semantics.md §8, §9, §18).

The cron loop runs on every replica but fires only while this replica leads the background loops; the
sweep is an ordinary leader-only maintenance loop. Registered in `hooks.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..core import workflows
from ..core.context import Core
from ..core.schedules import CronScheduler

SWEEP_INTERVAL_SECS = 10.0


@asynccontextmanager
async def lifespan(_app: Any, core: Core) -> AsyncIterator[None]:
    maintenance = core.maintenance  # type: ignore[attr-defined]

    async def sweep() -> None:
        await workflows.sweep(core)

    sweep.__name__ = "dependency_workflow_sweep"
    maintenance.add_loop("dependency-workflow-sweep", SWEEP_INTERVAL_SECS, sweep)
    scheduler = CronScheduler(core, lambda: bool(maintenance.is_leader))
    core.scheduler = scheduler  # type: ignore[attr-defined]
    scheduler.start()
    try:
        yield
    finally:
        await scheduler.stop()
