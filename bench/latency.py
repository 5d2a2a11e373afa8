"""Latency at one write in flight: submit → ``verified``, against two same-run baselines.

Each round runs, in rotating order, one direct conditional create + read-back over HTTP to the
sandbox (what the EHR itself costs), one bare workflow of ClinicalWrite's shape with no-op steps
(what Temporal itself costs on this machine: the floor), and one writeback write. Interleaving
keeps the three exposed to the same background noise.

    python -m bench.latency [--quick] [--writes 50] [--warmup 5]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import httpx

from bench import history
from bench.cli import Benchmark, common_parser, run_alone
from bench.measure import ms, percentile
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from bench.writes import bare_write, direct_write, product_write, run_tag
from workflows.contract import WriteState, WriteStatus, workflow_id_for

TENANT = "bench-r4"
OVERHEAD_TARGET_MS = 100.0


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
    samples: dict[str, list[float]] = {"direct": [], "bare": [], "writeback": []}
    failures = 0
    product_keys: list[str] = []

    copy_checks: list[float] = []

    async def writeback(key: str) -> None:
        nonlocal failures
        status = await product_write(stack.client, TENANT, key)
        if status.state is not WriteState.VERIFIED:
            failures += 1
        if (seconds := copy_check_seconds(status)) is not None:
            copy_checks.append(seconds)

    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(options.warmup + options.writes):
            key = f"{tag}-{i}"
            calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("direct", partial(direct_write, http, base, TENANT, f"d{key}")),
                ("bare", partial(bare_write, stack.client.temporal, key)),
                ("writeback", partial(writeback, key)),
            ]
            for name, call in calls[i % 3 :] + calls[: i % 3]:
                elapsed = await _timed(call)
                if i >= options.warmup:
                    samples[name].append(elapsed)
                    if name == "writeback":
                        product_keys.append(key)

    timelines = [
        await history.timeline(stack.client.temporal, workflow_id_for(TENANT, key))
        for key in product_keys
    ]
    bare_timelines = [
        await history.timeline(stack.client.temporal, f"bare:{key}") for key in product_keys
    ]
    where = history.summarize(timelines, samples["writeback"])
    where_bare = history.summarize(bare_timelines, samples["bare"])
    requests = await requests_per_write(stack.sandbox_url, TENANT, tag, options)
    return _result(
        samples, failures, where, where_bare, options, copy_checks[-options.writes :], requests
    )


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


def _result(
    samples: dict[str, list[float]],
    failures: int,
    where: dict[str, object],
    where_bare: dict[str, object],
    options: LatencyOptions,
    copy_checks: list[float],
    requests: float | None,
) -> BenchResult:
    p50 = {name: ms(percentile(values, 50)) for name, values in samples.items()}
    p99 = {name: ms(percentile(values, 99)) for name, values in samples.items()}
    wb50, wb99, d50, d99, b50 = (
        p50["writeback"],
        p99["writeback"],
        p50["direct"],
        p99["direct"],
        p50["bare"],
    )
    overhead = None if wb50 is None or d50 is None else wb50 - d50
    figures = [
        Figure("p50 submit→verified", wb50, "ms", d50, "direct POST+GET", compare="diff"),
        Figure("p99 submit→verified", wb99, "ms", d99, "direct POST+GET p99", compare="diff"),
        Figure(
            "p50 overhead over direct",
            overhead,
            "ms",
            target=f"≤ {OVERHEAD_TARGET_MS:.0f} ms",
            met=None if overhead is None else overhead <= OVERHEAD_TARGET_MS,
        ),
        Figure("p50 vs bare Temporal floor", wb50, "ms", b50, "bare 3 LA + 3 act"),
        Figure("p99 bare Temporal floor", p99["bare"], "ms"),
        Figure(
            "p50 one-copy check (read-back → count)",
            ms(percentile(copy_checks, 50)),
            "ms",
            wb50,
            "p50 submit→verified",
            compare="ratio",
        ),
        Figure("EHR requests per verified write", requests, "", 2.0, "direct POST+GET"),
    ]
    gaps = where["ms_by_gap"]
    assert isinstance(gaps, dict)
    top = ", ".join(f"{kind} {value} ms" for kind, value in list(gaps.items())[:5])
    notes = [
        f"{options.writes} sequential writes after {options.warmup} warm-up; "
        f"{failures} not verified",
        f"history per write: {where['events']} events, {where['history_bytes']} bytes "
        f"(bare: {where_bare['events']}, {where_bare['history_bytes']} bytes); "
        f"median time by history gap: {top}",
    ]
    return BenchResult(
        name="latency",
        figures=figures,
        details={
            "p50_ms": p50,
            "p99_ms": p99,
            "samples_ms": {k: [round(v * 1000, 2) for v in vs] for k, vs in samples.items()},
            "not_verified": failures,
            "writeback_history": where,
            "bare_history": where_bare,
        },
        notes=notes,
    )


BENCHMARK = Benchmark("latency", "1 write in flight, vs direct HTTP and bare floor", tenants, run)


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
