"""Outage drain: writes queued through an EHR outage, then the recovery.

The sandbox answers 503 (with Retry-After: the seconds left) to every request of the tenant for
``--outage-seconds`` (its ``outage`` fault); ``--writes`` writes are submitted at the start of it.
They wait in Temporal, retrying with full jitter behind the tenant's circuit breaker and its rate
limit R. When the EHR comes back, the backlog should drain at R requests/s and not faster:

- drain time (outage end → last write verified) ÷ the ideal ``writes x 2 / R`` (2 EHR requests
  per write on a conditional-create tenant);
- the peak requests/s the sandbox saw, and any second above R;
- duplicates: resources per command identifier, counted in the sandbox's SQLite file;
- when the first and the median write reach ``verified`` after recovery (a write's read-back
  queues behind the backlog of writes on the tenant's rate-limited task queue).

    python -m bench.outage_drain [--quick] [--writes 1000] [--outage-seconds 60] [--rate 20]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.cli import Benchmark, common_parser, run_alone
from bench.ehr import RequestStats, resources_per_command
from bench.measure import run_many
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from bench.writes import command, run_tag
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteState, WriteStatus

TENANT = "bench-outage"
REQUESTS_PER_WRITE = 2


@dataclass(frozen=True)
class OutageOptions:
    writes: int = 1000
    outage_seconds: float = 60.0
    rate: float = 20.0

    @classmethod
    def quick(cls) -> OutageOptions:
        return cls(writes=100, outage_seconds=10.0)


def tenants(options: OutageOptions) -> Sequence[TenantSpec]:
    return [TenantSpec(TENANT, rate_limit=options.rate)]


async def _progress(stack: Stack, started: float, total: int) -> None:
    """A line every 15 s: what the EHR has seen so far."""
    while True:
        await asyncio.sleep(15)
        stats = await stack.admin.stats(TENANT)
        recent = stats.per_second[-2][1] if len(stats.per_second) > 1 else 0
        print(
            f"   +{time.time() - started:.0f}s: EHR saw {stats.total} requests "
            f"({recent}/s lately), expecting ≥ {total * REQUESTS_PER_WRITE} after the outage",
            flush=True,
        )


def _verified_at(status: WriteStatus) -> float | None:
    for transition in status.transitions:
        if transition.state is WriteState.VERIFIED:
            return transition.at.timestamp()
    return None


async def run(stack: Stack, options: OutageOptions) -> BenchResult:
    tag = run_tag()
    await stack.admin.reset(TENANT)
    started = time.time()
    await stack.admin.set_faults(
        TENANT, {"outage": {"seconds": options.outage_seconds, "status": 503}}
    )
    outage_end = started + options.outage_seconds
    progress = asyncio.create_task(_progress(stack, started, options.writes))
    try:
        submissions = await run_many(
            lambda i: stack.client.submit(command(TENANT, f"{tag}-{i}")), options.writes, 50
        )
        submitted = time.time() - started
        print(f"   {options.writes} writes submitted in {submitted:.1f}s", flush=True)

        async def result(i: int) -> WriteStatus:
            workflow_id = submissions[i].workflow_id
            handle = stack.client.temporal.get_workflow_handle_for(ClinicalWrite.run, workflow_id)
            return await handle.result()

        statuses = await run_many(result, options.writes, 50)
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
    await stack.admin.clear_faults(TENANT)
    stats = await stack.admin.stats(TENANT)
    counts = resources_per_command(stack.sandbox_db, TENANT, f"{tag}-")
    return _result(options, statuses, stats, counts, outage_end, submitted)


def _result(
    options: OutageOptions,
    statuses: list[WriteStatus],
    stats: RequestStats,
    counts: Counter[str],
    outage_end: float,
    submitted: float,
) -> BenchResult:
    states = Counter(s.state.value for s in statuses)
    verified_at = [t for s in statuses if (t := _verified_at(s)) is not None]
    drain = max(verified_at) - outage_end if verified_at else None
    ideal = options.writes * REQUESTS_PER_WRITE / options.rate
    after = stats.since(outage_end)
    seconds_above, requests_above = stats.above(options.rate)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    missing = options.writes - len(counts)
    attempts = [s.attempts for s in statuses]
    since_recovery = sorted(t - outage_end for t in verified_at)
    first = since_recovery[0] if since_recovery else None
    median = statistics.median(since_recovery) if since_recovery else None
    figures = [
        Figure("drain time after recovery", drain, "s", ideal, "ideal writes·2/R"),
        Figure("first write verified after recovery", first, "s"),
        Figure("median write verified after recovery", median, "s", ideal / 2, "ideal / 2"),
        Figure("peak EHR requests in one second", stats.peak, "", options.rate, "R"),
        Figure("seconds above R", seconds_above, "s", target="0", met=seconds_above == 0),
        Figure("requests above R", requests_above, "", target="0", met=requests_above == 0),
        Figure("EHR requests per write after recovery", after.total / options.writes, "", 2, "2"),
        Figure("duplicate resources", duplicates, "", target="0", met=duplicates == 0),
        Figure(
            "writes not verified",
            options.writes - states.get("verified", 0),
            "",
            target="0",
            met=states.get("verified", 0) == options.writes,
        ),
    ]
    return BenchResult(
        name="outage_drain",
        figures=figures,
        details={
            "writes": options.writes,
            "outage_seconds": options.outage_seconds,
            "rate": options.rate,
            "submit_seconds": round(submitted, 2),
            "states": dict(states),
            "drain_seconds": drain,
            "ideal_drain_seconds": ideal,
            "first_verified_after_outage_s": first,
            "median_verified_after_outage_s": median,
            "ehr_requests_total": stats.total,
            "ehr_requests_by_method": stats.by_method,
            "ehr_requests_after_outage": after.total,
            "steady_rate_after_outage": round(after.steady_rate(), 2),
            "attempts_per_write": {
                "mean": round(statistics.fmean(attempts), 2) if attempts else None,
                "max": max(attempts, default=None),
            },
            "duplicates": duplicates,
            "commands_without_resource": missing,
            "per_second": stats.per_second,
        },
        notes=[
            f"{options.writes} writes through a {options.outage_seconds:g} s outage (sandbox "
            f"`outage` fault, 503 + Retry-After), R={options.rate:g}/s: states {dict(states)}; "
            f"EHR requests {stats.total} in all ({stats.by_method}), {after.total} after "
            f"recovery at {after.steady_rate():.1f}/s steady; write attempts per write mean "
            f"{statistics.fmean(attempts) if attempts else 0:.2f}, max {max(attempts, default=0)}",
            f"EHR requests per second from recovery on (R={options.rate:g}): {after.series()}",
        ],
    )


BENCHMARK = Benchmark("outage_drain", "writes queued through an EHR outage", tenants, run)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int)
    parser.add_argument("--outage-seconds", type=float)
    parser.add_argument("--rate", type=float, help="the tenant's rate limit R (requests/s)")
    args = parser.parse_args()
    options = OutageOptions.quick() if args.quick else OutageOptions()
    options = OutageOptions(
        writes=args.writes or options.writes,
        outage_seconds=args.outage_seconds or options.outage_seconds,
        rate=args.rate or options.rate,
    )
    return run_alone(BENCHMARK, options, args)


if __name__ == "__main__":
    sys.exit(main())
