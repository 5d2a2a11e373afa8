"""Attack: whoever holds the payload key can start a ReconcileFinding with any content. A forged
duplicate finding used to make the worker withdraw whatever it listed: on a tenant without
auto-remediation (``auto_remediate`` is a field of the finding), a resource of another command,
or the only copy of a write (``keep`` naming a resource that does not exist).

A withdrawal for a finding now withdraws only what is provably an extra copy: the tenant's own
settings (read by the worker, not the finding) must allow auto-remediation, every withdrawn
resource must carry the finding's command identifier, and the copy that stays must be live and
carry it too — checked in the EHR before anything is withdrawn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.sandbox_process import SandboxProcess
from support.sandbox_seed import planted_copy, stored
from support.workers import running_worker
from support.workflow_runs import command, run_to_end
from temporalio.testing import WorkflowEnvironment

from adapters.compensation import is_withdrawn
from adapters.ids import command_identifier
from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workflows.contract import WriteState, WriteStatus
from workflows.reconcile_contract import Finding, FindingKind, finding_workflow_id
from workflows.reconcile_finding import ReconcileFinding

#: a test tenant whose reconciliation withdraws extra copies without asking (tests/support)
REMEDIATING = "remedy-r4"


@pytest.fixture
async def writeback(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


async def remediated(writeback: WritebackClient, finding: Finding) -> WriteStatus:
    """Start the (forged) finding as its holder could, and wait until its automatic
    remediation has either withdrawn copies or given up."""
    finding_id = finding_workflow_id(finding)
    await writeback.temporal.start_workflow(
        ReconcileFinding.run, finding, id=finding_id, task_queue=writeback.task_queue
    )
    for _ in range(300):
        status = await writeback.status(finding_id)
        if status.state is not WriteState.MISMATCH or (status.reason or "").startswith(
            "remediation failed"
        ):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{finding_id}: remediation neither ran nor gave up")


def duplicate(
    tenant: str, key: str, write: WriteStatus, resources: list[str], keep: str
) -> Finding:
    return Finding(
        kind=FindingKind.DUPLICATE,
        tenant=tenant,
        command=command_identifier(tenant, key),
        write_id=write.workflow_id,
        resources=resources,
        keep=keep,
        detail="two copies of one command",
        auto_remediate=True,
    )


async def test_a_real_duplicate_is_withdrawn_where_the_tenant_asks_for_it(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """The control: what auto-remediation is for still happens."""
    write = await run_to_end(writeback, command(REMEDIATING, key))
    assert write.resource
    copy = await planted_copy(ehr, REMEDIATING, write.resource)

    status = await remediated(
        writeback, duplicate(REMEDIATING, key, write, [write.resource, copy], write.resource)
    )

    assert status.state is WriteState.COMPENSATED, status.reason
    assert is_withdrawn(await stored(ehr, REMEDIATING, copy))
    assert not is_withdrawn(await stored(ehr, REMEDIATING, write.resource))


async def test_a_forged_finding_cannot_turn_on_auto_remediation_for_a_tenant(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    write = await run_to_end(writeback, command("demo-r4", key))
    assert write.resource
    copy = await planted_copy(ehr, "demo-r4", write.resource)

    status = await remediated(
        writeback, duplicate("demo-r4", key, write, [write.resource, copy], write.resource)
    )

    assert status.state is WriteState.MISMATCH  # left for a person
    assert "does not auto-remediate" in (status.reason or "")
    assert not is_withdrawn(await stored(ehr, "demo-r4", copy))


async def test_a_forged_finding_cannot_withdraw_another_commands_resource(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    ours = await run_to_end(writeback, command(REMEDIATING, f"{key}-a"))
    victim = await run_to_end(writeback, command(REMEDIATING, f"{key}-b"))
    assert ours.resource and victim.resource

    status = await remediated(
        writeback,
        duplicate(REMEDIATING, f"{key}-a", ours, [ours.resource, victim.resource], ours.resource),
    )

    assert status.state is WriteState.MISMATCH
    assert "command identifier" in (status.reason or "")
    assert not is_withdrawn(await stored(ehr, REMEDIATING, victim.resource))


async def test_a_forged_finding_cannot_withdraw_the_only_copy(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    write = await run_to_end(writeback, command(REMEDIATING, key))
    assert write.resource
    gone = f"{write.resource.split('/')[0]}/gone"

    status = await remediated(
        writeback, duplicate(REMEDIATING, key, write, [write.resource, gone], gone)
    )

    assert status.state is WriteState.MISMATCH
    assert "copy that stays" in (status.reason or "")
    assert not is_withdrawn(await stored(ehr, REMEDIATING, write.resource))
