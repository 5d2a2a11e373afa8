"""Tenant contract tests: per tenant, canonical commands (``<tenant>/*.json``) and the request
shape the tenant accepts, run against the sandbox personality the tenant's EHR imitates.

Each fixture holds ``resource`` (the canonical command's resource), ``accepted_request`` (what
the map step must produce: method, path, dedup strategy, headers — a string is a required prefix,
``null`` means the header must be absent — and body fields that must be sent as given; ``null``
when nothing may be sent) and ``outcome`` (the state the write must end in). Adding a tenant means
adding its directory here (README: "Onboarding a tenant").
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.workers import running_worker
from support.workflow_runs import command, run_to_end
from temporalio.testing import WorkflowEnvironment

from activities.command_steps import CommandSteps
from activities.models import CommandInput
from adapters.tenants import TenantRegistry
from workflows.contract import WriteState

HERE = Path(__file__).parent
FIXTURES = {
    f"{path.parent.name}/{path.stem}": json.loads(path.read_text())
    for path in sorted(HERE.glob("*/*.json"))
}


def test_every_contract_tenant_is_a_configured_test_tenant(tenants: TenantRegistry) -> None:
    contract_tenants = {name.split("/")[0] for name in FIXTURES}
    assert contract_tenants >= {"demo-r4", "demo-epic", "demo-cerner"}
    assert contract_tenants <= set(tenants.ids)


SENDING = sorted(name for name, fixture in FIXTURES.items() if fixture["accepted_request"])


@pytest.mark.parametrize("name", SENDING)
async def test_map_step_produces_the_accepted_request_shape(
    tenants: TenantRegistry, name: str
) -> None:
    fixture = FIXTURES[name]
    expected = fixture["accepted_request"]
    tenant = name.split("/")[0]
    plan = await CommandSteps(tenants).map(
        CommandInput(
            tenant=tenant,
            resource=fixture["resource"],
            command_identifier=f"{tenant}:contract",
            requested_by="contract-test",
        )
    )
    request = plan.create
    assert request is not None
    assert ("POST", request.resource_type) == (expected["method"], expected["path"])
    assert request.dedup.value == expected["dedup"]
    headers = request.headers()
    for header, prefix in expected["headers"].items():
        if prefix is None:
            assert header not in headers, header
        else:
            assert headers.get(header, "").startswith(prefix), header
    for field, value in expected["body_includes"].items():
        assert request.body[field] == value, field
    systems = {ident["system"] for ident in request.body["identifier"]}
    assert expected["identifier_system"] in systems


def _assert_outcome(status: Any, outcome: dict[str, Any]) -> None:
    assert status.state is WriteState(outcome["state"]), status.reason
    if "error_class" in outcome:
        assert status.error_class == outcome["error_class"]
    if "reason_starts_with" in outcome:
        assert status.reason and status.reason.startswith(outcome["reason_starts_with"])


@pytest.mark.parametrize("name", sorted(FIXTURES))
async def test_canonical_command_ends_as_the_contract_says_on_the_personality(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, name: str
) -> None:
    fixture = FIXTURES[name]
    tenant = name.split("/")[0]
    key = f"contract-{uuid.uuid4().hex[:12]}"
    async with running_worker(time_skipping.client, tenants) as writeback:
        status = await run_to_end(writeback, command(tenant, key, fixture["resource"]))
    _assert_outcome(status, fixture["outcome"])
    if fixture["accepted_request"] is None:
        assert status.attempts == 0
