"""Shared types and helpers for the benchmark suite.

A *benchmark* is a named async function ``(Context) -> list[Measurement]``. ``run.py`` keeps the list
of benchmarks to run and the ratios to compute; new measurements (Spooled's REST enqueue, bulk,
claim+complete, latency, ...) are added there as more :class:`Benchmark` entries.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.pg import Database


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Context:
    """What every benchmark gets: the database, the time budget and the mode."""

    db: Database
    duration: float  # seconds of measured load per measurement
    quick: bool
    loadgen: str  # "wrk" or "python"
    extra: dict[str, str] = field(default_factory=dict)  # facts worth recording in the results


BenchmarkFn = Callable[[Context], Awaitable[list[Measurement]]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    fn: BenchmarkFn


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` (by measurement name), e.g. a Spooled number over its baseline.

    For latencies (lower is better) the ratio still reads spooled/baseline, so > 1 means slower.
    """

    name: str
    numerator: str
    denominator: str


@dataclass(frozen=True)
class Target:
    """An issue's target for one measurement or ratio (``ratio.<name>`` for a ratio).

    Absolute targets were set for this machine kind at the speed ``PERFORMANCE.md`` measured; this machine
    is shared and its speed moves several-fold between days. So an absolute target is also read *scaled*:
    multiplied (throughput) or divided (latency) by how this run's ``reference`` baseline compares with the
    ``reference_value`` ``PERFORMANCE.md`` gives for the same baseline. Ratio targets need no scaling."""

    issue: int
    measurement: str
    op: str  # ">=" (throughput, ratios) or "<=" (latency)
    value: float
    reference: str | None = None
    reference_value: float | None = None


@dataclass(frozen=True)
class LoopStats:
    items: int
    elapsed: float
    drained: bool

    @property
    def rate(self) -> float:
        return self.items / self.elapsed if self.elapsed > 0 else 0.0


async def run_for(
    duration: float,
    workers: int,
    step: Callable[[int], Awaitable[int]],
) -> LoopStats:
    """Run ``workers`` closed loops of ``step(worker_index)`` for ``duration`` seconds.

    ``step`` returns how many items it processed; returning 0 means "nothing left", and that worker
    stops early. Elapsed time runs until the last worker has finished its final step.
    """
    start = time.perf_counter()
    deadline = start + duration
    drained = False

    async def worker(index: int) -> int:
        nonlocal drained
        done = 0
        while time.perf_counter() < deadline:
            n = await step(index)
            if n == 0:
                drained = True
                break
            done += n
        return done

    counts = await asyncio.gather(*(worker(i) for i in range(workers)))
    return LoopStats(items=sum(counts), elapsed=time.perf_counter() - start, drained=drained)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
