"""Health and shutdown (issue 10): a `writeback worker` process reports ready on /readyz, turns
not-ready on SIGTERM while it finishes the EHR request in flight, and exits 0; the write is then
completed by another worker with exactly one request and one resource in the EHR."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from support.audit import resources_for_command
from support.ports import free_port
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.worker_process import WorkerProcess
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration

TENANT = "demo-r4"


async def test_sigterm_drains_the_request_in_flight_and_reports_not_ready(
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    tenants_file: Path,
    faults: httpx.AsyncClient,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    task_queue = f"drain-{uuid.uuid4().hex[:8]}"
    address = temporal_address(dev_server)
    client = WritebackClient(dev_server.client, task_queue=task_queue)
    port = free_port()
    worker = WorkerProcess(
        address, task_queue, tenants_file, tmp_path / "w1.log", {"WRITEBACK_HEALTH_PORT": str(port)}
    )
    worker_processes.append(worker)
    probes = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2)
    assert (await probes.get("/readyz")).status_code == 200
    assert (await probes.get("/livez")).status_code == 200

    async def posts_received() -> int:
        stats = (await faults.get(f"/_admin/stats/{TENANT}")).json()
        return int(stats["by_method"].get("POST", 0))

    await faults.post(f"/_admin/faults/{TENANT}", json={"latency_ms": 2500})
    posts_before = await posts_received()
    key = f"drain-{uuid.uuid4().hex[:10]}"
    cmd = WriteCommand(tenant=TENANT, idempotency_key=key, resource=samples.heart_rate(key, 66))
    await client.submit(cmd)
    # the sandbox counts a request when it arrives (its answer comes 2.5 s later)
    for _ in range(300):
        if await posts_received() > posts_before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the create never reached the EHR")

    worker.proc.terminate()
    readiness = []
    while worker.proc.poll() is None:
        try:
            readiness.append((await probes.get("/readyz")).status_code)
        except httpx.TransportError:
            break
        await asyncio.sleep(0.05)
    await asyncio.to_thread(worker.proc.wait, 30)
    await probes.aclose()
    assert 503 in readiness, readiness
    assert worker.proc.returncode == 0

    await faults.post(f"/_admin/faults/{TENANT}", json={"latency_ms": 0})
    worker_processes.append(WorkerProcess(address, task_queue, tenants_file, tmp_path / "w2.log"))
    final = await asyncio.wait_for(client.wait(cmd.workflow_id), timeout=60)
    assert final.state is WriteState.VERIFIED
    assert resources_for_command(ehr.db, TENANT, cmd.command_identifier) == 1
    log = (await faults.get(f"/_admin/requests/{TENANT}")).json()["requests"]
    posts = [
        r
        for r in log
        if r["method"] == "POST" and (r["request_id"] or "").startswith(cmd.workflow_id)
    ]
    assert len(posts) == 1, posts  # the in-flight create finished; nothing was re-sent


async def test_worker_serves_its_metrics_for_prometheus(
    dev_server: WorkflowEnvironment,
    tenants_file: Path,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    task_queue = f"prom-{uuid.uuid4().hex[:8]}"
    client = WritebackClient(dev_server.client, task_queue=task_queue)
    port = free_port()
    worker_processes.append(
        WorkerProcess(
            temporal_address(dev_server),
            task_queue,
            tenants_file,
            tmp_path / "w.log",
            {"WRITEBACK_METRICS_PORT": str(port)},
        )
    )
    key = f"prom-{uuid.uuid4().hex[:10]}"
    cmd = WriteCommand(tenant=TENANT, idempotency_key=key, resource=samples.heart_rate(key, 64))
    await client.submit(cmd)
    assert (await client.wait(cmd.workflow_id)).state is WriteState.VERIFIED

    async with httpx.AsyncClient(timeout=5) as http:
        scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    wanted = ('tenant="demo-r4"', 'vendor="generic_r4"', 'resource_type="Observation"')
    verified = [
        line
        for line in scraped.splitlines()
        if line.startswith("writeback_writes_total{") and 'state="verified"' in line
    ]
    assert len(verified) == 1 and all(label in verified[0] for label in wanted), verified
    assert verified[0].endswith(" 1.0")
    assert "writeback_time_to_verified_seconds_count{" in scraped
    assert 'writeback_ehr_request_duration_seconds_count{error_class="none"' in scraped
    assert "Patient" not in scraped
