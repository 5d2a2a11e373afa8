"""Throughput: verified writes/s with N writes in flight, and the CPU each one costs.

At each concurrency level a closed loop keeps N writes in flight (a new one starts as soon as one
ends). Measuring starts once every slot has cycled once; CPU seconds of the worker process and of
the Temporal server (from /proc) over the window, divided by the writes verified in it, give the
CPU per write. The same loop over the bare floor workflow at the same concurrency is the
baseline: it shows what Temporal alone manages on this machine. ``--seconds`` per level and
variant are split into ``--rounds`` windows that alternate bare and writeback, so that a change
in background load (other processes on the machine) hits both alike.

    python -m bench.throughput [--quick] [--levels 50,200] [--seconds 12] [--rounds 2]
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bench import history
from bench.cli import Benchmark, common_parser, run_alone
from bench.measure import LoopResult, closed_loop, merge, ms, percentile, run_many
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from bench.writes import bare_write, product_write, run_tag
from workflows.contract import WriteState, workflow_id_for

TENANT = "bench-r4"
RATIO_TARGET = 0.8
CPU_TARGET_MS = 40.0


@dataclass(frozen=True)
class ThroughputOptions:
    levels: tuple[int, ...] = (50, 200)
    seconds: float = 12.0
    """Measured seconds per level and variant, split over ``rounds`` alternating windows."""
    rounds: int = 2
    warmup_writes: int = 20

    @classmethod
    def quick(cls) -> ThroughputOptions:
        return cls(levels=(10, 50), seconds=3.0, rounds=1, warmup_writes=5)


def tenants(_: ThroughputOptions) -> Sequence[TenantSpec]:
    return [TenantSpec(TENANT)]


def _offset(
    operation: Callable[[int], Awaitable[bool]], offset: int
) -> Callable[[int], Awaitable[bool]]:
    """``operation`` numbered from ``offset``: every phase writes under keys of its own."""
    return lambda i: operation(offset + i)


def _cpu_ms(loop: LoopResult, *processes: str) -> float | None:
    if not loop.completed:
        return None
    return sum(loop.cpu.get(p, 0.0) for p in processes) / loop.completed * 1000


async def run(stack: Stack, options: ThroughputOptions) -> BenchResult:
    tag = run_tag()

    started: dict[str, list[str]] = {"bare": [], "writeback": []}

    async def writeback(i: int) -> bool:
        started["writeback"].append(workflow_id_for(TENANT, f"{tag}-{i}"))
        status = await product_write(stack.client, TENANT, f"{tag}-{i}")
        return status.state is WriteState.VERIFIED

    async def bare(i: int) -> bool:
        started["bare"].append(f"bare:{tag}-{i}")
        await bare_write(stack.client.temporal, f"{tag}-{i}")
        return True

    # warm both workers (imports, connections, caches) before anything is measured
    await run_many(_offset(writeback, 10**9), options.warmup_writes, 5)
    await run_many(_offset(bare, 10**9), options.warmup_writes, 5)

    operations = {"bare": bare, "writeback": writeback}
    figures: list[Figure] = []
    details: dict[str, object] = {}
    notes: list[str] = []
    for level in options.levels:
        for ids in started.values():
            ids.clear()
        wb, floor = await _measure_level(stack, level, options, operations)
        health = {w: await _task_health(stack, ids) for w, ids in started.items()}
        figures += _figures(level, wb, floor)
        details[f"in_flight_{level}"] = {
            "writeback": _loop_json(wb),
            "bare": _loop_json(floor),
            "history_sample": health,
        }
        notes.append(_cpu_note(level, wb, floor))
        notes.append(
            f"history sample at {level} in flight (events per workflow, workflow task timeouts "
            f"and failures): {health}"
        )
    return BenchResult(name="throughput", figures=figures, details=details, notes=notes)


async def _measure_level(
    stack: Stack,
    level: int,
    options: ThroughputOptions,
    operations: Mapping[str, Callable[[int], Awaitable[bool]]],
) -> tuple[LoopResult, LoopResult]:
    """(writeback, bare) at ``level`` in flight, each over ``options.rounds`` windows."""
    loops: dict[str, list[LoopResult]] = {"bare": [], "writeback": []}
    window = options.seconds / options.rounds
    for round_ in range(options.rounds):
        # alternate which goes first, so that both see the same drift in background load
        order = ("bare", "writeback") if round_ % 2 == 0 else ("writeback", "bare")
        for which in order:
            print(f"   {level} in flight, round {round_ + 1}: {which}…", flush=True)
            offset = (level * 100 + round_) * 10**5
            operation = _offset(operations[which], offset)
            loops[which].append(await closed_loop(operation, level, window, stack.cpu))
    return merge(loops["writeback"]), merge(loops["bare"])


async def _task_health(stack: Stack, workflow_ids: list[str], size: int = 20) -> dict[str, float]:
    """Over ``size`` workflows spread across the level: mean history events, and workflow tasks
    that timed out or failed (under overload, a sticky task that waits too long times out and the
    workflow is replayed from its full history: extra CPU on both sides)."""
    step = max(1, len(workflow_ids) // size)
    sample = workflow_ids[::step][:size]
    timelines = [await history.timeline(stack.client.temporal, wid) for wid in sample]
    if not timelines:
        return {}
    return {
        "events": round(sum(t.events for t in timelines) / len(timelines), 1),
        "history_bytes": round(sum(t.size for t in timelines) / len(timelines)),
        "task_timeouts": sum(t.counts["WORKFLOW_TASK_TIMED_OUT"] for t in timelines),
        "task_failures": sum(t.counts["WORKFLOW_TASK_FAILED"] for t in timelines),
    }


def _cpu_note(level: int, wb: LoopResult, floor: LoopResult) -> str:
    parts = []
    for which, loop, processes in (
        ("writeback", wb, ("worker", "temporal", "sandbox", "bench")),
        ("bare", floor, ("bare_worker", "temporal", "sandbox", "bench")),
    ):
        shown = ", ".join(f"{p} {_cpu_ms(loop, p) or 0:.1f}" for p in processes)
        parts.append(f"{which}: {shown}")
    return f"CPU ms per write at {level} in flight, by process: " + "; ".join(parts)


def _figures(level: int, wb: LoopResult, floor: LoopResult) -> list[Figure]:
    ratio = wb.per_second / floor.per_second if floor.per_second else None
    wb_cpu = _cpu_ms(wb, "worker", "temporal")
    floor_cpu = _cpu_ms(floor, "bare_worker", "temporal")
    return [
        Figure(
            f"writes/s, {level} in flight",
            wb.per_second,
            "/s",
            floor.per_second,
            "bare floor",
            target=f"≥ {RATIO_TARGET} x floor",
            met=None if ratio is None else ratio >= RATIO_TARGET,
        ),
        Figure(
            f"p50 latency, {level} in flight",
            ms(percentile(wb.latencies, 50)),
            "ms",
            ms(percentile(floor.latencies, 50)),
            "bare floor",
        ),
        Figure(
            f"CPU worker+server per write, {level} in flight",
            wb_cpu,
            "ms",
            floor_cpu,
            "bare floor",
            target=f"≤ {CPU_TARGET_MS:.0f} ms",
            met=None if wb_cpu is None else wb_cpu <= CPU_TARGET_MS,
        ),
    ]


def _loop_json(loop: LoopResult) -> dict[str, object]:
    processes = ("worker", "bare_worker", "temporal", "sandbox", "bench")
    return {
        "completed": loop.completed,
        "failed": loop.failed,
        "window_seconds": round(loop.window_seconds, 2),
        "warmup_seconds": round(loop.warmup_seconds, 2),
        "per_second": round(loop.per_second, 2),
        "p50_ms": ms(percentile(loop.latencies, 50)),
        "p99_ms": ms(percentile(loop.latencies, 99)),
        "cpu_seconds": {k: round(v, 3) for k, v in loop.cpu.items()},
        "cpu_ms_per_write": {
            p: round(v, 1)
            for p in processes
            if p in loop.cpu and (v := _cpu_ms(loop, p) or 0.0) >= 0.05
        },
    }


BENCHMARK = Benchmark("throughput", "writes/s at N in flight, CPU per write", tenants, run)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--levels", help="comma-separated concurrency levels, e.g. 50,200")
    parser.add_argument("--seconds", type=float, help="measured seconds per level and variant")
    parser.add_argument("--rounds", type=int, help="alternating bare/writeback windows per level")
    parser.add_argument("--profile-worker", action="store_true", help="sample the worker CPU")
    args = parser.parse_args()
    options = ThroughputOptions.quick() if args.quick else ThroughputOptions()
    options = ThroughputOptions(
        levels=tuple(int(x) for x in args.levels.split(",")) if args.levels else options.levels,
        seconds=args.seconds or options.seconds,
        rounds=args.rounds or options.rounds,
        warmup_writes=options.warmup_writes,
    )
    return run_alone(BENCHMARK, options, args, args.profile_worker)


if __name__ == "__main__":
    sys.exit(main())
