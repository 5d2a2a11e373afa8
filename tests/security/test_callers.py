"""Issue #17, finding 1 ("Callers are self-asserted"), written as the attacks.

The attacker is any process that reaches Temporal: it starts ClinicalWrite itself, or sends a
decision to a waiting write, filling in whatever fields it likes (``time_skipping.client``, with
no caller key). The honest caller signs (tests/support/callers.py). Credentials are forged here
with PyJWT from the format the README documents (Security, Callers), not with the product's own
signer: what an attacker, or another caller's code, would build.

Each test fails on the main branch before the fix (the worker believed every claim: the forged
writes end ``verified``, the forged override is applied, an empty caller list lets anyone in).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.updates import conflicting_update
from support.workers import running_worker
from support.workflow_runs import command, result_of
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from adapters.tenants import TenantRegistry, load_tenants
from workers import samples
from workers.client import WritebackClient
from workers.temporal_client import default_data_converter
from workers.worker import workflow_runner
from workflows.clinical_write import ClinicalWrite
from workflows.contract import (
    Resolution,
    ResolutionAction,
    WriteCommand,
    WriteState,
    WriteStatus,
)
from workflows.saga_contract import SagaCommand, SagaStep

TENANT = "policy-r4"  # its policy lets nursing-app write vitals for a nurse or physician
NURSING_APP = {
    "requested_by": "nursing-app",
    "on_behalf_of": "Practitioner/attending-1",
    "role": "physician",
    "purpose": "TREAT",
}
#: what a command's credential binds (README: Security, Callers)
SIGNED_FIELDS = {
    "tenant",
    "idempotency_key",
    "interaction",
    "resource",
    "target",
    "base_version",
    "requested_by",
    "on_behalf_of",
    "role",
    "purpose",
    "urgency",
}


# --- credentials, as the README describes them --------------------------------------------------


def registered_key() -> Any:
    """The test callers' key (registered with the workers for nursing-app, op-1, …); a fresh one
    where no registry exists (then nothing checks credentials anyway)."""
    path = os.environ.get("WRITEBACK_CALLER_KEY")
    if path:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    return ed25519.Ed25519PrivateKey.generate()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kid(key: ed25519.Ed25519PrivateKey) -> str:
    """RFC 7638 thumbprint of the key's public half."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}, separators=(",", ":"))
    return b64(hashlib.sha256(members.encode()).digest())


def content_digest(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def credential(
    key: Any,
    caller: str,
    workflow_id: str,
    tenant: str,
    content: dict[str, Any],
    issued: datetime,
    use: str = "command",
    lifetime: timedelta = timedelta(minutes=5),
    **bound: str | None,
) -> str:
    claims = {
        "iss": caller,
        "sub": caller,
        "aud": "writeback",
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
        "use": use,
        "tenant": tenant,
        "wid": workflow_id,
        "cmd": content_digest(content),
        **bound,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid(key)})


def signed(cmd: WriteCommand, key: Any, issued: datetime, **changes: Any) -> WriteCommand:
    """``cmd`` with a credential for it (as nursing-app would make it)."""
    token = credential(
        key,
        cmd.requested_by,
        cmd.workflow_id,
        cmd.tenant,
        cmd.model_dump(mode="json", include=SIGNED_FIELDS),
        issued,
        obo=cmd.on_behalf_of,
        role=cmd.role,
        pou=cmd.purpose,
        **changes,
    )
    return cmd.model_copy(update={"credential": token})


# --- the honest side, and the attacker ------------------------------------------------------------


@pytest.fixture
async def honest(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    """The real worker, and a client that signs (the test callers' key)."""
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


async def attack(
    env: WorkflowEnvironment, queue: str, cmd: WriteCommand, workflow_id: str | None = None
) -> WriteStatus:
    """Start ClinicalWrite with ``cmd`` as it is, from a client with no caller key."""
    handle = await env.client.start_workflow(
        ClinicalWrite.run, cmd, id=workflow_id or cmd.workflow_id, task_queue=queue
    )
    typed = env.client.get_workflow_handle_for(ClinicalWrite.run, handle.id)
    return await asyncio.wait_for(result_of(typed), 60)


def assert_rejected_unproved(status: WriteStatus, why: str) -> None:
    assert status.state is WriteState.REJECTED, status.reason
    assert status.error_class == "authorization"
    assert status.reason == f"caller not proved: {why}"
    assert [t.state for t in status.transitions] == [WriteState.REQUESTED, WriteState.REJECTED]
    assert status.attempts == 0


# --- (a) … (d): commands ----------------------------------------------------------------------


async def test_a_command_claiming_nursing_app_and_physician_without_a_credential_is_rejected(
    time_skipping: WorkflowEnvironment, honest: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    forged = command(TENANT, key, samples.heart_rate("attack-a", 71), **NURSING_APP)
    status = await attack(time_skipping, honest.task_queue, forged)

    assert_rejected_unproved(status, "no caller credential")
    assert resources_for_command(ehr.db, TENANT, forged.command_identifier) == 0


async def test_a_credential_signed_by_an_unregistered_key_is_rejected(
    time_skipping: WorkflowEnvironment, honest: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    now = await time_skipping.get_current_time()
    own_key = ed25519.Ed25519PrivateKey.generate()  # all claims right, but not nursing-app's key
    forged = signed(
        command(TENANT, key, samples.heart_rate("attack-b", 72), **NURSING_APP), own_key, now
    )
    status = await attack(time_skipping, honest.task_queue, forged)

    assert_rejected_unproved(status, "credential key not registered for its issuer")
    assert resources_for_command(ehr.db, TENANT, forged.command_identifier) == 0


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("its own workflow", "credential is for another workflow"),
        ("command A's workflow id", "credential is for another command"),
    ],
)
async def test_a_valid_credential_for_command_a_replayed_on_command_b_is_rejected(
    time_skipping: WorkflowEnvironment,
    honest: WritebackClient,
    ehr: SandboxProcess,
    key: str,
    where: str,
    why: str,
) -> None:
    now = await time_skipping.get_current_time()
    a = signed(
        command(TENANT, key, samples.heart_rate("attack-c", 60), **NURSING_APP),
        registered_key(),
        now,
    )
    b = command(TENANT, f"{key}-b", samples.heart_rate("attack-c", 180), **NURSING_APP)
    replayed = b.model_copy(update={"credential": a.credential})
    # B under its own id, or raced in under A's id before A is started
    workflow_id = b.workflow_id if where == "its own workflow" else a.workflow_id
    status = await attack(time_skipping, honest.task_queue, replayed, workflow_id)

    assert_rejected_unproved(status, why)
    assert resources_for_command(ehr.db, TENANT, b.command_identifier) == 0
    if where == "its own workflow":  # the credential itself is good: it proves A
        status_a = await attack(time_skipping, honest.task_queue, a)
        assert status_a.state is WriteState.VERIFIED, status_a.reason
        assert status_a.authorization and status_a.authorization.requested_by == "nursing-app"


async def test_a_sagas_credential_on_a_step_write_its_saga_did_not_start_is_rejected(
    time_skipping: WorkflowEnvironment, honest: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """A saga's steps are proved by the saga's credential only when Temporal records that saga
    as their parent: started directly under a step's id, the saga's credential proves nothing."""
    now = await time_skipping.get_current_time()
    saga = SagaCommand(
        tenant="demo-r4",
        idempotency_key=key,
        kind="vitals",
        steps=[SagaStep(name="hr", resource=samples.heart_rate("attack-s", 75))],
        requested_by="referrals-svc",
        on_behalf_of="Practitioner/dr-1",
    )
    fields = {"tenant", "idempotency_key", "kind", "steps", "requested_by", "on_behalf_of"}
    token = credential(
        registered_key(),
        "referrals-svc",
        saga.workflow_id,
        "demo-r4",
        saga.model_dump(mode="json", include={*fields, "urgency"}),
        now,
        "saga",
        obo="Practitioner/dr-1",
        role=None,
        pou=None,
    )
    step = command(
        "demo-r4",
        saga.step_key("hr"),
        saga.steps[0].resource,
        requested_by="referrals-svc",
        on_behalf_of="Practitioner/dr-1",
        credential=token,
    )
    status = await attack(time_skipping, honest.task_queue, step)

    assert_rejected_unproved(status, "credential is not for a command")
    assert resources_for_command(ehr.db, "demo-r4", step.command_identifier) == 0


async def test_an_expired_credential_is_rejected(
    time_skipping: WorkflowEnvironment, honest: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    long_ago = await time_skipping.get_current_time() - timedelta(minutes=20)
    stale = signed(
        command(TENANT, key, samples.heart_rate("attack-d", 73), **NURSING_APP),
        registered_key(),
        long_ago,
    )
    status = await attack(time_skipping, honest.task_queue, stale)

    assert_rejected_unproved(status, "credential expired")
    assert resources_for_command(ehr.db, TENANT, stale.command_identifier) == 0


# --- (e): a person's decision -----------------------------------------------------------------


async def test_an_override_with_a_forged_by_and_no_valid_credential_is_refused(
    time_skipping: WorkflowEnvironment,
    honest: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """A clinician changed the value to 99; our update (75) waits in conflict. The attacker
    overrides it as operator op-1 — with no credential, then with one of its own key."""
    current, waiting = await conflicting_update(honest, faults, "demo-r4", key)
    assert waiting.state is WriteState.CONFLICT
    now = await time_skipping.get_current_time()
    override = Resolution(action=ResolutionAction.OVERRIDE, by="op-1", reason="urgent")
    own_key = ed25519.Ed25519PrivateKey.generate()
    content = override.model_dump(mode="json", include={"action", "by", "reason", "reference"})
    forged = credential(own_key, "op-1", waiting.workflow_id, "demo-r4", content, now, "decision")
    handle = time_skipping.client.get_workflow_handle_for(ClinicalWrite.run, waiting.workflow_id)

    for attempt, token in enumerate([None, forged]):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                ClinicalWrite.resolve,
                override.model_copy(update={"credential": token}),
                id=f"{key}-forged-{attempt}",
            )
        assert "operator not proved" in str(refused.value.cause)

    status = await honest.status(waiting.workflow_id)
    assert status.state is WriteState.CONFLICT
    assert not any("override" in (t.detail or "") for t in status.transitions)
    stored = (await faults.get(f"/fhir/demo-r4/Observation/{current['id']}")).json()
    assert stored["valueQuantity"]["value"] == 99  # nothing written over the clinician's value

    # the real operator, signing, is still heard; and the run replays as it ran
    abandon = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="theirs stands")
    final = await honest.resolve(waiting.workflow_id, abandon, f"{key}-op-1")
    assert final.state is WriteState.ABANDONED
    replayer = Replayer(
        workflows=[ClinicalWrite],
        data_converter=default_data_converter(),
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(await handle.fetch_history())


# --- (f): a tenant that lists no callers ---------------------------------------------------------


@pytest.fixture
async def listing_nobody(
    time_skipping: WorkflowEnvironment, ehr: SandboxProcess, tmp_path: Path
) -> AsyncIterator[WritebackClient]:
    """A worker for two tenants that say nothing about their callers, or an empty list."""
    blocks = []
    for tenant, callers in (("nobody-r4", ""), ("empty-list-r4", "allowed_callers = []\n")):
        blocks.append(
            f'[[tenant]]\nid = "{tenant}"\nvendor = "generic_r4"\n'
            f'fhir_base_url = "{ehr.url}/fhir/{tenant}"\nallow_insecure_http = true\n'
            "capabilities = { conditional_create = true, if_match = true }\n" + callers
        )
    path = tmp_path / "tenants.toml"
    path.write_text("\n".join(blocks))
    async with running_worker(time_skipping.client, load_tenants(path)) as client:
        yield client


@pytest.mark.parametrize("tenant", ["nobody-r4", "empty-list-r4"])
async def test_a_tenant_with_an_empty_or_missing_caller_list_denies_everyone(
    listing_nobody: WritebackClient, ehr: SandboxProcess, key: str, tenant: str
) -> None:
    cmd = command(tenant, key, samples.heart_rate("attack-f", 74), requested_by="cli")
    await listing_nobody.submit(cmd)  # signed: a proved caller, whom the tenant does not list
    status = await asyncio.wait_for(listing_nobody.wait(cmd.workflow_id), 60)

    assert status.state is WriteState.REJECTED, status.reason
    assert status.error_class == "authorization"
    assert status.reason == "denied by rule 'default-deny' of policy allowed-callers"
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 0
