"""``writeback api --workers``: the API process runs the workers itself and starts writes eagerly
(workers/api/app.py). With no other worker anywhere on its task queue, a write over HTTP is
verified, every workflow task of it was run by the API's own process, and the process exports the
workers' metrics as `writeback worker` does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.api_process import ApiProcess, write_api_config, write_worker_registry
from support.ports import free_port
from support.temporal import temporal_address
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from adapters.caller_keys import CALLER_KEYS_ENV
from workers import samples

pytestmark = pytest.mark.integration

TENANT = "demo-r4"
API_CLIENTS = """
[[client]]
id = "api-app"
tenants = ["demo-r4"]
scopes = ["system/*.cu"]
requests_per_second = 50
burst = 200
"""


@pytest.fixture(scope="module")
def api_with_workers(
    dev_server: WorkflowEnvironment, tenants_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiProcess, int]]:
    """An API process with ``--workers`` on a task queue nobody else polls, and its metrics
    port."""
    base = tmp_path_factory.mktemp("api-workers")
    config = write_api_config(base / "api", API_CLIENTS)
    registry = write_worker_registry(base / "callers", config)
    metrics_port = free_port()
    process = ApiProcess(
        temporal_address(dev_server),
        f"api-workers-{uuid.uuid4().hex[:8]}",
        base / "api",
        tenants_file,
        free_port(),
        "--workers",
        env={CALLER_KEYS_ENV: str(registry), "WRITEBACK_METRICS_PORT": str(metrics_port)},
    )
    try:
        yield process, metrics_port
    finally:
        process.stop()


async def test_a_write_over_http_is_verified_by_the_apis_own_workers(
    api_with_workers: tuple[ApiProcess, int], dev_server: WorkflowEnvironment, key: str
) -> None:
    api, metrics_port = api_with_workers
    token = api.token("api-app", "system/Observation.cu", user="Practitioner/7")
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Idempotency-Key": key,
        "Prefer": "wait=30",
    }
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        answer = await http.post(
            f"/fhir/{TENANT}/Observation", json=samples.heart_rate("api-w", 70), headers=headers
        )
        scraped = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert answer.status_code == 201, answer.text
    verified = [
        line
        for line in scraped.splitlines()
        if line.startswith("writeback_writes_total{") and 'state="verified"' in line
    ]
    assert verified and 'tenant="demo-r4"' in verified[0], scraped[:500]

    # no other worker polls the queue, so the write was verified by the API's process; the
    # workflow tasks it took carry its identity (the server may record one without an identity)
    handle = dev_server.client.get_workflow_handle(f"wb:{TENANT}:{key}")
    identities = {
        event.workflow_task_started_event_attributes.identity
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    }
    named = {identity for identity in identities if identity}
    assert named and all(i.startswith(f"{api.proc.pid}@") for i in named), identities
