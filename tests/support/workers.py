"""Running the real worker in-process for a test, on a task queue of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client

from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workers.worker import ehr_http_client, running_workers


@asynccontextmanager
async def running_worker(client: Client, tenants: TenantRegistry) -> AsyncIterator[WritebackClient]:
    """Start a worker on a fresh task queue; yield a WritebackClient that submits to it."""
    task_queue = f"test-{uuid.uuid4().hex[:8]}"
    async with ehr_http_client() as http, running_workers(client, tenants, http, task_queue):
        yield WritebackClient(client, task_queue=task_queue)
