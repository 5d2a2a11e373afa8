"""Latency at one write in flight: submit → ``verified``, against same-run baselines.

Each round runs, in rotating order, one direct conditional create + read-back over HTTP to the
sandbox (what the EHR itself costs), one minimal durable workflow (start + one no-op activity:
the least Temporal costs), one bare workflow of ClinicalWrite's shape with no-op steps (what the
shape costs), one write through the hand-built outbox (bench/outbox.py, 1 exchange at a time;
submit→done from its row's timestamps), one writeback write, and one writeback write started
eagerly by a process that runs the workers itself (bench/in_process.py). Interleaving keeps them
exposed to the same background noise.

    python -m bench.latency [--quick] [--writes 50] [--warmup 5]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import httpx

from bench import history, outbox
from bench.cli import Benchmark, common_parser, run_alone
from bench.in_process import in_process_writeback
from bench.measure import ms, percentile
from bench.report import BenchResult, Figure, within
from bench.stack import Stack, TenantSpec
from bench.writes import (
    bare_write,
    direct_write,
    minimal_write,
    outbox_write,
    product_write,
    run_tag,
)
from workers.client import WritebackClient
from workflows.contract import WriteState, WriteStatus, workflow_id_for

TENANT = "bench-r4"
P50_OVER_DIRECT_MS = 100.0
P99_OVER_DIRECT_MS = 150.0
REQUESTS_PER_WRITE = 2.0
"""A conditional-create tenant: the POST (If-None-Exist) and the read-back GET."""
VARIANTS = ("direct", "minimal", "bare", "outbox", "writeback", "eager")


@dataclass(frozen=True)
class LatencyOptions:
    writes: int = 50
    warmup: int = 5

    @classmethod
    def quick(cls) -> LatencyOptions:
        return cls(writes=10, warmup=2)


def tenants(_: LatencyOptions) -> Sequence[TenantSpec]:
    return [TenantSpec(TENANT)]


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await call()
    return time.perf_counter() - began


async def run(stack: Stack, options: LatencyOptions) -> BenchResult:
    tag = run_tag()
    base = stack.fhir_base(TENANT)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    failures = 0
    product_keys: list[str] = []

    copy_checks: list[float] = []

    async def writeback(client: WritebackClient, key: str) -> float:
        nonlocal failures
        began = time.perf_counter()
        status = await product_write(client, TENANT, key)
        elapsed = time.perf_counter() - began
        if status.state is not WriteState.VERIFIED:
            failures += 1
        if client is stack.client and (seconds := copy_check_seconds(status)) is not None:
            copy_checks.append(seconds)
        return elapsed

    async def through_outbox(box: outbox.Outbox, key: str) -> float:
        nonlocal failures
        done = await outbox_write(box, base, TENANT, key)
        failures += not done.ok
        return done.seconds

    temporal = stack.client.temporal
    async with (
        httpx.AsyncClient(timeout=30) as http,
        outbox.running(stack.workdir, 1) as box,
        in_process_writeback(stack) as eager,
    ):
        for i in range(options.warmup + options.writes):
            key = f"{tag}-{i}"
            calls: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                ("direct", partial(_timed, partial(direct_write, http, base, TENANT, f"d{key}"))),
                ("minimal", partial(_timed, partial(minimal_write, temporal, key))),
                ("bare", partial(_timed, partial(bare_write, temporal, key))),
                ("outbox", partial(through_outbox, box, f"o{key}")),
                ("writeback", partial(writeback, stack.client, key)),
                ("eager", partial(writeback, eager, f"e{key}")),
            ]
            turn = i % len(calls)
            for name, call in calls[turn:] + calls[:turn]:
                elapsed = await call()
                if i >= options.warmup:
                    samples[name].append(elapsed)
                    if name == "writeback":
                        product_keys.append(key)

    wheres = {
        name: history.summarize(
            [await history.timeline(temporal, workflow_id(key)) for key in product_keys],
            samples[name],
        )
        for name, workflow_id in (
            ("writeback", partial(workflow_id_for, TENANT)),
            ("eager", lambda key: workflow_id_for(TENANT, f"e{key}")),
            ("minimal", "minimal:{}".format),
            ("bare", "bare:{}".format),
        )
    }
    requests = await requests_per_write(stack.sandbox_url, TENANT, tag, options)
    return _result(samples, failures, wheres, options, copy_checks[-options.writes :], requests)


def copy_check_seconds(status: WriteStatus) -> float | None:
    """From the read-back's answer to the one-copy search's (workflow time, ehr_log)."""
    at = {exchange.step: exchange.at for exchange in status.ehr_log}
    if "verify" not in at or "copies" not in at:
        return None
    return (at["copies"] - at["verify"]).total_seconds()


async def requests_per_write(
    sandbox_url: str, tenant: str, tag: str, options: LatencyOptions
) -> float | None:
    """EHR requests the sandbox logged for writeback's measured writes (X-Request-Id names the
    write), per write."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as http:
        logged = (await http.get(f"/_admin/requests/{tenant}")).json()["requests"]
    measured = {
        f"{tenant}:{tag}-{i}" for i in range(options.warmup, options.warmup + options.writes)
    }
    hits = [
        r
        for r in logged
        if (r.get("request_id") or "").split("/")[0].removeprefix("wb:") in measured
    ]
    return len(hits) / options.writes if hits else None


def figures(
    samples: dict[str, list[float]], copy_checks: list[float], requests: float | None
) -> list[Figure]:
    """The table's rows from the seconds each variant took (``VARIANTS``), the one-copy checks'
    seconds and writeback's EHR requests per verified write."""
    p50 = {name: ms(percentile(values, 50)) for name, values in samples.items()}
    p99 = {name: ms(percentile(values, 99)) for name, values in samples.items()}
    wb50, wb99 = p50["writeback"], p99["writeback"]
    return [
        *_over_direct(p50, p99, "writeback"),
        *_over_direct(p50, p99, "eager", ", eager start in the submitting process"),
        Figure("p50 vs minimal workflow", wb50, "ms", p50["minimal"], "start + 1 activity"),
        Figure("p50 vs shape floor", wb50, "ms", p50["bare"], "bare 3 LA + 3 act"),
        Figure("p50 vs hand-built outbox", wb50, "ms", p50["outbox"], "outbox submit→done"),
        Figure("p99 vs hand-built outbox", wb99, "ms", p99["outbox"], "outbox p99"),
        Figure(
            "p50 one-copy check (read-back → count)",
            ms(percentile(copy_checks, 50)),
            "ms",
            wb50,
            "p50 submit→verified",
        ),
        Figure(
            "EHR requests per verified write",
            requests,
            "",
            REQUESTS_PER_WRITE,
            "conditional create",
            target=f"≤ {REQUESTS_PER_WRITE:g}",
            met=None if requests is None else requests <= REQUESTS_PER_WRITE,
        ),
    ]


def _over_direct(
    p50: dict[str, float | None], p99: dict[str, float | None], variant: str, label: str = ""
) -> list[Figure]:
    """A variant's p50 and p99 submit→verified against the direct POST+GET's, with the targets."""
    return [
        within(
            Figure(
                f"p50 submit→verified{label}",
                p50[variant],
                "ms",
                p50["direct"],
                "direct",
                compare="diff",
            ),
            P50_OVER_DIRECT_MS,
        ),
        within(
            Figure(
                f"p99 submit→verified{label}",
                p99[variant],
                "ms",
                p99["direct"],
                "direct p99",
                compare="diff",
            ),
            P99_OVER_DIRECT_MS,
        ),
    ]


def _top(where: dict[str, object]) -> str:
    """The five largest median gaps of a variant's histories."""
    gaps = where["ms_by_gap"]
    assert isinstance(gaps, dict)
    return ", ".join(f"{kind} {value} ms" for kind, value in list(gaps.items())[:5])


def _result(
    samples: dict[str, list[float]],
    failures: int,
    wheres: dict[str, dict[str, object]],
    options: LatencyOptions,
    copy_checks: list[float],
    requests: float | None,
) -> BenchResult:
    where = wheres["writeback"]
    top = _top(where)
    shapes = "; ".join(
        f"{name}: {wheres[name]['events']}, {wheres[name]['history_bytes']} bytes"
        for name in ("minimal", "bare")
    )
    notes = [
        f"{options.writes} sequential writes after {options.warmup} warm-up; "
        f"{failures} not verified (writeback) or not done (outbox)",
        f"history per write: {where['events']} events, {where['history_bytes']} bytes "
        f"({shapes}); median time by history gap: {top}",
        f"eager start in the submitting process, median time by history gap: "
        f"{_top(wheres['eager'])}",
    ]
    return BenchResult(
        name="latency",
        figures=figures(samples, copy_checks, requests),
        details={
            "p50_ms": {name: ms(percentile(values, 50)) for name, values in samples.items()},
            "p99_ms": {name: ms(percentile(values, 99)) for name, values in samples.items()},
            "samples_ms": {k: [round(v * 1000, 2) for v in vs] for k, vs in samples.items()},
            "not_verified": failures,
            **{f"{name}_history": value for name, value in wheres.items()},
        },
        notes=notes,
    )


BENCHMARK = Benchmark(
    "latency", "1 write in flight, vs direct HTTP, Temporal and an outbox", tenants, run
)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int)
    parser.add_argument("--warmup", type=int)
    args = parser.parse_args()
    options = LatencyOptions.quick() if args.quick else LatencyOptions()
    options = LatencyOptions(
        writes=args.writes or options.writes,
        warmup=options.warmup if args.warmup is None else args.warmup,
    )
    return run_alone(BENCHMARK, options, args)


if __name__ == "__main__":
    sys.exit(main())
