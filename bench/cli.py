"""Running one benchmark on its own: ``python -m bench.<name> [--quick] [its flags]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.report import RESULTS, BenchResult, save, table
from bench.stack import Stack, TenantSpec, open_stack

OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Benchmark(Generic[OptionsT]):
    name: str
    summary: str
    tenants: Callable[[OptionsT], Sequence[TenantSpec]]
    run: Callable[[Stack, OptionsT], Awaitable[BenchResult]]


async def timed(bench: Benchmark[OptionsT], stack: Stack, options: OptionsT) -> BenchResult:
    print(f"== {bench.name}: {bench.summary}", flush=True)
    began = time.monotonic()
    result = await bench.run(stack, options)
    result.seconds = time.monotonic() - began
    return result


def print_results(results: list[BenchResult]) -> None:
    print()
    print(table(results))
    for result in results:
        for note in result.notes:
            print(f"- {result.name}: {note}")


def common_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller run (smoke test)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, databases) after the run"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="workers compile modules from source on every import (see stack.worker_environment)",
    )
    return parser


def run_alone(
    bench: Benchmark[OptionsT],
    options: OptionsT,
    args: argparse.Namespace,
    profile: bool = False,
    callers: Path | None = None,
) -> int:
    """Start a stack, run ``bench``, print its figures, save ``results/{name}.json|md``
    (and, with ``profile``, the worker's CPU profile: ``results/{name}_worker_profile.json``).
    ``callers``: another caller registry for the worker (bench/stack.py ``open_stack``)."""
    profile_to = RESULTS / f"{bench.name}_worker_profile.json" if profile else None
    if profile_to is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        profile_to.unlink(missing_ok=True)

    async def go() -> BenchResult:
        tenants = bench.tenants(options)
        async with open_stack(
            tenants, args.keep, profile_to, args.bytecode_cache, callers
        ) as stack:
            return await timed(bench, stack, options)

    result = asyncio.run(go())
    print_results([result])
    if profile_to is not None:
        print_profile(profile_to)
    opts: dict[str, Any] = asdict(options)  # type: ignore[call-overload]
    opts["bytecode_cache"] = args.bytecode_cache
    json_path, md_path = save(bench.name, [result], opts)
    print(f"wrote {json_path} and {md_path}")
    return 0


def print_profile(path: Path) -> None:
    """The worker's CPU by thread kind and by package (shares of all its sampled CPU ticks)."""
    if not path.exists():
        print(f"no worker profile at {path} (did the worker stop cleanly?)")
        return
    data = json.loads(path.read_text())
    print(f"\nworker CPU profile over {data['seconds']} s ({path}):")
    print(f"  python samples: {data['python_samples']}")
    sections = ("cpu_ticks_by_thread", "python_busy_by_part", "python_busy_by_leaf")
    for section in sections:
        top = list(data[section].items())[:12]
        print(f"  {section}: " + ", ".join(f"{k} {v:.0%}" for k, v in top))
