"""adapters/ids.py: every workflow id and command identifier, built and read back in one place."""

from __future__ import annotations

from adapters import ids
from workflows.contract import WriteCommand
from workflows.reconcile_contract import Finding, FindingKind
from workflows.saga_contract import SagaCommand


def test_a_write_id_is_wb_and_its_command_identifier() -> None:
    command = WriteCommand(tenant="acme", idempotency_key="k.1", resource={"resourceType": "X"})
    assert command.command_identifier == ids.command_identifier("acme", "k.1") == "acme:k.1"
    assert command.workflow_id == ids.workflow_id_for("acme", "k.1") == "wb:acme:k.1"
    assert ids.write_id_of(command.command_identifier) == command.workflow_id
    assert ids.command_of(command.workflow_id) == command.command_identifier
    assert ids.split_command("acme:k:with:colons") == ("acme", "k:with:colons")
    assert ids.key_of_workflow(command.workflow_id) == "k.1"


def test_saga_ids_and_step_keys_read_back() -> None:
    saga = SagaCommand(
        tenant="acme",
        idempotency_key="ref.7",
        kind="referral",
        steps=[{"name": "request", "resource": {"resourceType": "ServiceRequest"}}],
    )
    assert saga.workflow_id == ids.saga_workflow_id("acme", "ref.7") == "wb-saga:acme:ref.7"
    assert saga.step_key("request") == "saga.ref.7.request"
    assert ids.saga_step_of(saga.step_key("request")) == ("ref.7", "request")
    assert ids.saga_step_of("plain-key") is None


def test_every_workflow_id_names_its_tenant_second() -> None:
    finding = Finding(
        kind=FindingKind.DUPLICATE,
        tenant="acme",
        command="acme:k1",
        write_id="wb:acme:k1",
        resources=[],
        detail="",
    )
    made = [
        ids.workflow_id_for("acme", "k1"),
        ids.saga_workflow_id("acme", "k1"),
        ids.sweep_workflow_id("acme", "scheduled"),
        ids.finding_workflow_id(finding),
        ids.discovery_workflow_id("acme", "run"),
        ids.webhook_delivery_id("acme", "crm", "wb:acme:k1/t5"),
    ]
    assert [ids.tenant_of_workflow(i) for i in made] == ["acme"] * len(made)
    assert {i.split(":", 1)[0] for i in made} == ids.WORKFLOW_ID_PREFIXES
    assert ids.sweep_schedule_id("acme") == "wb-reconcile:acme"
    assert ids.discovery_schedule_id("acme") == "wb-discovery:acme"
