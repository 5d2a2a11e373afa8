"""What the payload codec costs: encode + decode of a write's typical payloads (the command, the
status a query returns) through the data converter, with the codec and without.

    .venv/bin/python -m bench.codec [--rounds 2000]

Prints microseconds per payload round trip and the ratio; the worker pays this per payload of
every activity, query and update (a write has ~15-20 payloads).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, WorkflowSerializationContext

from workers import samples
from workers.codec import writeback_data_converter
from workers.keys import LocalKeyProvider
from workflows.contract import Transition, WriteCommand, WriteState, WriteStatus


def payloads() -> dict[str, Any]:
    command = WriteCommand(
        tenant="bench", idempotency_key="k1", resource=samples.blood_pressure("p1", 120, 80)
    )
    now = datetime.now(UTC)
    status = WriteStatus(
        workflow_id=command.workflow_id,
        tenant="bench",
        state=WriteState.VERIFIED,
        transitions=[Transition(state=state, at=now) for state in WriteState][:6],
    )
    return {"command": command, "status": status}


async def round_trips(converter: DataConverter, value: Any, rounds: int) -> float:
    """Seconds per encode + decode: the best of 5 runs (the machine is shared)."""
    context = WorkflowSerializationContext(namespace="default", workflow_id="wb:bench:k1")
    converter = converter.with_context(context)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            encoded = await converter.encode([value])
            await converter.decode(encoded, [type(value)])
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


async def main(rounds: int) -> None:
    keys = LocalKeyProvider.generate()
    converters = {
        "no codec": pydantic_data_converter,
        "AES-GCM": writeback_data_converter(keys, compress=False),
        "zlib + AES-GCM": writeback_data_converter(keys),
    }
    print(f"{'payload':<10}{'bytes':>8}  " + "".join(f"{name:>18}" for name in converters))
    for name, value in payloads().items():
        size = len((await pydantic_data_converter.encode([value]))[0].data)
        times = {c: await round_trips(conv, value, rounds) for c, conv in converters.items()}
        base = times["no codec"]
        cells = "".join(f"{t * 1e6:>9.1f} µs {t / base:>4.2f}x" for t in times.values())
        print(f"{name:<10}{size:>8}  {cells}")
        stored = {
            c: len(
                (
                    await conv.with_context(
                        WorkflowSerializationContext(namespace="default", workflow_id="wb:bench:k1")
                    ).encode([value])
                )[0].SerializeToString()
            )
            for c, conv in converters.items()
        }
        print(f"{'':<10}{'stored':>8}  " + "".join(f"{b:>12} bytes" for b in stored.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
