"""Reconciliation on the dev server (it needs visibility and schedules): the per-tenant sweep finds
what was planted straight into the sandbox and nothing on a clean tenant, prints its report from
the CLI, puts each finding in the review queue; a failed saga compensation shows up in the same
queue with the saga's context and is settled by a decision (issue 7, acceptance 3 and 4)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.audit import current_resources_for_command
from support.cli import run_cli
from support.sandbox_process import SandboxProcess
from support.workflow_runs import verified_heart_rates
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState
from workflows.reconcile_contract import Finding, finding_workflow_id, sweep_schedule_id
from workflows.saga_contract import SagaCommand

pytestmark = pytest.mark.integration


def client_for(dev_server: WorkflowEnvironment, cli_env: dict[str, str]) -> WritebackClient:
    """Submits to the `writeback worker` process the CLI tests run against."""
    return WritebackClient(dev_server.client, task_queue=cli_env["WRITEBACK_TASK_QUEUE"])


async def verified_writes(client: WritebackClient, tenant: str, count: int) -> list[str]:
    """``count`` verified heart rates; their resource references."""
    statuses = await verified_heart_rates(client, tenant, count, "sw")
    return [str(status.resource) for status in statuses]


def listed_when(
    cli_env: dict[str, str], tenant: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """`review list --json` until ``ready`` holds (visibility is eventually consistent)."""
    deadline = time.monotonic() + 60
    while True:
        result = run_cli("review", "list", "--tenant", tenant, "--json", env=cli_env)
        assert result.returncode == 0, result.stderr
        entries: list[dict[str, Any]] = json.loads(result.stdout)
        if ready(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.5)


async def sweep(cli_env: dict[str, str], tenant: str, *extra: str) -> Any:
    return await asyncio.to_thread(
        run_cli, "reconcile", "run", "--tenant", tenant, *extra, env=cli_env
    )


async def test_a_clean_tenant_sweeps_clean(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str]
) -> None:
    since = datetime.now(UTC).isoformat()
    await verified_writes(client_for(dev_server, cli_env), "sweep-clean", 3)
    result = await sweep(cli_env, "sweep-clean", "--json", "--since", since)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resources_scanned"] >= 3 and report["writes_checked"] >= 3
    assert report["findings"] == []


async def test_a_sweep_finds_a_planted_duplicate_drift_and_missing_resource(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    client = client_for(dev_server, cli_env)
    since = datetime.now(UTC).isoformat()
    duplicated, drifted, deleted = await verified_writes(client, "sweep-r4", 3)
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-r4") as fhir:
        copy = (await fhir.get(duplicated)).json()
        copy = {k: v for k, v in copy.items() if k not in ("id", "meta")}
        assert (await fhir.post("Observation", json=copy)).status_code == 201
        changed = (await fhir.get(drifted)).json()
        changed["valueQuantity"]["value"] = 99
        assert (await fhir.put(drifted, json=changed)).status_code == 200
        assert (await fhir.delete(deleted)).status_code == 204

    result = await sweep(cli_env, "sweep-r4", "--since", since)
    assert result.returncode == 3, result.stderr  # findings
    assert "findings 3" in result.stdout
    for kind in ("duplicate", "drift", "missing"):
        assert kind in result.stdout

    report = json.loads((await sweep(cli_env, "sweep-r4", "--json", "--since", since)).stdout)
    found = {f["kind"]: f for f in report["findings"]}
    assert set(found) == {"duplicate", "drift", "missing"}
    assert found["duplicate"]["keep"] == duplicated and len(found["duplicate"]["resources"]) == 2
    assert found["drift"]["resources"] == [drifted]
    assert "valueQuantity.value" in found["drift"]["detail"]
    assert found["missing"]["resources"] == [deleted] and "gone" in found["missing"]["detail"]
    assert report["raised"] == [], "the first sweep already queued these: raised once only"

    finding_ids = {finding_workflow_id(Finding.model_validate(f)) for f in found.values()}
    queue = listed_when(cli_env, "sweep-r4", lambda e: finding_ids <= {x["workflow_id"] for x in e})
    assert finding_ids <= {entry["workflow_id"] for entry in queue}

    duplicate_id = finding_workflow_id(Finding.model_validate(found["duplicate"]))
    decided = run_cli(
        "review",
        "resolve",
        duplicate_id,
        "--action",
        "retry",
        "--by",
        "op-3",
        "--reason",
        "withdraw the extra copy",
        "--json",
        env=cli_env,
    )
    assert decided.returncode == 1, decided.stderr  # compensated
    assert json.loads(decided.stdout)["state"] == "compensated"
    copies = current_resources_for_command(ehr.db, "sweep-r4", found["duplicate"]["command"])
    assert sorted(c.get("status") for c in copies) == ["entered-in-error", "final"]
    kept = next(c for c in copies if c["status"] == "final")
    assert f"Observation/{kept['id']}" == duplicated


async def test_a_failed_saga_compensation_is_in_the_review_queue_with_its_context(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    client = client_for(dev_server, cli_env)
    refuse_notify = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}
    refuse_revoke = {"kind": "status", "status": 403, "method": "PUT", "type": "ServiceRequest"}
    async with httpx.AsyncClient(base_url=ehr.url) as admin:
        await admin.post("/_admin/faults/demo-r4", json={"queue": [refuse_notify, refuse_revoke]})
    command = SagaCommand(
        tenant="demo-r4",
        idempotency_key=f"sg-{uuid.uuid4().hex[:12]}",
        kind="referral",
        steps=samples.referral("saga-review-pt"),
    )
    submission = await client.submit_saga(command)
    assert (await client.wait(submission.workflow_id)).state is WriteState.COMPENSATION_FAILED

    queue = listed_when(
        cli_env, "demo-r4", lambda e: submission.workflow_id in {x["workflow_id"] for x in e}
    )
    (entry,) = [e for e in queue if e["workflow_id"] == submission.workflow_id]
    assert entry["state"] == "compensation_failed" and entry["error_class"] == "compensation"
    assert "ServiceRequest/" in entry["reason"]

    shown = await asyncio.to_thread(run_cli, "review", "show", submission.workflow_id, env=cli_env)
    assert shown.returncode == 3
    for line in ("request", "task", "notify", "withdrawn", "failed", "HTTP 422", "HTTP 403"):
        assert line in shown.stdout

    decided = await asyncio.to_thread(
        run_cli,
        "review",
        "resolve",
        submission.workflow_id,
        "--action",
        "retry",
        "--by",
        "op-4",
        "--reason",
        "the EHR accepts status updates again",
        "--json",
        env=cli_env,
    )
    assert decided.returncode == 1, decided.stderr
    assert json.loads(decided.stdout)["state"] == "compensated"
    request = current_resources_for_command(
        ehr.db, "demo-r4", f"demo-r4:{command.step_key('request')}"
    )
    assert [r["status"] for r in request] == ["revoked"]


async def test_the_schedule_command_registers_one_sweep_per_tenant(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], tenants_file: Any
) -> None:
    result = await asyncio.to_thread(
        run_cli,
        "reconcile",
        "schedule",
        "--tenants",
        str(tenants_file),
        "--tenant",
        "sweep-clean",
        env=cli_env,
    )
    assert result.returncode == 0, result.stderr
    assert "every 1 h, looking back 2 h" in result.stdout
    handle = dev_server.client.get_schedule_handle(sweep_schedule_id("sweep-clean"))
    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every.total_seconds() == 3600
    again = await asyncio.to_thread(  # idempotent: updates the existing schedule
        run_cli,
        "reconcile",
        "schedule",
        "--tenants",
        str(tenants_file),
        "--tenant",
        "sweep-clean",
        env=cli_env,
    )
    assert again.returncode == 0, again.stderr
