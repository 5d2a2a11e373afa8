"""Sagas under seeded EHR chaos (time-skipping server, real sandbox): 503s, dropped and reset
connections after commit, and Communications refused now and then. Every saga must end with the
chart in one of two shapes, audited in the sandbox's own store: every step in it exactly once
(verified), or every written step withdrawn (compensated). Zero orphans, zero duplicates."""

from __future__ import annotations

import httpx
import pytest
from support.audit import current_resources_for_command
from support.sandbox_process import SandboxProcess
from support.workflow_runs import results_of
from temporalio.testing import WorkflowEnvironment

from adapters.compensation import is_withdrawn
from workers import samples
from workers.client import WritebackClient
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import WriteState
from workflows.saga_contract import SagaCommand, SagaStep

SAGAS_PER_TENANT = 12


def chaos(seed: int) -> dict[str, object]:
    return {
        "random": {
            "seed": seed,
            "rate": 0.3,
            "kinds": [
                {"kind": "status", "status": 503},
                {"kind": "commit_then_drop", "method": "POST"},
                {"kind": "commit_then_drop", "method": "PUT"},
                {"kind": "connection_reset", "method": "POST"},
                {"kind": "status", "status": 422, "method": "POST", "type": "Communication"},
            ],
        }
    }


def referral(patient: str, refused: bool) -> list[SagaStep]:
    """A referral; when ``refused``, its Communication lacks its required status (rejected
    before sending), so the saga must withdraw the request and the task through the chaos."""
    request, task, notify = samples.referral(patient)
    if refused:
        malformed = {k: v for k, v in notify.resource.items() if k != "status"}
        notify = SagaStep(name=notify.name, resource=malformed)
    return [request, task, notify]


@pytest.mark.parametrize("tenant", ["fast-r4", "fast-cerner"])
async def test_sagas_under_chaos_end_all_in_the_chart_or_all_withdrawn(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
    tenant: str,
) -> None:
    await faults.post(f"/_admin/faults/{tenant}", json=chaos(seed=len(tenant)))
    commands = [
        SagaCommand(
            tenant=tenant,
            idempotency_key=f"{key}-{n}",
            kind="referral",
            steps=referral(f"chaos-saga-{n}", refused=n % 3 == 0),
        )
        for n in range(SAGAS_PER_TENANT)
    ]

    handles = [
        writeback.temporal.get_workflow_handle_for(
            ClinicalSaga.run, (await writeback.submit_saga(command)).workflow_id
        )
        for command in commands
    ]
    states = [result.state for result in await results_of(time_skipping, handles)]
    injected = (await faults.get(f"/_admin/faults/{tenant}")).json()["injected"]

    assert set(states) <= {WriteState.VERIFIED, WriteState.COMPENSATED}, states
    assert WriteState.COMPENSATED in states and WriteState.VERIFIED in states
    assert sum(injected.values()) >= SAGAS_PER_TENANT
    for command, state in zip(commands, states, strict=True):
        for step in command.steps:
            identifier = f"{tenant}:{command.step_key(step.name)}"
            stored = current_resources_for_command(ehr.db, tenant, identifier)
            assert len(stored) <= 1, f"{identifier}: duplicated"
            if state is WriteState.VERIFIED:
                assert len(stored) == 1 and not is_withdrawn(stored[0])
            else:
                assert all(is_withdrawn(resource) for resource in stored), f"{identifier}: orphan"
