"""Webhooks (issue 18): a real receiver process, verifying every request with the Standard
Webhooks library, hears of writes that settle; a receiver that was down hears of them once it is
up; a tampered or wrongly signed request is refused by its verification; a receiver that refuses
ends the delivery ``failed``, listed by ``writeback webhooks list --failed`` and delivered by
``resend`` once fixed; no delivered body or header carries clinical content."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli import ROOT, WRITEBACK
from support.ports import free_port
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.webhook_receiver import ReceiverProcess, eventually
from support.workers import running_worker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.audit_ledger import AuditEvent, Notice
from activities.webhook_events import WebhookHandOff
from activities.webhook_post import signed_headers
from adapters.ids import sweep_workflow_id, webhook_delivery_id
from adapters.tenants import TenantRegistry
from adapters.webhooks import WEBHOOKS_ENV, load_webhooks
from workers import samples
from workers.client import WritebackClient
from workflows.contract import (
    Resolution,
    ResolutionAction,
    WriteCommand,
    WriteState,
    workflow_id_for,
)
from workflows.reconcile_contract import SweepRequest, finding_workflow_id
from workflows.reconcile_sweep import ReconcileSweep
from workflows.saga_contract import SagaCommand
from workflows.webhook_delivery import WebhookDelivery

pytestmark = pytest.mark.integration

CANARY = f"CNRY{uuid.uuid4().hex[:10]}"
CANARY_VALUE = 73.8261


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def canary_heart_rate(key: str) -> dict[str, Any]:
    resource = samples.heart_rate(f"{CANARY}-{key}", 73)
    resource["subject"]["display"] = f"Zyxwo {CANARY} Quillbert"
    resource["note"] = [{"text": f"patient {CANARY} felt faint"}]
    resource["valueQuantity"]["value"] = CANARY_VALUE
    return resource


def invalid_heart_rate(key: str) -> dict[str, Any]:
    """Rejected by validation (no effective time), the canary still inside."""
    resource = canary_heart_rate(key)
    del resource["effectiveDateTime"]
    return resource


def write_config(path: Path, url: str, secret: str, **retry: float) -> Path:
    retry = {"attempts": 40, "first_delay_seconds": 0.5, "max_delay_seconds": 2.0, **retry}
    table = ", ".join(f"{name} = {value}" for name, value in retry.items())
    path.write_text(
        "[[endpoint]]\n"
        'id = "crm"\n'
        f'url = "{url}"\n'
        'secret_env = "TEST_WEBHOOK_SECRET"\n'
        'tenants = ["*"]\n'
        "allow_insecure_http = true\n"
        f"retry = {{ {table} }}\n"
    )
    return path


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_secret()
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", value)
    return value


@pytest.fixture
def receivers() -> Iterator[list[ReceiverProcess]]:
    started: list[ReceiverProcess] = []
    yield started
    for receiver in started:
        receiver.stop()


@asynccontextmanager
async def subscribed_worker(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    config: Path,
) -> AsyncIterator[WritebackClient]:
    monkeypatch.setenv(WEBHOOKS_ENV, str(config))
    async with running_worker(dev_server.client, tenants) as client:
        yield client


def bodies_for(receiver: ReceiverProcess, workflow_id: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in receiver.received()
        if entry["verified"] and json.loads(entry["body"])["data"]["id"] == workflow_id
    ]


async def settle(client: WritebackClient, command: WriteCommand) -> str:
    submission = await client.submit(command)
    await client.wait(submission.workflow_id)
    return submission.workflow_id


async def test_signed_events_for_a_verified_and_a_rejected_write_reach_a_real_receiver(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    key: str,
) -> None:
    receiver = ReceiverProcess(free_port(), secret, tmp_path / "got.jsonl")
    receivers.append(receiver)
    config = write_config(tmp_path / "webhooks.toml", receiver.url, secret)
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        good = WriteCommand(tenant="demo-r4", idempotency_key=key, resource=canary_heart_rate(key))
        bad = WriteCommand(
            tenant="demo-r4", idempotency_key=f"{key}-bad", resource=invalid_heart_rate(key)
        )
        verified_id, rejected_id = await asyncio.gather(settle(client, good), settle(client, bad))
        verified = await eventually(lambda: bodies_for(receiver, verified_id))
        rejected = await eventually(lambda: bodies_for(receiver, rejected_id))
        status = await client.status(verified_id)

    assert status.state is WriteState.VERIFIED
    [verified_body] = [json.loads(entry["body"]) for entry in verified]
    assert verified_body["type"] == "write.verified"
    assert verified_body["data"]["resource"] == status.resource
    assert verified_body["data"]["tenant"] == "demo-r4"
    assert verified_body["data"]["error_class"] is None
    assert verified[0]["headers"]["webhook-id"] == verified_body["data"]["event_id"]
    [rejected_body] = [json.loads(entry["body"]) for entry in rejected]
    assert rejected_body["type"] == "write.rejected"
    assert rejected_body["data"]["error_class"] == "validation"
    assert "effective" in rejected_body["data"]["reason"]
    # nothing clinical in any body or header delivered
    everything = json.dumps(receiver.received())
    assert CANARY not in everything
    assert str(CANARY_VALUE) not in everything
    assert "Zyxwo" not in everything

    # the signature is real: the same request tampered with, or signed with another secret, is
    # refused by the receiver's verification
    async with httpx.AsyncClient() as http:
        original = verified[0]
        tampered = original["body"].replace("write.verified", "write.rejected")
        refused_body = await http.post(receiver.url, content=tampered, headers=original["headers"])
        other = signed_headers(new_secret(), "evt-x", original["body"], status.transitions[-1].at)
        wrong_key = await http.post(receiver.url, content=original["body"], headers=other)
    assert refused_body.status_code == wrong_key.status_code == 401
    assert [entry["verified"] for entry in receiver.received()[-2:]] == [False, False]


async def test_a_receiver_that_was_down_gets_every_event_once_it_is_up(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    key: str,
) -> None:
    port = free_port()
    config = write_config(tmp_path / "webhooks.toml", f"http://127.0.0.1:{port}/hooks", secret)
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        commands = [
            WriteCommand(tenant=t, idempotency_key=f"{key}-{t}", resource=canary_heart_rate(key))
            for t in ("demo-r4", "demo-epic")
        ]
        ids = await asyncio.gather(*(settle(client, command) for command in commands))
        deliveries = [
            client.temporal.get_workflow_handle(
                webhook_delivery_id(c.tenant, "crm", f"{c.workflow_id}/t{n}")
            )
            for c in commands
            for n in [len((await client.status(c.workflow_id)).transitions) - 1]
        ]

        async def every_one_tried_and_failed() -> bool:
            for handle in deliveries:
                try:
                    status = await handle.query(WebhookDelivery.status)
                except Exception:  # not started yet
                    return False
                if status.attempts < 2 or status.outcome != "delivering":
                    return False
            return True

        await eventually(every_one_tried_and_failed)
        receiver = ReceiverProcess(port, secret, tmp_path / "got.jsonl")
        receivers.append(receiver)
        got = await eventually(lambda: all(bodies_for(receiver, i) for i in ids))
        results = await asyncio.gather(*(handle.result() for handle in deliveries))

    assert got
    for workflow_id in ids:
        [entry] = bodies_for(receiver, workflow_id)  # once each
        assert json.loads(entry["body"])["type"] == "write.verified"
    assert all(result["outcome"] == "delivered" for result in results)


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The CLI as a subprocess, awaited without blocking this loop (its worker runs here)."""
    proc = await asyncio.create_subprocess_exec(
        *WRITEBACK,
        *args,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_a_refused_delivery_ends_failed_is_listed_and_a_resend_delivers_it(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    key: str,
) -> None:
    port = free_port()
    refusing = ReceiverProcess(port, secret, tmp_path / "refused.jsonl", answer=400)
    receivers.append(refusing)
    config = write_config(tmp_path / "webhooks.toml", refusing.url, secret)
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        command = WriteCommand(
            tenant="demo-r4", idempotency_key=key, resource=canary_heart_rate(key)
        )
        write_id = await settle(client, command)
        transitions = (await client.status(write_id)).transitions
        delivery_id = webhook_delivery_id("demo-r4", "crm", f"{write_id}/t{len(transitions) - 1}")
        handle = client.temporal.get_workflow_handle(delivery_id)

        async def failed() -> bool:
            try:
                described = await handle.describe()
            except Exception:  # not started yet
                return False
            return described.status is WorkflowExecutionStatus.FAILED

        await eventually(failed)
        env = {
            "TEMPORAL_ADDRESS": temporal_address(dev_server),
            "WRITEBACK_TASK_QUEUE": client.task_queue,
        }
        listed_code, listed = await _cli(env, "webhooks", "list", "--failed", "--json")
        refusing.stop()
        fixed = ReceiverProcess(port, secret, tmp_path / "fixed.jsonl")
        receivers.append(fixed)
        resent_code, resent = await _cli(env, "webhooks", "resend", delivery_id)
        got = await eventually(lambda: bodies_for(fixed, write_id))
        delivered = await handle.result()
        again_code, again = await _cli(env, "webhooks", "resend", delivery_id)
        listed_after_code, still_failed = await _cli(env, "webhooks", "list", "--failed")

    assert len(refusing.received()) == 1, "a 400 is permanent: one attempt"
    assert listed_code == 0, listed
    [entry] = [e for e in json.loads(listed) if e["delivery_id"] == delivery_id]
    assert entry["status"] == "failed"
    assert "HTTP 400" in entry["failure"]
    assert resent_code == 0, resent
    assert len(got) == 1
    assert json.loads(got[0]["body"])["type"] == "write.verified"
    assert delivered["outcome"] == "delivered"
    assert again_code == 2 and "only a failed one is resent" in again, again
    assert listed_after_code == 0
    assert delivery_id not in still_failed


def test_the_receiver_refuses_what_its_library_cannot_verify(tmp_path: Path) -> None:
    """The receiver itself (used by the tests above to prove signatures) is not a pushover:
    the product's signing verifies; a wrong secret does not."""
    secret = new_secret()
    receiver = ReceiverProcess(free_port(), secret, tmp_path / "got.jsonl")
    try:
        body = json.dumps({"type": "write.verified"})
        now = datetime.now(UTC)
        good = httpx.post(
            receiver.url, content=body, headers=signed_headers(secret, "e1", body, now)
        )
        bad = httpx.post(
            receiver.url, content=body, headers=signed_headers(new_secret(), "e2", body, now)
        )
    finally:
        receiver.stop()
    assert (good.status_code, bad.status_code) == (204, 401)


async def test_a_saga_that_is_compensated_says_so_and_so_does_its_refused_step(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    faults: httpx.AsyncClient,
) -> None:
    receiver = ReceiverProcess(free_port(), secret, tmp_path / "got.jsonl")
    receivers.append(receiver)
    config = write_config(tmp_path / "webhooks.toml", receiver.url, secret)
    refuse_notify = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}
    await faults.post("/_admin/faults/demo-r4", json={"queue": [refuse_notify]})
    command = SagaCommand(
        tenant="demo-r4",
        idempotency_key=f"sg-{uuid.uuid4().hex[:12]}",
        kind="referral",
        steps=samples.referral(f"{CANARY}-pt"),
    )
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        submission = await client.submit_saga(command)
        status = await client.wait(submission.workflow_id)
        saga = await eventually(lambda: bodies_for(receiver, submission.workflow_id))
        notify_id = workflow_id_for("demo-r4", command.step_key("notify"))
        notify = await eventually(lambda: bodies_for(receiver, notify_id))

    assert status.state is WriteState.COMPENSATED
    [saga_body] = [json.loads(entry["body"]) for entry in saga]
    assert saga_body["type"] == "saga.compensated"
    assert saga_body["data"]["subject"] == "saga"
    assert [json.loads(entry["body"])["type"] for entry in notify] == ["write.rejected"]
    assert CANARY not in json.dumps(receiver.received())


async def test_an_event_handed_over_again_is_delivered_once(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    key: str,
) -> None:
    """The ledger's local activity may run twice (and a write hands over again after a retry):
    the delivery id, fixed per endpoint and event, keeps a second hand-over from sending."""
    receiver = ReceiverProcess(free_port(), secret, tmp_path / "got.jsonl")
    receivers.append(receiver)
    config = write_config(tmp_path / "webhooks.toml", receiver.url, secret)
    write_id = workflow_id_for("demo-r4", key)
    line = AuditEvent(
        entry_key=f"{write_id}/t5",
        tenant="demo-r4",
        correlation_id=write_id,
        kind="transition",
        at=datetime.now(UTC),
        requested_by="cli",
        resource="Observation/123",
        state="verified",
        outcome="verified",
        notice=Notice(),
    )
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        hand_off = WebhookHandOff(client.temporal, load_webhooks(config), client.task_queue)
        await asyncio.gather(hand_off([line]), hand_off([line]))  # at the same time
        handle = client.temporal.get_workflow_handle(
            webhook_delivery_id("demo-r4", "crm", line.entry_key)
        )
        first = await handle.result()
        first_run = (await handle.describe()).run_id
        await hand_off([line])  # and after it was delivered
        latest_run = (await handle.describe()).run_id

    assert first["outcome"] == "delivered"
    assert latest_run == first_run
    assert len(bodies_for(receiver, write_id)) == 1


async def test_a_reconciliation_finding_says_mismatch_and_then_how_a_person_settled_it(
    monkeypatch: pytest.MonkeyPatch,
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    secret: str,
    receivers: list[ReceiverProcess],
    ehr: SandboxProcess,
    key: str,
) -> None:
    receiver = ReceiverProcess(free_port(), secret, tmp_path / "got.jsonl")
    receivers.append(receiver)
    config = write_config(tmp_path / "webhooks.toml", receiver.url, secret)
    command = WriteCommand(tenant="sweep-r4", idempotency_key=key, resource=canary_heart_rate(key))
    async with subscribed_worker(monkeypatch, dev_server, tenants, config) as client:
        written = await client.wait((await client.submit(command)).workflow_id)
        async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-r4") as fhir:
            assert (await fhir.delete(str(written.resource))).status_code == 204

        async def missing_found() -> list[str]:
            report = await client.temporal.execute_workflow(
                ReconcileSweep.run,
                SweepRequest(tenant="sweep-r4"),
                id=sweep_workflow_id("sweep-r4", uuid.uuid4().hex[:12]),
                task_queue=client.task_queue,
            )  # the write's record may lag its verified state by a ledger hand-over
            found = [f for f in report.findings if f.write_id == command.workflow_id]
            return [finding_workflow_id(f) for f in found if f.kind.value == "missing"]

        [finding_id] = await eventually(missing_found)
        mismatch = await eventually(lambda: bodies_for(receiver, finding_id))
        decision = Resolution(action=ResolutionAction.CONFIRM, by="op-1", reason="gone on purpose")
        await client.resolve(finding_id, decision, f"d-{key}")
        settled = await eventually(lambda: len(bodies_for(receiver, finding_id)) == 2)

    assert settled
    types = [json.loads(entry["body"])["type"] for entry in bodies_for(receiver, finding_id)]
    assert types == ["finding.mismatch", "finding.reconciled"]
    first = json.loads(mismatch[0]["body"])["data"]
    assert first["error_class"] == "missing" and first["resource"] == written.resource
    assert "gone on purpose" not in json.dumps(receiver.received())  # a person's words stay out
    assert CANARY not in json.dumps(receiver.received())
