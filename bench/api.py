"""The HTTP API's cost: writes/s and p50 latency through ``writeback api`` against the same
writes through the Temporal client (``WritebackClient``), in the same run, on the same tenant,
stack and worker.

An API write is ``POST /fhir/{tenant}/Observation`` with an Idempotency-Key and
``Prefer: wait=60`` (answered 201 once verified); a client write is ``submit`` + the workflow's
result (bench/writes.py). Throughput: a closed loop at ``--level`` in flight, in ``--rounds``
windows alternating API and client. Latency: one write at a time, alternating. The API process
signs for its client ``bench`` with a caller key of its own, which the worker's registry holds.

    python -m bench.api [--quick] [--level 20] [--seconds 10] [--writes 40]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from adapters.caller_keys import new_private_key, private_pem
from bench.cli import Benchmark, common_parser, run_alone
from bench.measure import LoopResult, closed_loop, merge, ms, percentile
from bench.procs import Child, spawn
from bench.report import BenchResult, Figure
from bench.stack import PRODUCT_QUEUE, ROOT, Stack, TenantSpec, free_port
from bench.writes import command, product_write, run_tag
from workers.api.config import load_api_config
from workers.api.dev_setup import load_private, mint_token, new_issuer, registry
from workers.api_cli import API_READY
from workflows.contract import WriteState

TENANT = "bench-api"
RATIO_TARGET = 0.9
OVERHEAD_TARGET_MS = 10.0
CLIENT = """
[[client]]
id = "bench"
tenants = ["bench-api"]
scopes = ["system/Observation.cu"]
requests_per_second = 100000
burst = 100000
"""


@dataclass(frozen=True)
class ApiOptions:
    level: int = 20
    seconds: float = 10.0
    rounds: int = 2
    writes: int = 40
    warmup: int = 5
    directory: str = ""
    """The API's config directory (made by ``prepare``)."""

    @classmethod
    def quick(cls) -> ApiOptions:
        return cls(level=10, seconds=3.0, rounds=1, writes=10, warmup=2)


def prepare(directory: Path) -> Path:
    """The API's config, issuer and caller key in ``directory``; returns the registry that
    holds its caller key for its client (for the worker)."""
    new_issuer(directory)
    (directory / "api-caller.pem").write_bytes(private_pem(new_private_key()))
    (directory / "api.toml").write_text(
        'issuer = "https://issuer.bench"\naudience = "writeback-bench"\n'
        'jwks_file = "jwks.json"\ncaller_key_file = "api-caller.pem"\n' + CLIENT
    )
    config = load_api_config(directory / "api.toml")
    (directory / "callers.toml").write_text(registry(config, load_private(config.caller_key_file)))
    return directory / "callers.toml"


def tenants(_: ApiOptions) -> Sequence[TenantSpec]:
    return [TenantSpec(TENANT)]


def _start_api(stack: Stack, directory: Path) -> tuple[Child, str]:
    target = stack.client.temporal.service_client.config.target_host
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEMPORAL_ADDRESS": target,
        "WRITEBACK_TASK_QUEUE": PRODUCT_QUEUE,
    }
    cmd = [sys.executable, "-m", "workers", "api", "--port", str(free_port())]
    cmd += ["--config", str(directory / "api.toml")]
    cmd += ["--tenants", str(stack.workdir / "tenants.toml")]
    child = spawn("api", cmd, stack.workdir / "logs", env, ROOT)
    stack.children["api"] = child
    return child, child.wait_for(API_READY + r" (\S+)", 60).group(1)


async def _listening(http: httpx.AsyncClient) -> None:
    """The API prints ready from its lifespan, just before uvicorn binds its socket."""
    for _ in range(100):
        try:
            await http.get("/healthz")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not listen")


async def run(stack: Stack, options: ApiOptions) -> BenchResult:
    directory = Path(options.directory)
    child, url = _start_api(stack, directory)
    token = mint_token(
        directory / "issuer.pem", load_api_config(directory / "api.toml"), "bench",
        ["system/Observation.cu"],
    )  # fmt: skip
    tag = run_tag()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Prefer": "wait=60",
    }
    try:
        async with httpx.AsyncClient(base_url=url, timeout=90) as http:
            await _listening(http)

            async def api(i: int) -> bool:
                answer = await http.post(
                    f"/fhir/{TENANT}/Observation",
                    json=command(TENANT, "x").resource,
                    headers={**headers, "Idempotency-Key": f"{tag}-a{i}"},
                )
                return answer.status_code == 201

            async def client(i: int) -> bool:
                status = await product_write(stack.client, TENANT, f"{tag}-c{i}")
                return status.state is WriteState.VERIFIED

            operations = {"api": api, "client": client}
            for i in range(options.warmup * 4):  # warm both paths and the API's connections
                await operations["api" if i % 2 else "client"](10**9 + i)
            loops = await _throughput(stack, options, operations)
            latency = await _latency(options, operations)
    finally:
        child.stop()
        del stack.children["api"]
    return _result(loops, latency, options)


async def _throughput(
    stack: Stack, options: ApiOptions, operations: Mapping[str, Callable[[int], Awaitable[bool]]]
) -> dict[str, LoopResult]:
    loops: dict[str, list[LoopResult]] = {"api": [], "client": []}
    for round_ in range(options.rounds):
        order = ("api", "client") if round_ % 2 == 0 else ("client", "api")
        for which in order:
            print(f"   {options.level} in flight, round {round_ + 1}: {which}…", flush=True)
            offset = (round_ + 1) * 10**6

            def operation(i: int, which: str = which, offset: int = offset) -> Awaitable[bool]:
                return operations[which](offset + i)

            window = options.seconds / options.rounds
            loops[which].append(await closed_loop(operation, options.level, window, stack.cpu))
    return {which: merge(found) for which, found in loops.items()}


async def _latency(
    options: ApiOptions, operations: Mapping[str, Callable[[int], Awaitable[bool]]]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"api": [], "client": []}
    for i in range(options.writes):
        order = ("api", "client") if i % 2 == 0 else ("client", "api")
        for which in order:
            began = time.perf_counter()
            if await operations[which](i):
                samples[which].append(time.perf_counter() - began)
    return samples


def _result(
    loops: dict[str, LoopResult], latency: dict[str, list[float]], options: ApiOptions
) -> BenchResult:
    api, client = loops["api"], loops["client"]
    ratio = api.per_second / client.per_second if client.per_second else None
    p50 = {which: ms(percentile(values, 50)) for which, values in latency.items()}
    overhead = None if p50["api"] is None or p50["client"] is None else p50["api"] - p50["client"]
    figures = [
        Figure(
            f"writes/s through the API, {options.level} in flight",
            api.per_second,
            "/s",
            client.per_second,
            "Temporal client",
            target=f"≥ {RATIO_TARGET} x client",
            met=None if ratio is None else ratio >= RATIO_TARGET,
        ),
        Figure(
            f"p50 latency, {options.level} in flight",
            ms(percentile(api.latencies, 50)),
            "ms",
            ms(percentile(client.latencies, 50)),
            "Temporal client",
        ),
        Figure("p50 submit→verified, one at a time", p50["api"], "ms", p50["client"], "client"),
        Figure(
            "p50 API overhead, one at a time",
            overhead,
            "ms",
            target=f"≤ {OVERHEAD_TARGET_MS:.0f} ms",
            met=None if overhead is None else overhead <= OVERHEAD_TARGET_MS,
        ),
    ]
    failed = {which: loop.failed for which, loop in loops.items()}
    api_cpu = api.cpu.get("api", 0.0) / api.completed * 1000 if api.completed else 0.0
    notes = [
        f"throughput over {api.window_seconds:.0f} s per path; failed in the windows: {failed}",
        f"the API process's own CPU: {api_cpu:.1f} ms per write (the machine is CPU-bound: "
        "the worker and Temporal share the same cores)",
        f"latency: {options.writes} writes per path, alternating, after warm-up",
    ]
    details = {
        "per_second": {which: round(loop.per_second, 2) for which, loop in loops.items()},
        "p50_ms_one_at_a_time": p50,
        "samples_ms": {k: [round(v * 1000, 2) for v in vs] for k, vs in latency.items()},
    }
    return BenchResult(name="api", figures=figures, details=details, notes=notes)


BENCHMARK = Benchmark("api", "writes through the HTTP API vs the Temporal client", tenants, run)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, help="writes in flight for the throughput loop")
    parser.add_argument("--seconds", type=float, help="measured seconds per path")
    parser.add_argument("--writes", type=int, help="sequential writes per path for latency")
    args = parser.parse_args()
    defaults = ApiOptions.quick() if args.quick else ApiOptions()
    with tempfile.TemporaryDirectory(prefix="writeback-bench-api-") as directory:
        options = ApiOptions(
            level=args.level or defaults.level,
            seconds=args.seconds or defaults.seconds,
            rounds=defaults.rounds,
            writes=args.writes or defaults.writes,
            warmup=defaults.warmup,
            directory=directory,
        )
        callers = prepare(Path(directory))
        return run_alone(BENCHMARK, options, args, callers=callers)


if __name__ == "__main__":
    sys.exit(main())
