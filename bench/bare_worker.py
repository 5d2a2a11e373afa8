"""``python -m bench.bare_worker``: a worker process for the Temporal baselines (bench/bare.py: the
minimal durable workflow and the floor of ClinicalWrite's shape).

Reads ``TEMPORAL_ADDRESS`` and ``BENCH_BARE_QUEUE``; prints ``worker ready`` once polling; stops on
SIGTERM/SIGINT. A process of its own so that its CPU time can be read like the product worker's.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import AsyncExitStack

from temporalio.worker import Worker

from bench.bare import BareWrite, MinimalWrite, activity_queue, noop
from workers.temporal_client import connect


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(os.environ["TEMPORAL_ADDRESS"], wait_seconds=30)
    queue = os.environ["BENCH_BARE_QUEUE"]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            Worker(client, task_queue=queue, workflows=[BareWrite, MinimalWrite], activities=[noop])
        )
        await stack.enter_async_context(
            Worker(client, task_queue=activity_queue(queue), activities=[noop])
        )
        print(f"worker ready on task queue '{queue}'", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
