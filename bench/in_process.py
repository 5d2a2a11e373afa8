"""writeback's workers inside the benchmark's own process, started eagerly: what a service that
hosts the workers where it submits gets (``WritebackClient(eager_start=True)``).

With eager workflow start the server hands a new write's first workflow task back in the answer
to the start call, to a worker on the same client and task queue, and the write's later tasks stay
with that worker (sticky): one dispatch fewer than a start that waits for a worker to poll. The
workers here get a task queue of their own, so the out-of-process worker never takes their tasks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.tenants import load_tenants
from bench.stack import Stack
from workers.client import WritebackClient
from workers.worker import ehr_http_client, running_workers

IN_PROCESS_QUEUE = "bench-writeback-in-process"


@asynccontextmanager
async def in_process_writeback(stack: Stack) -> AsyncIterator[WritebackClient]:
    """The product's workers running in this process for the stack's tenants, and a client on
    the same Temporal connection that starts writes eagerly."""
    tenants = load_tenants(stack.workdir / "tenants.toml")
    temporal = stack.client.temporal
    async with (
        ehr_http_client() as http,
        running_workers(temporal, tenants, http, IN_PROCESS_QUEUE),
    ):
        yield WritebackClient(
            temporal, IN_PROCESS_QUEUE, signer=stack.client.signer, eager_start=True
        )
