"""The ways a benchmark writes a heart rate: through writeback, through the Temporal baselines
(bench/bare.py), and straight to the sandbox over HTTP (POST + GET, what writeback's activities
send). The hand-built outbox's writes are in bench/outbox.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from bench.bare import MINIMAL_WORKFLOW_NAME, WORKFLOW_NAME
from bench.exchange import create_and_read
from bench.outbox import Done, Outbox
from bench.stack import BARE_QUEUE
from workers import samples
from workers.client import WritebackClient
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteCommand, WriteStatus

#: One fixed time for every resource, so that every write sends the same bytes.
_WHEN = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)


def run_tag() -> str:
    """A fresh prefix for idempotency keys: runs against the same servers never collide."""
    return f"r{uuid.uuid4().hex[:8]}"


def command(tenant: str, key: str) -> WriteCommand:
    return WriteCommand(
        tenant=tenant,
        idempotency_key=key,
        resource=samples.heart_rate("bench", 72, _WHEN),
        requested_by="bench",
    )


async def product_write(client: WritebackClient, tenant: str, key: str) -> WriteStatus:
    """Submit one write and wait for its result (the workflow's return, not polling)."""
    submission = await client.submit(command(tenant, key))
    handle = client.temporal.get_workflow_handle_for(ClinicalWrite.run, submission.workflow_id)
    return await handle.result()


async def bare_write(temporal: Client, key: str) -> str:
    """The floor of ClinicalWrite's shape (bench/bare.py ``BareWrite``), id ``bare:key``."""
    return await _baseline(temporal, WORKFLOW_NAME, f"bare:{key}", key)


async def minimal_write(temporal: Client, key: str) -> str:
    """The minimal durable workflow (bench/bare.py ``MinimalWrite``), id ``minimal:key``."""
    return await _baseline(temporal, MINIMAL_WORKFLOW_NAME, f"minimal:{key}", key)


async def _baseline(temporal: Client, workflow: str, workflow_id: str, key: str) -> str:
    handle = await temporal.start_workflow(
        workflow, key, id=workflow_id, task_queue=BARE_QUEUE, result_type=str
    )
    return str(await handle.result())


def direct_body(tenant: str, key: str) -> dict[str, Any]:
    """The body writeback sends for ``command(tenant, key)``: the resource plus the command
    identifier (adapters/fhir_r4.py)."""
    body = samples.heart_rate("bench", 72, _WHEN)
    body["identifier"] = [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": f"{tenant}:{key}"}]
    return body


async def direct_write(http: httpx.AsyncClient, base_url: str, tenant: str, key: str) -> None:
    """Conditional create then read back, as writeback does for an r4 tenant."""
    await create_and_read(http, base_url, direct_body(tenant, key), f"{tenant}:{key}")


async def outbox_write(box: Outbox, base_url: str, tenant: str, key: str) -> Done:
    """The same resource and identifier as ``direct_write``, through the hand-built outbox."""
    return await box.write(base_url, direct_body(tenant, key), f"{tenant}:{key}")
