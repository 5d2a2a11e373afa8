"""Schema drift at runtime: each of the sandbox's drift toggles makes the next write end
``rejected`` with error class ``schema_drift`` and the field named — after one EHR attempt, never
a crash and never a retry loop."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end, wait_until_settled
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

LEGACY_EXTENSION = "http://example.org/fhir/StructureDefinition/legacy-flag"


def with_legacy_extension(resource: dict[str, Any]) -> dict[str, Any]:
    resource["extension"] = [{"url": LEGACY_EXTENSION, "valueBoolean": True}]
    return resource


@pytest.mark.parametrize(
    ("drift", "field"),
    [
        ({"required_fields": ["Observation.performer"]}, "Observation.performer"),
        ({"code_bindings": {"Observation.code": "http://snomed.info/sct"}}, "Observation.code"),
    ],
    ids=["newly-required-field", "changed-code-binding"],
)
async def test_drift_rejects_the_next_write_naming_the_field(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str, drift: Any, field: str
) -> None:
    assert (await faults.post("/_admin/faults/demo-r4", json={"drift": drift})).is_success
    status = await run_to_end(writeback, command("demo-r4", key, samples.heart_rate("p", 72)))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "schema_drift"
    assert status.reason and status.reason.startswith(f"schema drift at {field}: ")
    assert status.attempts == 1
    assert [entry.step for entry in status.ehr_log] == ["write"]


async def test_removed_extension_leaves_the_stored_write_waiting_for_a_person(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """The EHR stored the write without an extension it no longer accepts. The resource is in
    the chart, so the write is not ``rejected`` (which promises nothing was written): it waits
    for a person to review the stored resource, naming it and the drifted element."""
    drift = {"removed_extensions": [LEGACY_EXTENSION]}
    assert (await faults.post("/_admin/faults/demo-r4", json={"drift": drift})).is_success
    resource = with_legacy_extension(samples.heart_rate("p", 72))
    cmd = command("demo-r4", key, resource)
    await writeback.submit(cmd)
    status = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)

    assert status.state is WriteState.PENDING_CONFIRMATION
    assert status.error_class == "schema_drift"
    assert status.reason and status.reason.startswith("schema drift at extension: ")
    assert status.resource and status.resource in status.reason
    assert status.attempts == 1
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 1


async def test_writes_without_the_drifted_element_are_unaffected(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    drift = {"removed_extensions": [LEGACY_EXTENSION]}
    assert (await faults.post("/_admin/faults/demo-r4", json={"drift": drift})).is_success
    status = await run_to_end(writeback, command("demo-r4", key, samples.heart_rate("p", 72)))
    assert status.state is WriteState.VERIFIED


async def test_an_ordinary_ehr_validation_error_is_not_drift(
    writeback: WritebackClient, key: str
) -> None:
    # Epic's vital-sign rule (status must be final) is a business rule, not a contract change
    resource = samples.heart_rate("p", 72)
    resource["status"] = "amended"
    status = await run_to_end(writeback, command("demo-epic", key, resource))
    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
