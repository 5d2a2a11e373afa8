"""``python -m bench [--quick] [--only NAME ...]``: every benchmark on one fresh stack, then one
table (printed, and saved with the raw figures to bench/results/latest.md and latest.json)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from typing import Any

from bench import ehr_bound, latency, outage_drain, readme_table, reconcile_cost, throughput
from bench.cli import print_results, timed
from bench.report import BenchResult, save
from bench.stack import TenantSpec, open_stack

NAMES = ("latency", "throughput", "ehr_bound", "outage_drain", "reconcile_cost")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    quick: bool = args.quick
    outage = outage_drain.OutageOptions.quick() if quick else outage_drain.OutageOptions()
    outage = outage_drain.OutageOptions(
        writes=args.outage_writes or outage.writes,
        outage_seconds=args.outage_seconds or outage.outage_seconds,
        rate=outage.rate,
    )
    return {
        "latency": latency.LatencyOptions.quick() if quick else latency.LatencyOptions(),
        "throughput": (
            throughput.ThroughputOptions.quick() if quick else throughput.ThroughputOptions()
        ),
        "ehr_bound": ehr_bound.EhrBoundOptions.quick() if quick else ehr_bound.EhrBoundOptions(),
        "outage_drain": outage,
        "reconcile_cost": (
            reconcile_cost.ReconcileOptions.quick() if quick else reconcile_cost.ReconcileOptions()
        ),
    }


async def run_all(
    names: list[str], options: dict[str, Any], keep: bool, bytecode_cache: bool
) -> list[BenchResult]:
    benches: dict[str, Any] = {
        "latency": latency.BENCHMARK,
        "throughput": throughput.BENCHMARK,
        "ehr_bound": ehr_bound.BENCHMARK,
        "outage_drain": outage_drain.BENCHMARK,
        "reconcile_cost": reconcile_cost.BENCHMARK,
    }
    tenants: list[TenantSpec] = []
    for name in names:
        tenants += benches[name].tenants(options[name])
    results = []
    async with open_stack(tenants, keep=keep, bytecode_cache=bytecode_cache) as stack:
        for name in names:
            result = await timed(benches[name], stack, options[name])
            print(f"   done in {result.seconds:.0f}s", flush=True)
            results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs: a short smoke run")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run only these benchmarks")
    parser.add_argument("--outage-writes", type=int, help="writes queued through the outage")
    parser.add_argument("--outage-seconds", type=float, help="length of the EHR outage")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    parser.add_argument(
        "--readme", action="store_true", help="rewrite README.md's table with this run's figures"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="workers compile modules from source on every import (see stack.worker_environment)",
    )
    args = parser.parse_args()
    names = [n for n in NAMES if not args.only or n in args.only]
    options = _options(args)
    began = time.monotonic()
    results = asyncio.run(run_all(names, options, args.keep, args.bytecode_cache))
    print_results(results)
    saved = {
        "quick": args.quick,
        "bytecode_cache": args.bytecode_cache,
        **{n: asdict(options[n]) for n in names},
    }
    json_path, md_path = save("latest", results, saved)
    print(f"all done in {time.monotonic() - began:.0f}s; wrote {json_path} and {md_path}")
    if args.readme:
        print(f"rewrote the table in {readme_table.update(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
