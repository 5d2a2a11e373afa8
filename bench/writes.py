"""The three ways a benchmark writes a heart rate: through writeback, through the bare floor
workflow, and straight to the sandbox over HTTP (POST + GET, what writeback's activities send)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.client import Client

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, FHIR_JSON
from bench.bare import WORKFLOW_NAME
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
    handle = await temporal.start_workflow(
        WORKFLOW_NAME, key, id=f"bare:{key}", task_queue=BARE_QUEUE, result_type=str
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
    body = direct_body(tenant, key)
    created = await http.post(
        f"{base_url}/Observation",
        json=body,
        headers={
            "Content-Type": FHIR_JSON,
            "Accept": FHIR_JSON,
            "If-None-Exist": "identifier="
            + quote(f"{COMMAND_IDENTIFIER_SYSTEM}|{tenant}:{key}", safe=""),
        },
    )
    if created.status_code not in (200, 201):
        raise RuntimeError(f"direct POST answered {created.status_code}")
    resource_id = created.json()["id"] if created.content else _id_from(created)
    read = await http.get(f"{base_url}/Observation/{resource_id}", headers={"Accept": FHIR_JSON})
    if read.status_code != 200:
        raise RuntimeError(f"direct GET answered {read.status_code}")


def _id_from(response: httpx.Response) -> str:
    location = response.headers["Location"]
    return location.split("/Observation/", 1)[1].split("/", 1)[0]
