"""An attempt never sends after its deadline (activities/deadline.py), against the real sandbox.

The write activity runs in-process here (temporalio's ActivityEnvironment) so that a test can
hold the tenant's only concurrency slot, or give the attempt a deadline, and then read the
sandbox's own request log: what reached the EHR, not what the product believes it sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support.activities import activity_environment
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command
from temporalio.exceptions import ApplicationError

from activities.deadline import attempt_deadline, wait_for_turn
from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrWrite
from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry

HANG_ON_CREATE = {"kind": "commit_then_hang", "seconds": 4, "method": "POST"}


def order(tenants: TenantRegistry, tenant_id: str, key: str, send_by: datetime) -> EhrWrite:
    tenant = tenants.get(tenant_id)
    assert tenant is not None
    cmd = command(tenant_id, key)
    return EhrWrite(
        tenant=tenant_id,
        request_id=f"{cmd.workflow_id}/write/1",
        request=prepare_create(tenant, cmd.resource, cmd.command_identifier),
        send_by=send_by,
    )


async def requests_seen(http: httpx.AsyncClient, tenant: str) -> list[tuple[str, str]]:
    logged = (await http.get(f"/_admin/requests/{tenant}")).json()["requests"]
    return [(request["method"], request["request_id"]) for request in logged]


async def test_an_attempt_whose_deadline_has_passed_sends_nothing(
    ehr: SandboxProcess, tenants: TenantRegistry, faults: httpx.AsyncClient, key: str
) -> None:
    """A task picked up after its attempt's deadline (a slow worker, a long queue): refused as
    "not sent" (safe to retry), and the EHR sees no request at all."""
    await faults.post("/_admin/reset/demo-cerner")
    late = order(tenants, "demo-cerner", key, datetime.now(UTC) - timedelta(seconds=1))
    async with httpx.AsyncClient() as http:
        with pytest.raises(ApplicationError) as refused:
            await activity_environment().run(EhrWrites(EhrClient(tenants, http)).write, late)

    assert refused.value.type == "transport"
    assert "not sent" in refused.value.message
    assert await requests_seen(faults, "demo-cerner") == []


async def test_an_attempt_waiting_for_a_slot_past_its_deadline_never_sends_later(
    ehr: SandboxProcess, tenants: TenantRegistry, faults: httpx.AsyncClient, key: str
) -> None:
    """The tenant allows one request at a time; the first write holds the slot for 4 s (the EHR
    commits and hangs). A second attempt whose deadline comes first gives up while waiting, and
    nothing of it reaches the EHR afterwards, when the slot frees up."""
    tenant = "one-slot-r4"
    await faults.post(f"/_admin/reset/{tenant}")
    await faults.post(f"/_admin/faults/{tenant}", json={"queue": [HANG_ON_CREATE]})
    now = datetime.now(UTC)
    first = order(tenants, tenant, f"{key}-a", now + timedelta(seconds=30))
    second = order(tenants, tenant, f"{key}-b", now + timedelta(seconds=2.5))
    async with httpx.AsyncClient() as http:
        steps = EhrWrites(EhrClient(tenants, http))
        holding = asyncio.create_task(activity_environment().run(steps.write, first))
        for _ in range(200):  # until the first POST is in the EHR (logged at its arrival)
            if await requests_seen(faults, tenant) or holding.done():
                break
            await asyncio.sleep(0.05)
        with pytest.raises(ApplicationError) as refused:
            await activity_environment().run(steps.write, second)
        receipt = await holding  # the slot frees: would the second one go now?

    assert refused.value.type == "transport"
    assert "concurrent-request slot" in refused.value.message
    assert receipt.created
    assert await requests_seen(faults, tenant) == [("POST", first.request_id)]


async def test_a_request_gets_only_the_time_its_attempt_has_left(
    ehr: SandboxProcess, tenants: TenantRegistry, faults: httpx.AsyncClient, key: str
) -> None:
    """The tenant's timeout is 10 s, the attempt has 3 s: the unanswered POST is given up by the
    deadline (ambiguous, with the instant it was given up: the quiet period counts from there),
    not 10 s later, when the workflow would already have moved on."""
    tenant = "demo-r4"
    await faults.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [{**HANG_ON_CREATE, "seconds": 20}]},
    )
    send_by = datetime.now(UTC) + timedelta(seconds=3)
    async with httpx.AsyncClient() as http:
        with pytest.raises(ApplicationError) as unanswered:
            await activity_environment().run(
                EhrWrites(EhrClient(tenants, http)).write, order(tenants, tenant, key, send_by)
            )

    assert unanswered.value.type == "ambiguous"
    given_up_at = datetime.fromisoformat(unanswered.value.details[1])
    assert given_up_at <= send_by


async def test_a_pacer_slot_later_than_the_deadline_is_not_waited_for() -> None:
    """Waiting for the tenant's pacing happens before the decision to send: a turn that would
    come after the deadline is refused at once ("not sent"), never taken late."""
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    with attempt_deadline(deadline), pytest.raises(ApplicationError) as refused:
        await wait_for_turn(lambda: 5.0, "POST Observation")
    assert refused.value.type == "transport"
    assert "pacing" in refused.value.message
