"""Security of a write on the time-skipping server with the real worker and sandbox EHR: the
authorization record, policy denials, tenant isolation (another tenant's base URL, credentials
and keys are out of reach) and key rotation in the middle of a write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support.audit import resources_for_command
from support.raw_history import key_ids, raw_client, raw_history, unencrypted_payload_events
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.workflow_runs import command, run_to_end
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.audit_ledger import AuditBatch, AuditEvent
from activities.models import EhrWrite
from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry
from workers import samples
from workers.audit_cli import ledger_location, shared_ledger
from workers.client import WritebackClient
from workers.codec import writeback_data_converter
from workers.keys import LocalKeyProvider
from workers.worker import ehr_http_client, running_workers
from workflows.clinical_write import ClinicalWrite
from workflows.contract import (
    Interaction,
    Resolution,
    ResolutionAction,
    WriteState,
    workflow_id_for,
)
from workflows.task_queues import ehr_task_queue

NURSE = {"on_behalf_of": "Practitioner/n-7", "role": "nurse", "purpose": "TREAT"}


async def test_an_allowed_write_records_rule_policy_version_and_least_scope(
    writeback: WritebackClient, key: str
) -> None:
    cmd = command("policy-r4", key, requested_by="nursing-app", **NURSE)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    record = status.authorization
    assert record is not None
    assert (record.decision, record.rule, record.policy_version) == (
        "allow",
        "nursing-vitals",
        "2026-11-test",
    )
    assert (record.requested_by, record.on_behalf_of, record.role, record.purpose) == (
        "nursing-app",
        "Practitioner/n-7",
        "nurse",
        "TREAT",
    )
    assert record.scopes == ["system/Observation.c"]
    authorized = [t for t in status.transitions if t.state is WriteState.AUTHORIZED]
    assert "rule 'nursing-vitals' of policy 2026-11-test" in (authorized[0].detail or "")


@pytest.mark.parametrize(
    ("caller", "extra", "rule"),
    [
        ("nursing-app", {**NURSE, "role": "billing"}, "default-deny"),
        ("nursing-app", {"role": "nurse", "purpose": "TREAT"}, "default-deny"),  # no user
        ("unknown-service", NURSE, "default-deny"),
    ],
)
async def test_a_policy_denial_ends_rejected_naming_the_rule_and_sends_nothing(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    key: str,
    caller: str,
    extra: dict[str, str],
    rule: str,
) -> None:
    cmd = command("policy-r4", key, requested_by=caller, **extra)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.REJECTED
    assert status.error_class == "authorization"
    assert status.reason == f"denied by rule '{rule}' of policy 2026-11-test"
    assert status.authorization is not None and status.authorization.decision == "deny"
    assert status.authorization.scopes == []
    assert status.attempts == 0
    assert resources_for_command(ehr.db, "policy-r4", cmd.command_identifier) == 0


async def test_an_explicit_deny_rule_wins_over_later_allows(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    created = await run_to_end(writeback, command("policy-r4", key, requested_by="batch-import"))
    assert created.state is WriteState.VERIFIED
    assert created.authorization and created.authorization.rule == "batch-creates"
    assert created.resource
    update = command(
        "policy-r4",
        f"{key}-u",
        {**samples.heart_rate("wf-test", 80), "id": created.resource.split("/")[1]},
        requested_by="batch-import",
        interaction=Interaction.UPDATE,
        target=created.resource,
        base_version="1",
    )
    status = await run_to_end(writeback, update)
    assert status.state is WriteState.REJECTED
    assert status.reason == "denied by rule 'batch-never-updates' of policy 2026-11-test"


async def test_a_workflow_of_one_tenant_cannot_write_for_another(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """Started around WritebackClient.submit: the id says demo-r4, the command says demo-epic.
    Nothing reaches either EHR, and the write fails closed."""
    cmd = command("demo-epic", key)
    workflow_id = workflow_id_for("demo-r4", key)
    handle = await writeback.temporal.start_workflow(
        ClinicalWrite.run, cmd, id=workflow_id, task_queue=writeback.task_queue
    )
    status = await handle.result()

    assert status.state is WriteState.REJECTED
    assert status.error_class == "authorization"
    assert "cross-tenant step refused" in (status.reason or "")
    assert resources_for_command(ehr.db, "demo-epic", cmd.command_identifier) == 0
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 0
    # on the record of the tenant whose workflow it was
    ledger = shared_ledger(ledger_location())
    states = [
        AuditEvent.model_validate_json(r.body).state
        for r in ledger.records("demo-r4")
        if r.entry_key.startswith(f"{workflow_id}/")
    ]
    assert states == ["requested", "rejected"]


@workflow.defn(name="CrossTenantProbe", sandboxed=False)
class CrossTenantProbe:
    """Schedules one activity as told: a stand-in for a buggy or forged workflow."""

    @workflow.run
    async def run(self, activity_name: str, queue: str, arg: dict[str, Any]) -> str:
        try:
            await workflow.execute_activity(
                activity_name,
                arg,
                task_queue=queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return f"{err.cause.type}: {err.cause.message}"
        return "done"


async def probe(writeback: WritebackClient, workflow_id: str, *args: Any) -> str:
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(
        writeback.temporal,
        task_queue=queue,
        workflows=[CrossTenantProbe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        return str(
            await writeback.temporal.execute_workflow(
                CrossTenantProbe.run, args=list(args), id=workflow_id, task_queue=queue
            )
        )


@pytest.mark.parametrize(
    ("workflow_tenant", "queue_tenant", "write_tenant"),
    [
        ("demo-r4", "demo-r4", "demo-cerner"),  # another tenant's base URL on my own queue
        ("demo-r4", "demo-cerner", "demo-r4"),  # my write on another tenant's queue
        ("demo-r4", "demo-cerner", "demo-cerner"),  # everything of another tenant but my id
    ],
)
async def test_an_ehr_step_for_another_tenant_is_refused(
    writeback: WritebackClient,
    tenants: TenantRegistry,
    ehr: SandboxProcess,
    key: str,
    workflow_tenant: str,
    queue_tenant: str,
    write_tenant: str,
) -> None:
    tenant = tenants.get(write_tenant)
    assert tenant is not None
    request = prepare_create(tenant, samples.heart_rate("wf-test", 70), f"{write_tenant}:{key}")
    write = EhrWrite(tenant=write_tenant, request_id="probe", request=request)
    outcome = await probe(
        writeback,
        workflow_id_for(workflow_tenant, key),
        "write",
        ehr_task_queue(writeback.task_queue, queue_tenant),
        write.model_dump(mode="json"),
    )
    assert outcome.startswith("authorization: cross-tenant step refused"), outcome
    assert resources_for_command(ehr.db, write_tenant, f"{write_tenant}:{key}") == 0


async def test_a_write_cannot_append_to_another_tenants_audit_chain(
    writeback: WritebackClient, key: str
) -> None:
    ledger = shared_ledger(ledger_location())
    before = len(ledger.records("demo-cerner"))
    forged = AuditEvent(
        entry_key=f"forged-{key}",
        tenant="demo-cerner",
        correlation_id="wb:demo-cerner:x",
        kind="transition",
        at=datetime.now(UTC),
        requested_by="cli",
        outcome="verified",
    )
    outcome = await probe(
        writeback,
        workflow_id_for("demo-r4", key),
        "record_audit",
        writeback.task_queue,
        AuditBatch(events=[forged]).model_dump(mode="json"),
    )
    assert outcome.startswith("authorization: cross-tenant step refused"), outcome
    assert len(ledger.records("demo-cerner")) == before


async def test_every_transition_and_exchange_reaches_the_audit_ledger(
    writeback: WritebackClient, key: str
) -> None:
    cmd = command("policy-r4", key, requested_by="nursing-app", **NURSE)
    status = await run_to_end(writeback, cmd)
    ledger = shared_ledger(ledger_location())

    mine = [
        AuditEvent.model_validate_json(record.body)
        for record in ledger.records("policy-r4")
        if record.entry_key.startswith(f"{cmd.workflow_id}/")
    ]
    transitions = [e for e in mine if e.kind == "transition"]
    exchanges = [e for e in mine if e.kind == "exchange"]
    assert [e.state for e in transitions] == [t.state.value for t in status.transitions]
    assert [(e.step, e.outcome) for e in exchanges] == [(x.step, x.outcome) for x in status.ehr_log]
    last = transitions[-1]
    assert (last.requested_by, last.on_behalf_of, last.resource_type) == (
        "nursing-app",
        "Practitioner/n-7",
        "Observation",
    )
    assert last.resource == status.resource and last.version == status.version
    assert last.policy == "allow nursing-vitals@2026-11-test scopes system/Observation.c"
    assert all(e.correlation_id == cmd.workflow_id for e in mine)
    assert ledger.verify("policy-r4").ok


async def test_history_payloads_are_sealed_with_the_writes_own_tenant_key(
    time_skipping: WorkflowEnvironment, writeback: WritebackClient, key: str
) -> None:
    cmd = command("demo-cerner", key)
    assert (await run_to_end(writeback, cmd)).state is WriteState.VERIFIED
    raw = await raw_client(temporal_address(time_skipping))
    history = await raw_history(raw, cmd.workflow_id)
    assert key_ids(history) == {"demo-cerner.r1"}
    assert unencrypted_payload_events(history) <= {"EVENT_TYPE_MARKER_RECORDED"}


async def test_a_write_started_under_key_1_completes_after_rotation_to_key_2(
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """Workers restart with the rotated key file in the middle of a write (on the dev server:
    the time-skipping server does not hand a workflow over to a restarted worker)."""
    address = temporal_address(dev_server)
    keys_1 = LocalKeyProvider.generate()
    keys_2 = keys_1.rotated()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    cmd = command("demo-cerner", key)
    await faults.post(
        "/_admin/faults/demo-cerner",
        json={"queue": [{"kind": "drop_identifier", "method": "POST"}]},
    )

    async def writeback_with(keys: LocalKeyProvider) -> WritebackClient:
        client = await Client.connect(address, data_converter=writeback_data_converter(keys))
        return WritebackClient(client, task_queue=queue)

    before = await writeback_with(keys_1)
    async with ehr_http_client() as http, running_workers(before.temporal, tenants, http, queue):
        await before.submit(cmd)
        parked = await before.wait(cmd.workflow_id)
    assert parked.state is WriteState.PENDING_CONFIRMATION

    after = await writeback_with(keys_2)  # the rotated key file: new key, old keys kept
    async with ehr_http_client() as http, running_workers(after.temporal, tenants, http, queue):
        abandon = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="fixed by hand")
        final = await after.resolve(cmd.workflow_id, abandon, decision_id=f"{key}-d1")
        assert final.state is WriteState.ABANDONED
        result = await after.temporal.get_workflow_handle_for(
            ClinicalWrite.run, cmd.workflow_id
        ).result()
    assert result.state is WriteState.ABANDONED

    raw = await raw_client(address)
    assert key_ids(await raw_history(raw, cmd.workflow_id)) == {"demo-cerner.r1", "demo-cerner.r2"}
