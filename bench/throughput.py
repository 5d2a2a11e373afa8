"""Throughput: verified writes/s with N writes in flight, and the CPU each one costs.

At each concurrency level a closed loop keeps N writes in flight (a new one starts as soon as one
ends). Measuring starts once every slot has cycled once; CPU seconds of the worker process and of
the Temporal server (from /proc) over the window, divided by the writes verified in it, give the
CPU per write. The same loop at the same concurrency runs three baselines:

- the minimal durable workflow (start + one no-op activity, bench/bare.py), CPU of the bare
  worker + the Temporal server per completion: the targets are set against it;
- the floor of ClinicalWrite's shape (3 local activities + 3 activities, no-op), measured the
  same way: what the shape costs;
- the hand-built outbox (bench/outbox.py) with as many exchanges at a time as writes in flight,
  CPU of its worker process per completion: what a user would build instead.

``--seconds`` per level and variant are split into ``--rounds`` windows; the variants take turns
in each round (in reverse order every other round), so that a change in background load (other
processes on the machine) hits them alike.

    python -m bench.throughput [--quick] [--levels 50,200] [--seconds 12] [--rounds 2]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bench import history, outbox
from bench.cli import Benchmark, common_parser, run_alone
from bench.measure import LoopResult, closed_loop, merge, ms, percentile, run_many
from bench.report import BenchResult, Figure, at_least, at_most
from bench.stack import Stack, TenantSpec
from bench.writes import bare_write, minimal_write, outbox_write, product_write, run_tag
from workflows.contract import WriteState, workflow_id_for

TENANT = "bench-r4"
RATE_TARGET = 0.8
"""writeback's verified writes/s ≥ this x the minimal workflow's completions/s."""
CPU_TARGET = 1.25
"""writeback's worker + server CPU per verified write ≤ this x the minimal workflow's."""
VARIANTS = ("minimal", "bare", "outbox", "writeback")
#: the processes whose CPU is each variant's own
OWN_CPU = {
    "writeback": ("worker", "temporal"),
    "minimal": ("bare_worker", "temporal"),
    "bare": ("bare_worker", "temporal"),
    "outbox": ("outbox",),
}
Operation = Callable[[int], Awaitable[bool]]


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


def _offset(operation: Operation, offset: int) -> Operation:
    """``operation`` numbered from ``offset``: every phase writes under keys of its own."""
    return lambda i: operation(offset + i)


def cpu_ms(loop: LoopResult, *processes: str) -> float | None:
    if not loop.completed:
        return None
    return sum(loop.cpu.get(p, 0.0) for p in processes) / loop.completed * 1000


async def run(stack: Stack, options: ThroughputOptions) -> BenchResult:
    tag = run_tag()
    temporal = stack.client.temporal
    started: dict[str, list[str]] = {"minimal": [], "bare": [], "writeback": []}

    async def writeback(i: int) -> bool:
        started["writeback"].append(workflow_id_for(TENANT, f"{tag}-{i}"))
        status = await product_write(stack.client, TENANT, f"{tag}-{i}")
        return status.state is WriteState.VERIFIED

    async def minimal(i: int) -> bool:
        started["minimal"].append(f"minimal:{tag}-{i}")
        await minimal_write(temporal, f"{tag}-{i}")
        return True

    async def bare(i: int) -> bool:
        started["bare"].append(f"bare:{tag}-{i}")
        await bare_write(temporal, f"{tag}-{i}")
        return True

    # warm the workers (imports, connections, caches) before anything is measured; the outbox
    # starts afresh for each window and warms up in the loop's first cycle
    for warm in (writeback, minimal, bare):
        await run_many(_offset(warm, 10**9), options.warmup_writes, 5)

    operations = {"minimal": minimal, "bare": bare, "writeback": writeback}
    figures: list[Figure] = []
    details: dict[str, object] = {}
    notes: list[str] = []
    for level in options.levels:
        for ids in started.values():
            ids.clear()
        loops = await _measure_level(stack, level, options, operations, tag)
        health = {w: await _task_health(stack, ids) for w, ids in started.items()}
        figures += level_figures(level, loops)
        details[f"in_flight_{level}"] = {
            **{which: _loop_json(loop) for which, loop in loops.items()},
            "history_sample": health,
        }
        notes.append(_cpu_note(level, loops))
        notes.append(
            f"history sample at {level} in flight (events per workflow, workflow task timeouts "
            f"and failures): {health}"
        )
    return BenchResult(name="throughput", figures=figures, details=details, notes=notes)


@asynccontextmanager
async def _variant(
    stack: Stack, which: str, level: int, operations: Mapping[str, Operation], tag: str
) -> AsyncIterator[tuple[Operation, Callable[[], dict[str, float]]]]:
    """The operation of one variant and the CPU readings of its window. The outbox's worker
    process runs for its own windows only, with ``level`` exchanges at a time."""
    if which != "outbox":
        yield operations[which], stack.cpu
        return
    async with outbox.running(stack.workdir, level) as box:

        async def write(i: int) -> bool:
            done = await outbox_write(box, stack.fhir_base(TENANT), TENANT, f"o{tag}-{i}")
            return done.ok

        yield write, lambda: {**stack.cpu(), "outbox": box.cpu()}


async def _measure_level(
    stack: Stack,
    level: int,
    options: ThroughputOptions,
    operations: Mapping[str, Operation],
    tag: str,
) -> dict[str, LoopResult]:
    """Every variant at ``level`` in flight, each over ``options.rounds`` windows."""
    loops: dict[str, list[LoopResult]] = {which: [] for which in VARIANTS}
    window = options.seconds / options.rounds
    for round_ in range(options.rounds):
        # alternate the order, so that all see the same drift in background load
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for which in order:
            print(f"   {level} in flight, round {round_ + 1}: {which}…", flush=True)
            offset = (level * 100 + round_) * 10**5
            async with _variant(stack, which, level, operations, tag) as (operation, cpu):
                loop = await closed_loop(_offset(operation, offset), level, window, cpu)
            loops[which].append(loop)
    return {which: merge(windows) for which, windows in loops.items()}


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


def _cpu_note(level: int, loops: Mapping[str, LoopResult]) -> str:
    parts = []
    for which, loop in loops.items():
        processes = (*OWN_CPU[which], "sandbox", "bench")
        shown = ", ".join(f"{p} {cpu_ms(loop, p) or 0:.1f}" for p in processes)
        parts.append(f"{which}: {shown}")
    return f"CPU ms per write at {level} in flight, by process: " + "; ".join(parts)


def level_figures(level: int, loops: Mapping[str, LoopResult]) -> list[Figure]:
    """The table's rows for one level from each variant's loop (``VARIANTS``); CPU per write is
    each variant's own processes' (``OWN_CPU``)."""
    rate = {which: loop.per_second for which, loop in loops.items()}
    cpu = {which: cpu_ms(loop, *OWN_CPU[which]) for which, loop in loops.items()}
    p50 = {which: ms(percentile(loop.latencies, 50)) for which, loop in loops.items()}
    at = f"{level} in flight"
    wb_rate, wb_cpu = rate["writeback"], cpu["writeback"]
    minimal, floor, box = "minimal workflow", "shape floor", "hand-built outbox"
    return [
        at_least(Figure(f"writes/s, {at}", wb_rate, "/s", rate["minimal"], minimal), RATE_TARGET),
        Figure(f"writes/s vs {floor}, {at}", wb_rate, "/s", rate["bare"], floor),
        Figure(f"writes/s vs {box}, {at}", wb_rate, "/s", rate["outbox"], box),
        Figure(f"p50 latency, {at}", p50["writeback"], "ms", p50["minimal"], minimal),
        at_most(
            Figure(f"CPU worker+server per write, {at}", wb_cpu, "ms", cpu["minimal"], minimal),
            CPU_TARGET,
        ),
        Figure(f"CPU per write vs {floor}, {at}", wb_cpu, "ms", cpu["bare"], floor),
        Figure(f"CPU per write vs {box}, {at}", wb_cpu, "ms", cpu["outbox"], "outbox process"),
    ]


def _loop_json(loop: LoopResult) -> dict[str, object]:
    processes = ("worker", "bare_worker", "outbox", "temporal", "sandbox", "bench")
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
            if p in loop.cpu and (v := cpu_ms(loop, p) or 0.0) >= 0.05
        },
    }


BENCHMARK = Benchmark("throughput", "writes/s at N in flight, CPU per write", tenants, run)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--levels", help="comma-separated concurrency levels, e.g. 50,200")
    parser.add_argument("--seconds", type=float, help="measured seconds per level and variant")
    parser.add_argument("--rounds", type=int, help="windows per level, variants taking turns")
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
