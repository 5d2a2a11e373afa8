"""What proving the caller costs per write (README, Security: "Callers"): the client signs the
command once; the worker builds what the credential must prove once (workflow code) and verifies
it once (the pure steps, run as one: CommandSteps.prepare); the credential rides in the command's
payload.

    .venv/bin/python -m bench.callers [--rounds 2000] [--write-cpu-ms 47.1]

Prints µs per write for each part, their sum for the worker and for the client, the extra bytes
and codec time of the command payload, and the share of a write's CPU (worker + server) —
``--write-cpu-ms``, default the throughput benchmark's last figure at 50 in flight (README,
Benchmarks). The budget for the checks added by issue #17 is 5% of a write.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.converter import WorkflowSerializationContext

from adapters.caller_keys import load_callers, new_private_key, registry_entry
from adapters.callers import CallerSigner, expected, verify, write_binding
from workers import samples
from workers.codec import writeback_data_converter
from workers.keys import LocalKeyProvider
from workflows.contract import WriteCommand

#: throughput benchmark, CPU of worker + server per write at 50 in flight (README, Benchmarks)
WRITE_CPU_MS = 47.1


def best_of(rounds: int, step: Callable[[], Any]) -> float:
    """Seconds per call: the best of 5 runs (the machine is shared)."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            step()
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


async def codec_seconds(command: WriteCommand, rounds: int) -> tuple[float, int]:
    """Seconds per encode + decode of ``command`` through the product's converter, and its size."""
    converter = writeback_data_converter(LocalKeyProvider.generate()).with_context(
        WorkflowSerializationContext(namespace="default", workflow_id=command.workflow_id)
    )
    size = len((await converter.encode([command]))[0].data)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            await converter.decode(await converter.encode([command]), [WriteCommand])
        best = min(best, (time.perf_counter() - started) / rounds)
    return best, size


Costs = dict[str, float]


async def caller_costs(rounds: int) -> tuple[Costs, Costs, tuple[int, int]]:
    """Seconds per write of each part of proving the caller, the client's and the worker's, and
    the command payload's size without and with its credential."""
    key = new_private_key()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "callers.toml"
        path.write_text(registry_entry("nursing-app", key))
        registry = load_callers(path)
    signer = CallerSigner(key)
    command = WriteCommand(
        tenant="bench",
        idempotency_key="k1",
        resource=samples.blood_pressure("p1", 120, 80),
        requested_by="nursing-app",
        on_behalf_of="Practitioner/1",
        role="nurse",
        purpose="TREAT",
    )
    signed = command.model_copy(update={"credential": signer.sign(write_binding(command))})
    now = datetime.now(UTC)
    check = expected(write_binding(signed), signed.workflow_id, now)

    client = {
        "bind + sign (client)": best_of(rounds, lambda: signer.sign(write_binding(command))),
    }
    worker = {
        "bind (workflow)": best_of(
            rounds, lambda: expected(write_binding(signed), signed.workflow_id, now)
        ),
        "verify (prepare)": best_of(rounds, lambda: verify(registry, signed.credential, check)),
    }
    plain_codec, plain_size = await codec_seconds(command, rounds)
    signed_codec, signed_size = await codec_seconds(signed, rounds)
    # the command is encoded or decoded ~4 times per write (start, first task, details queries)
    worker["command payload x4 (codec)"] = 4 * (signed_codec - plain_codec)

    return client, worker, (plain_size, signed_size)


async def main(rounds: int, write_cpu_ms: float) -> None:
    client, worker, (plain_size, signed_size) = await caller_costs(rounds)
    for name, seconds in {**client, **worker}.items():
        print(f"{name:<36}{seconds * 1e6:>9.1f} µs")
    worker_total = sum(worker.values())
    print(f"{'worker, per write':<36}{worker_total * 1e6:>9.1f} µs")
    print(f"{'client, per write':<36}{sum(client.values()) * 1e6:>9.1f} µs")
    print(f"command payload: {plain_size} -> {signed_size} bytes (+{signed_size - plain_size})")
    share = worker_total * 1e3 / write_cpu_ms
    print(
        f"worker share of a write's CPU ({write_cpu_ms:g} ms, worker + server): {share:.2%} "
        f"({'within' if share <= 0.05 else 'OVER'} the 5% budget)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--write-cpu-ms", type=float, default=WRITE_CPU_MS)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.write_cpu_ms))
