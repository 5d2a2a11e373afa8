"""Updates and saga withdrawals that cannot lose anyone's change, against the real sandbox:
an update that only removes elements is sent and read back as removed; a tenant without If-Match
is guarded by JSON Patch ``test`` operations on exactly the elements we change; a withdrawal gets
the same guards (If-Match, or ``test`` operations) as an update."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from support.activities import activity_environment
from support.interleave import Interleave, edit_now, our_write_answers
from support.updates import our_update
from support.workflow_runs import command
from temporalio.exceptions import ApplicationError

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrUpdate, EhrVerify, EhrWithdraw, WriteReceipt
from adapters.fhir_r4 import prepare_update
from adapters.tenants import Capabilities, Tenant, TenantRegistry, Vendor
from workers import samples
from workers.client import WritebackClient
from workflows.contract import Interaction, WriteState

WITHDRAWN = {"status": "entered-in-error"}


async def charted(http: httpx.AsyncClient, tenant: str, **extra: Any) -> dict[str, Any]:
    """An Observation someone else put in the chart (version 1), with ``extra`` elements."""
    reading = samples.heart_rate(f"ug-{uuid.uuid4().hex[:8]}", 70) | extra
    created = await http.post(f"/fhir/{tenant}/Observation", json=reading)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    resource_id = location.split("Observation/")[-1].split("/")[0]
    return dict((await http.get(f"/fhir/{tenant}/Observation/{resource_id}")).json())


def update_of(tenant: str, key: str, current: dict[str, Any], desired: dict[str, Any]) -> Any:
    return command(
        tenant,
        key,
        desired,
        interaction=Interaction.UPDATE,
        target=f"Observation/{current['id']}",
        base_version=current["meta"]["versionId"],
    )


def without(resource: dict[str, Any], path: str) -> dict[str, Any]:
    """``resource`` less its meta and the element at ``path`` (``a`` or ``a.b``)."""
    desired = {k: (dict(v) if isinstance(v, dict) else v) for k, v in resource.items()}
    desired.pop("meta")
    *parents, last = path.split(".")
    node = desired
    for name in parents:
        node = node[name]
    del node[last]
    return desired


def present(resource: dict[str, Any], path: str) -> bool:
    node: Any = resource
    for name in path.split("."):
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return True


async def run_step(tenants: TenantRegistry, interleave: Interleave, step: str, order: Any) -> Any:
    """One EHR step (activity) on an interleaving client."""
    async with interleave.client() as http:
        steps = EhrWrites(EhrClient(tenants, http))
        return await activity_environment().run(getattr(steps, step), order)


def ehr_update(
    tenants: TenantRegistry, tenant: str, key: str, desired: dict[str, Any]
) -> EhrUpdate:
    profile = tenants.get(tenant)
    assert profile is not None
    request = prepare_update(profile, desired, f"Observation/{desired['id']}")
    return EhrUpdate(tenant=tenant, request_id=f"{key}/update/1", request=request, base_version="1")


# --- 1. an update that only removes ------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-cerner", "patch-r4", "patch-only-r4"])
@pytest.mark.parametrize("removed", ["note", "valueQuantity.comparator"])
async def test_an_update_that_only_removes_an_element_removes_it(
    racing: WritebackClient,
    interleave: Interleave,
    faults: httpx.AsyncClient,
    tenant: str,
    removed: str,
    key: str,
) -> None:
    """Dropping an element (top-level or nested) is a change: it is written, and the write is
    verified only once the read-back shows the element gone."""
    current = await charted(
        faults,
        tenant,
        note=[{"text": "recheck"}],
        valueQuantity={**samples.heart_rate("p", 70)["valueQuantity"], "comparator": ">="},
    )
    cmd = update_of(tenant, key, current, without(current, removed))
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    assert len(interleave.writes) == 1  # sent, not taken as already applied
    stored = (await faults.get(f"/fhir/{tenant}/Observation/{current['id']}")).json()
    assert not present(stored, removed)
    assert stored["meta"]["versionId"] == "2"


async def test_read_back_after_a_removal_fails_when_the_element_is_back(
    tenants: TenantRegistry, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """The read-back of an update must find what we removed gone (not only what we sent there):
    the note is put back after our update, and verification reports it."""
    current = await charted(faults, "demo-r4", note=[{"text": "recheck"}])
    order = ehr_update(tenants, "demo-r4", key, without(current, "note"))
    receipt: WriteReceipt = await run_step(tenants, interleave, "update", order)
    assert receipt.sent is not None
    reference = f"Observation/{current['id']}"
    await edit_now(faults, "demo-r4", reference, lambda r: r.update(note=[{"text": "recheck"}]))

    verify = EhrVerify(
        tenant="demo-r4", request_id=f"{key}/verify/1", receipt=receipt, expected=receipt.sent
    )
    verification = await run_step(tenants, interleave, "verify", verify)
    assert verification.differences == ["note"]


# --- 2. PATCH without If-Match: `test` operations --------------------------------------------


async def test_patch_without_if_match_tests_exactly_the_elements_it_changes(
    racing: WritebackClient, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """A clinician adds a note between our read and our PATCH: our patch tests only the elements
    it changes (status, valueQuantity), so it still applies, and both changes stand."""
    current = await charted(faults, "patch-only-r4")
    reference = f"Observation/{current['id']}"

    async def clinician_adds_a_note() -> None:
        await edit_now(faults, "patch-only-r4", reference, lambda r: r.update(note=[{"text": "n"}]))

    interleave.before_writes(clinician_adds_a_note)
    cmd = our_update("patch-only-r4", key, current, 75)
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    (patch,) = interleave.writes
    assert (patch.method, patch.if_match) == ("PATCH", None)
    assert [op for op in patch.body if op["op"] == "test"] == [
        {"op": "test", "path": "/status", "value": "final"},
        {"op": "test", "path": "/valueQuantity", "value": current["valueQuantity"]},
    ]
    stored = (await faults.get(f"/fhir/patch-only-r4/{reference}")).json()
    assert stored["note"] == [{"text": "n"}] and stored["valueQuantity"]["value"] == 75


async def test_patch_without_if_match_is_refused_when_what_it_changes_changed(
    racing: WritebackClient, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """A clinician changes the value between our read and our PATCH: the patch's `test` on the
    value fails at the EHR (422), the update reads again, finds overlapping changes, and waits
    for a person. The clinician's value was not overwritten (the lost update of a tenant with
    no If-Match)."""
    current = await charted(faults, "patch-only-r4")
    reference = f"Observation/{current['id']}"

    async def clinician_corrects_the_value() -> None:
        def change(resource: dict[str, Any]) -> None:
            resource["valueQuantity"]["value"] = 99

        await edit_now(faults, "patch-only-r4", reference, change)

    interleave.before_writes(clinician_corrects_the_value)
    cmd = our_update("patch-only-r4", key, current, 75)
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.CONFLICT, status.reason
    assert "valueQuantity" in (status.reason or "")
    assert await our_write_answers(faults, "patch-only-r4", reference) == [422]
    stored = (await faults.get(f"/fhir/patch-only-r4/{reference}")).json()
    assert stored["valueQuantity"]["value"] == 99


async def test_patch_without_if_match_adding_an_element_is_refused_when_someone_added_it(
    racing: WritebackClient, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """Our update adds a note the resource did not have; a clinician adds theirs between our read
    and our PATCH. A `test` cannot say "absent", so the patch tests the version read: the EHR
    refuses it, and the two notes are a conflict for a person instead of ours replacing theirs."""
    current = await charted(faults, "patch-only-r4")
    reference = f"Observation/{current['id']}"

    async def clinician_adds_a_note() -> None:
        await edit_now(faults, "patch-only-r4", reference, lambda r: r.update(note=[{"text": "c"}]))

    interleave.before_writes(clinician_adds_a_note)
    desired = {k: v for k, v in current.items() if k != "meta"} | {"note": [{"text": "ours"}]}
    cmd = update_of("patch-only-r4", key, current, desired)
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.CONFLICT, status.reason
    assert "note" in (status.reason or "")
    (patch,) = interleave.writes
    assert patch.body[0] == {"op": "test", "path": "/meta/versionId", "value": "1"}
    stored = (await faults.get(f"/fhir/patch-only-r4/{reference}")).json()
    assert stored["note"] == [{"text": "c"}]


async def test_a_refused_patch_that_lost_no_race_is_not_retried_as_one(
    tenants: TenantRegistry, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """422 answers a failed `test` and an invalid result alike: nothing changed since our read,
    so this one is the EHR refusing our update (no code) — a validation failure, sent once."""
    current = await charted(faults, "patch-only-r4")
    order = ehr_update(tenants, "patch-only-r4", key, without(current, "code"))
    with pytest.raises(ApplicationError) as failure:
        await run_step(tenants, interleave, "update", order)

    assert failure.value.type == "validation"
    assert len(interleave.writes) == 1


async def test_an_update_with_no_version_to_match_is_not_sent(key: str) -> None:
    """If-Match needs the version read: an EHR that answers a read with none (no meta.versionId,
    no ETag) leaves nothing to guard a PUT with on a tenant without PATCH — refused unsent."""
    stored = samples.heart_rate("p", 70) | {"id": "o1"}
    methods: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return httpx.Response(200, json=stored)

    versionless = Tenant(
        id="versionless",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        capabilities=Capabilities(
            if_match=True, writable={"Observation": [Interaction.CREATE, Interaction.UPDATE]}
        ),
    )
    registry = TenantRegistry([versionless], source="test")
    order = ehr_update(registry, "versionless", key, stored | {"status": "amended"})
    order = order.model_copy(update={"override": True})  # no version to compare with the base
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        with pytest.raises(ApplicationError) as failure:
            await activity_environment().run(EhrWrites(EhrClient(registry, http)).update, order)

    assert failure.value.type == "unsupported"
    assert methods == ["GET"]


# --- 4. saga withdrawal ------------------------------------------------------------------------


def withdrawal_of(tenant: str, key: str, current: dict[str, Any]) -> EhrWithdraw:
    return EhrWithdraw(
        tenant=tenant,
        request_id=f"{key}/withdraw/1",
        target=f"Observation/{current['id']}",
        withdrawal=WITHDRAWN,
        written={"status": current["status"]},
    )


@pytest.mark.parametrize(("tenant", "stale_status"), [("demo-r4", 412), ("demo-cerner", 409)])
async def test_a_withdrawal_race_lost_on_if_match_reads_again(
    tenants: TenantRegistry,
    interleave: Interleave,
    faults: httpx.AsyncClient,
    tenant: str,
    stale_status: int,
    key: str,
) -> None:
    """A clinician annotates what we wrote between our read and our withdrawal: the PUT carries
    If-Match with the version read, is refused, and the withdrawal is written on the new version,
    keeping the note."""
    current = await charted(faults, tenant)
    reference = f"Observation/{current['id']}"

    async def clinician_adds_a_note() -> None:
        await edit_now(faults, tenant, reference, lambda r: r.update(note=[{"text": "n"}]))

    interleave.before_writes(clinician_adds_a_note)
    receipt = await run_step(tenants, interleave, "withdraw", withdrawal_of(tenant, key, current))

    assert receipt.version == "3"
    assert [(w.method, w.if_match) for w in interleave.writes] == [
        ("PUT", 'W/"1"'),
        ("PUT", 'W/"2"'),
    ]
    assert await our_write_answers(faults, tenant, reference) == [stale_status, 200]
    stored = (await faults.get(f"/fhir/{tenant}/{reference}")).json()
    assert stored["status"] == "entered-in-error" and stored["note"] == [{"text": "n"}]


async def test_a_withdrawal_by_patch_without_if_match_tests_what_it_changes(
    tenants: TenantRegistry, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """A clinician amends the status between our read and our withdrawal PATCH: the `test` on
    the status fails at the EHR, the withdrawal reads again and finds the status changed since
    we wrote it — a conflict for a person, not an overwrite of the clinician's status."""
    current = await charted(faults, "patch-only-r4")
    reference = f"Observation/{current['id']}"

    async def clinician_amends() -> None:
        await edit_now(faults, "patch-only-r4", reference, lambda r: r.update(status="amended"))

    interleave.before_writes(clinician_amends)
    with pytest.raises(ApplicationError) as failure:
        await run_step(
            tenants, interleave, "withdraw", withdrawal_of("patch-only-r4", key, current)
        )

    assert failure.value.type == "conflict"
    (patch,) = interleave.writes
    assert (patch.method, patch.if_match) == ("PATCH", None)
    assert patch.body == [
        {"op": "test", "path": "/status", "value": "final"},
        {"op": "add", "path": "/status", "value": "entered-in-error"},
    ]
    stored = (await faults.get(f"/fhir/patch-only-r4/{reference}")).json()
    assert stored["status"] == "amended"
