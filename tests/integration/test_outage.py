"""Issue 4, acceptance 5: 300 writes in flight through a 30 s EHR outage. Afterwards retries are
spread out (no synchronized burst), the tenant's rate limit is never exceeded, and every write
ends verified exactly once. The sandbox counts what it received per second."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration

TENANT, RATE_LIMIT, WRITES, OUTAGE_SECONDS = "outage-r4", 20, 300, 30


async def test_outage_drains_spread_out_within_the_rate_limit_exactly_once(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient
) -> None:
    await faults.post(f"/_admin/reset/{TENANT}")
    await faults.post(
        f"/_admin/faults/{TENANT}", json={"outage": {"seconds": OUTAGE_SECONDS, "status": 503}}
    )
    run = uuid.uuid4().hex[:6]
    commands = [
        WriteCommand(
            tenant=TENANT,
            idempotency_key=f"out-{run}-{n}",
            resource=samples.heart_rate(f"out-{run}-{n}", 60 + n % 40),
        )
        for n in range(WRITES)
    ]
    await asyncio.gather(*(writeback.submit(cmd) for cmd in commands))
    finals = await asyncio.wait_for(
        asyncio.gather(*(writeback.wait(cmd.workflow_id, poll_seconds=1.0) for cmd in commands)),
        timeout=300,
    )
    stats = (await faults.get(f"/_admin/stats/{TENANT}")).json()
    histogram = [(second["t"], second["total"]) for second in stats["per_second"]]
    print("EHR requests per second:", [count for _, count in histogram])

    assert [status.state for status in finals] == [WriteState.VERIFIED] * WRITES
    copies = [resources_for_command(ehr.db, TENANT, cmd.command_identifier) for cmd in commands]
    assert copies == [1] * WRITES
    # the rate limit held in every second, across the outage and the recovery
    assert stats["max_per_second"] <= RATE_LIMIT
    # during the outage the circuit breaker kept the retries away from the EHR
    start = histogram[0][0]
    during = sum(count for t, count in histogram if t < start + OUTAGE_SECONDS)
    assert during < WRITES / 2, f"{during} requests hit the EHR during the outage"
    # and the recovery was not one synchronized burst: it took several seconds at most R each
    after = [count for t, count in histogram if t >= start + OUTAGE_SECONDS]
    assert sum(after) >= 2 * WRITES and len([c for c in after if c > 0]) >= 2 * WRITES / RATE_LIMIT
