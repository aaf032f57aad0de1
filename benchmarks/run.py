"""Run the benchmark suite: ``python -m benchmarks.run [--quick]``.

Prints a table and writes ``benchmarks/results/latest.json``. To add a measurement, append a
:class:`~benchmarks.core.Benchmark` to :data:`BENCHMARKS`; to compare it with a baseline, add a
:class:`~benchmarks.core.Ratio` to :data:`RATIOS` (computed whenever both sides were measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from benchmarks import baselines, grpc_bench, httpbench, schema, sdk_bench, spooled_rest
from benchmarks.core import Benchmark, Context, Measurement, Ratio, Target, median
from benchmarks.pg import Database, database

RESULTS_DIR = Path(__file__).resolve().parent / "results"

BENCHMARKS: list[Benchmark] = [
    *baselines.BASELINES,
    *spooled_rest.SPOOLED_REST,
    *grpc_bench.SPOOLED_GRPC,
    *sdk_bench.SDK_WORKER,
]

# spooled / baseline. Throughput ratios read "fraction of the baseline reached"; latency ratios read
# "times slower than the baseline".
RATIOS: list[Ratio] = [
    Ratio("rest_enqueue", "spooled.rest.enqueue", "baseline.http.insert"),
    Ratio("bulk_enqueue", "spooled.rest.bulk_enqueue", "baseline.sql.insert_bulk100"),
    Ratio("rest_claim_complete", "spooled.rest.claim_complete", "baseline.sql.claim_complete_n10"),
    *(
        Ratio(
            f"claim_complete_n{n}", f"spooled.grpc.claim_complete_n{n}", f"baseline.sql.claim_complete_n{n}"
        )
        for n in (1, 10, 100)
    ),
    Ratio("latency_p50", "spooled.latency_p50", "baseline.sql.notify_latency_p50"),
    Ratio("latency_p99", "spooled.latency_p99", "baseline.sql.notify_latency_p99"),
    # One gRPC worker stream against one raw connection doing claim 100 + complete 100.
    Ratio("grpc_process_jobs", "spooled.grpc.process_jobs", "baseline.sql.claim_complete_n100_1conn"),
    Ratio("grpc_process_jobs_vs_8conn", "spooled.grpc.process_jobs", "baseline.sql.claim_complete_n100"),
    Ratio("grpc_latency_p50", "spooled.grpc.latency_p50", "baseline.sql.notify_latency_p50"),
    Ratio("grpc_latency_p99", "spooled.grpc.latency_p99", "baseline.sql.notify_latency_p99"),
    # The Python SDK's worker (no-op handler) against the raw gRPC worker: the share it keeps (target >= 0.8).
    Ratio("sdk_grpc_worker", "spooled.sdk.grpc_worker", "spooled.grpc.process_jobs"),
    Ratio("sdk_grpc_worker_sync", "spooled.sdk.grpc_worker_sync", "spooled.grpc.process_jobs"),
    Ratio("sdk_rest_worker", "spooled.sdk.rest_worker", "spooled.rest.claim_complete"),
]

# The issues' targets. Reference values are PERFORMANCE.md's figures for the same baselines on this machine
# kind (raw bulk insert 150,000 jobs/s; raw claim 100 + complete 75,700 jobs/s; LISTEN/NOTIFY wake-up
# p50 0.75 ms, p99 1.6 ms).
TARGETS: list[Target] = [
    Target(2, "ratio.rest_enqueue", ">=", 0.6),
    Target(2, "spooled.rest.bulk_enqueue", ">=", 30_000, "baseline.sql.insert_bulk100", 150_000),
    Target(2, "spooled.latency_p50", "<=", 5.0, "baseline.sql.notify_latency_p50", 0.75),
    Target(3, "spooled.grpc.process_jobs", ">=", 10_000, "baseline.sql.claim_complete_n100", 75_700),
    Target(3, "spooled.grpc.latency_p50", "<=", 5.0, "baseline.sql.notify_latency_p50", 0.75),
    Target(3, "spooled.grpc.latency_p99", "<=", 25.0, "baseline.sql.notify_latency_p99", 1.6),
    Target(6, "ratio.sdk_grpc_worker", ">=", 0.8),
    Target(6, "ratio.sdk_grpc_worker_sync", ">=", 0.8),
]

T = TypeVar("T")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat (about a minute)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 3 quick / 10)")
    parser.add_argument("--repeat", type=int, help="runs per benchmark; the median is kept (1 quick / 3)")
    parser.add_argument("--only", help="comma-separated substrings of benchmark names to run")
    parser.add_argument(
        "--loadgen", choices=["wrk", "python"], help="HTTP load generator (default: wrk if found)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    return parser.parse_args(argv)


def select(benchmarks: Sequence[Benchmark], only: str | None) -> list[Benchmark]:
    if not only:
        return list(benchmarks)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    return [b for b in benchmarks if any(w in b.name for w in wanted)]


def merge_repeats(runs: Sequence[Sequence[Measurement]]) -> list[Measurement]:
    """One measurement per name: the median value over the repeats, with the first run's note."""
    by_name: dict[str, list[Measurement]] = {}
    for run in runs:
        for m in run:
            by_name.setdefault(m.name, []).append(m)
    merged = []
    for name, ms in by_name.items():
        note = ms[0].note if len(ms) == 1 else f"median of {len(ms)}; {ms[0].note}"
        merged.append(Measurement(name, median([m.value for m in ms]), ms[0].unit, note))
    return merged


def compute_ratios(results: Sequence[Measurement], ratios: Sequence[Ratio]) -> list[dict[str, Any]]:
    values = {m.name: m.value for m in results}
    out = []
    for r in ratios:
        num, den = values.get(r.numerator), values.get(r.denominator)
        if num is None or den is None or den == 0:
            continue
        out.append({**asdict(r), "value": round(num / den, 3)})
    return out


def check_targets(
    results: Sequence[Measurement], ratios: Sequence[dict[str, Any]], targets: Sequence[Target]
) -> list[dict[str, Any]]:
    """Each target whose measurement ran: met or not as stated and, for absolute targets whose reference
    baseline ran too, as scaled to this run's machine speed (see :class:`Target`)."""
    values = {m.name: m.value for m in results} | {f"ratio.{r['name']}": r["value"] for r in ratios}

    def met(measured: float, op: str, goal: float) -> bool:
        return measured >= goal if op == ">=" else measured <= goal

    out = []
    for t in targets:
        measured = values.get(t.measurement)
        if measured is None:
            continue
        row: dict[str, Any] = {**asdict(t), "measured": measured, "met": met(measured, t.op, t.value)}
        reference = values.get(t.reference) if t.reference else None
        if reference and t.reference_value:
            # This run's baseline over PERFORMANCE.md's: below 1 for a throughput on a slower machine, above 1
            # for a latency. Either way the target moves with the baseline.
            scale = reference / t.reference_value
            scaled = t.value * scale
            row.update(scale=round(scale, 3), scaled_value=round(scaled, 3), met_scaled=met(measured, t.op, scaled))
        out.append(row)
    return out


def format_targets(checks: Sequence[dict[str, Any]]) -> str:
    lines = ["", "targets (absolute ones also scaled by this run's baseline / PERFORMANCE.md's):"]
    for c in checks:
        line = (f"  issue {c['issue']}: {c['measurement']} {c['op']} {c['value']:,g} -> {c['measured']:,.3f}"
                f" {'met' if c['met'] else 'MISSED'}")
        if "scaled_value" in c:
            line += (f"; scaled x{c['scale']:.3f} (by {c['reference']}): {c['op']} {c['scaled_value']:,g}"
                     f" {'met' if c['met_scaled'] else 'MISSED'}")
        lines.append(line)
    return "\n".join(lines)


async def postgres_facts(db: Database) -> dict[str, str]:
    conn = await asyncpg.connect(**db.connect_kwargs())
    try:
        facts = {"postgres": await conn.fetchval("SHOW server_version")}
        for setting in ("shared_buffers", "synchronous_commit", "fsync", "max_connections"):
            facts[setting] = await conn.fetchval(f"SHOW {setting}")
        return facts
    finally:
        await conn.close()


async def drop_schema(db: Database) -> None:
    conn = await asyncpg.connect(**db.connect_kwargs())
    try:
        await schema.drop(conn)
    finally:
        await conn.close()


async def run_all(ctx: Context, benchmarks: Sequence[Benchmark], repeat: int) -> list[Measurement]:
    ctx.extra.update(await postgres_facts(ctx.db))
    results: list[Measurement] = []
    try:
        for bench in benchmarks:
            runs = []
            for i in range(repeat):
                t0 = time.perf_counter()
                runs.append(await bench.fn(ctx))
                print(
                    f"  {bench.name} run {i + 1}/{repeat}: {time.perf_counter() - t0:.1f}s", file=sys.stderr
                )
            results.extend(merge_repeats(runs))
    finally:
        await drop_schema(ctx.db)
    return results


def format_table(results: Sequence[Measurement], ratios: Sequence[dict[str, Any]]) -> str:
    rows = [("name", "value", "unit", "note")]
    rows += [(m.name, f"{m.value:,.3f}".rstrip("0").rstrip("."), m.unit, m.note) for m in results]
    rows += [
        (f"ratio.{r['name']}", f"{r['value']:.3f}", "x", f"{r['numerator']} / {r['denominator']}")
        for r in ratios
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
        if n == 0:
            lines.append("-" * (sum(widths) + 4 + 2 + max(len(r[3]) for r in rows)))
    return "\n".join(lines)


def write_json(
    path: Path,
    ctx: Context,
    args: argparse.Namespace,
    results: Sequence[Measurement],
    ratios: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": ctx.quick,
            "duration_s": ctx.duration,
            "repeat": args.repeat,
            "database": ctx.db.source,
            "loadgen": ctx.loadgen,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **ctx.extra,
        },
        "results": [asdict(m) for m in results],
        "ratios": list(ratios),
        "targets": list(targets),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    benchmarks = select(BENCHMARKS, args.only)
    if not benchmarks:
        print(f"no benchmark matches {args.only!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)

    with database() as db:
        ctx = Context(
            db=db, duration=args.duration, quick=args.quick, loadgen=args.loadgen or httpbench.loadgen_name()
        )
        print(
            f"database: {db.source}; {len(benchmarks)} benchmarks x {args.repeat}, "
            f"{args.duration:g}s each; load generator: {ctx.loadgen}",
            file=sys.stderr,
        )
        results = run_async(run_all(ctx, benchmarks, args.repeat))

    ratios = compute_ratios(results, RATIOS)
    targets = check_targets(results, ratios, TARGETS)
    print(format_table(results, ratios))
    if targets:
        print(format_targets(targets))
    write_json(args.output, ctx, args, results, ratios, targets)
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
