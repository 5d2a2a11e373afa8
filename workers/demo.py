"""The scripted demo behind ``writeback demo``: a few synthetic vital signs per demo tenant, one
command submitted twice at once, one invalid Observation, a lab panel saga (workers/demo_sagas.py)
and one write through the HTTP API (a dev token for ``dev-app``, ``Prefer: wait``); then a table
of what happened."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.tenants import load_tenants
from workers import samples
from workers.api.config import load_api_config
from workers.api.dev_setup import DEV_APP, mint_token
from workers.client import WritebackClient
from workers.demo_sagas import write_lab_panel
from workers.devstack import StackConfig
from workers.settings import TASK_QUEUE
from workers.temporal_client import connect
from workflows.contract import WriteCommand, WriteState, WriteStatus

DEMO_TIMEOUT_SECONDS = 120


def demo_commands(tenant_ids: list[str], run: str) -> list[tuple[WriteCommand, WriteState]]:
    """(command, the state it should end in)."""
    planned: list[tuple[WriteCommand, WriteState]] = []
    for tenant in tenant_ids:
        resources: list[tuple[str, dict[str, Any]]] = [
            ("hr", samples.heart_rate("demo-patient-1", 72)),
            ("bp", samples.blood_pressure("demo-patient-1", 118, 76)),
            ("temp", samples.body_temperature("demo-patient-2", 37.2)),
        ]
        for name, resource in resources:
            command = WriteCommand(
                tenant=tenant, idempotency_key=f"demo-{run}-{name}", resource=resource
            )
            planned.append((command, WriteState.VERIFIED))
    invalid = samples.heart_rate("demo-patient-3", 80)
    del invalid["code"]
    planned.append(
        (
            WriteCommand(tenant=tenant_ids[0], idempotency_key=f"demo-{run}-bad", resource=invalid),
            WriteState.REJECTED,
        )
    )
    return planned


async def count_in_ehr(base_url: str, command: WriteCommand) -> int:
    token = f"{COMMAND_IDENTIFIER_SYSTEM}|{command.command_identifier}"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base_url}/Observation", params={"identifier": token})
        return int(response.json().get("total", 0))


async def write_through_the_api(config: StackConfig, tenant: str) -> tuple[bool, str]:
    """One heart rate through the HTTP API, as any service would send it: (verified?, line)."""
    api = load_api_config(config.api_config)
    token = mint_token(
        config.api_config.parent / "issuer.pem",
        api,
        DEV_APP,
        ["system/Observation.c"],
        user="Practitioner/demo-nurse",
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Prefer": "wait=30",
    }
    async with httpx.AsyncClient(base_url=config.api_url, timeout=40) as http:
        answer = await http.post(
            f"/fhir/{tenant}/Observation",
            json=samples.heart_rate("demo-patient-4", 64),
            headers=headers,
        )
    where = answer.headers.get("Location") or answer.headers.get("Content-Location", "")
    line = f"POST {config.api_url}/fhir/{tenant}/Observation -> {answer.status_code}  {where}"
    return answer.status_code == 201, line


async def run_demo(config: StackConfig) -> int:
    tenants = load_tenants(config.tenants_path)
    client = WritebackClient(
        await connect(config.temporal_address, wait_seconds=60), task_queue=TASK_QUEUE
    )
    run = time.strftime("%Y%m%d%H%M%S")
    # the duplicate check below counts by command identifier: start with a FHIR-writing tenant
    # (athenaOne and Veradigm keep no identifier of ours; they deduplicate by content)
    fhir_writers_first = sorted(tenants, key=lambda t: not t.adapter().writes_fhir)
    planned = demo_commands([tenant.id for tenant in fhir_writers_first], run)
    started = time.monotonic()
    duplicate, _ = planned[0]
    # The first command is submitted three times at once: one workflow, one resource.
    await asyncio.gather(*(client.submit(duplicate) for _ in range(3)))
    submissions = await asyncio.gather(*(client.submit(command) for command, _ in planned))
    try:
        results: list[WriteStatus] = await asyncio.wait_for(
            asyncio.gather(*(client.wait(submission.workflow_id) for submission in submissions)),
            timeout=DEMO_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        print(f"demo: writes not settled after {DEMO_TIMEOUT_SECONDS}s:")
        for submission in submissions:
            status = await client.status(submission.workflow_id)
            print(f"  {status.workflow_id:<44} {status.state.value}  {status.reason or ''}")
        print(f"see the Web UI ({config.ui_url}) and {config.state_dir / 'logs'}")
        return 1
    elapsed = time.monotonic() - started

    print(f"\n{'workflow':<44} {'state':<13} {'resource':<32} detail")
    ok = True
    for (_, expected), status in zip(planned, results, strict=True):
        ok &= status.state is expected
        detail = status.reason or f"version {status.version}"
        resource = status.resource or "-"
        print(f"{status.workflow_id:<44} {status.state.value:<13} {resource:<32} {detail}")
    panel_ok, panel_lines = await write_lab_panel(client, tenants, run, DEMO_TIMEOUT_SECONDS)
    ok &= panel_ok
    print("\nA lab panel as one saga (three results, then the report listing them):")
    print("\n".join(panel_lines))
    api_ok, api_line = await write_through_the_api(config, duplicate.tenant)
    ok &= api_ok
    print(f"\nHTTP API (a dev token for {DEV_APP}, Prefer: wait=30):\n  {api_line}")
    tenant = tenants.get(duplicate.tenant)
    assert tenant is not None
    copies = await count_in_ehr(tenant.base_url(), duplicate)
    ok &= copies == 1
    print(f"\n{len(planned)} writes in {elapsed:.1f}s.")
    print(f"{duplicate.workflow_id} was submitted 4 times,")
    print(f"and the EHR holds {copies} resource(s) carrying its command identifier.")
    print(f"Web UI: {config.ui_url}  (run `writeback dev` to keep the stack up)")
    trusting = [t.id for t in tenants if t.caller_auth == "unauthenticated"]
    if trusting:
        print(
            f"Note: {', '.join(trusting)} take callers at their word (caller_auth = "
            '"unauthenticated"): DEMO ONLY. Real tenants accept only commands and decisions '
            "signed by a registered caller key (README: Security, Callers)."
        )
    print("demo:", "all writes ended as expected" if ok else "UNEXPECTED OUTCOMES above")
    return 0 if ok else 1
