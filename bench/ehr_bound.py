"""EHR-bound: a tenant limited to R requests/s whose EHR answers in 300 ms gets a burst of writes.

The tenant's ``rate_limit_per_second = R`` becomes the rate limit of its EHR task queue, enforced
by the Temporal server; the sandbox adds 300 ms to every FHIR request. ``--factor`` x R writes are
submitted at once. Each write makes 2 EHR requests on this conditional-create tenant (POST, GET),
so the ideal is 2 x writes / R seconds at exactly R requests/s. The sandbox's own per-second count
(``GET /_admin/stats/{tenant}``) is the evidence: achieved rate ÷ R, and any second above R.

    python -m bench.ehr_bound [--quick] [--rate 10] [--factor 20] [--latency-ms 300]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.cli import Benchmark, common_parser, run_alone
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from bench.writes import command, run_tag
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteState

TENANT = "bench-limited"
REQUESTS_PER_WRITE = 2


@dataclass(frozen=True)
class EhrBoundOptions:
    rate: float = 10.0
    factor: int = 20
    latency_ms: int = 300

    @classmethod
    def quick(cls) -> EhrBoundOptions:
        return cls(factor=4)

    @property
    def writes(self) -> int:
        return int(self.factor * self.rate)


def tenants(options: EhrBoundOptions) -> Sequence[TenantSpec]:
    return [TenantSpec(TENANT, rate_limit=options.rate)]


async def run(stack: Stack, options: EhrBoundOptions) -> BenchResult:
    tag = run_tag()
    await stack.admin.reset(TENANT)
    await stack.admin.set_faults(TENANT, {"latency_ms": options.latency_ms})
    began = time.monotonic()
    commands = [command(TENANT, f"{tag}-{i}") for i in range(options.writes)]
    submissions = await asyncio.gather(*(stack.client.submit(c) for c in commands))
    submitted = time.monotonic() - began
    statuses = await asyncio.gather(
        *(
            stack.client.temporal.get_workflow_handle_for(ClinicalWrite.run, s.workflow_id).result()
            for s in submissions
        )
    )
    elapsed = time.monotonic() - began
    await stack.admin.clear_faults(TENANT)
    stats = await stack.admin.stats(TENANT)
    verified = sum(1 for s in statuses if s.state is WriteState.VERIFIED)
    ideal = options.writes * REQUESTS_PER_WRITE / options.rate
    seconds_above, requests_above = stats.above(options.rate)
    achieved = stats.steady_rate()
    figures = [
        Figure(
            "EHR requests/s (steady) vs limit R",
            achieved,
            "/s",
            options.rate,
            "R",
            target="≤ R, close to R",
            met=achieved <= options.rate,
        ),
        Figure("seconds above R", seconds_above, "s", target="0", met=seconds_above == 0),
        Figure("requests above R", requests_above, "", target="0", met=requests_above == 0),
        Figure("peak requests in one second", stats.peak, "", options.rate, "R"),
        Figure("time for all writes", elapsed, "s", ideal, "ideal 2·writes/R"),
    ]
    return BenchResult(
        name="ehr_bound",
        figures=figures,
        details={
            "writes": options.writes,
            "verified": verified,
            "submit_seconds": round(submitted, 2),
            "elapsed_seconds": round(elapsed, 2),
            "ehr_requests": stats.total,
            "ehr_requests_by_method": stats.by_method,
            "requests_per_write": round(stats.total / options.writes, 3),
            "per_second": stats.per_second,
        },
        notes=[
            f"{options.writes} writes at once to a tenant limited to R={options.rate:g}/s with "
            f"{options.latency_ms} ms EHR latency: {verified} verified; the EHR saw "
            f"{stats.total} requests {stats.by_method} over {stats.busy_span()} s",
            f"EHR requests per second (R={options.rate:g}): {stats.series()}",
        ],
    )


BENCHMARK = Benchmark("ehr_bound", "rate-limited tenant with a slow EHR", tenants, run)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, help="the tenant's rate limit R (requests/s)")
    parser.add_argument("--factor", type=int, help="writes = factor x R")
    parser.add_argument("--latency-ms", type=int, help="latency the sandbox adds per request")
    args = parser.parse_args()
    options = EhrBoundOptions.quick() if args.quick else EhrBoundOptions()
    options = EhrBoundOptions(
        rate=args.rate or options.rate,
        factor=args.factor or options.factor,
        latency_ms=options.latency_ms if args.latency_ms is None else args.latency_ms,
    )
    return run_alone(BENCHMARK, options, args)


if __name__ == "__main__":
    sys.exit(main())
