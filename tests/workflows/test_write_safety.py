"""Write safety on the time-skipping server against the real sandbox: ambiguous outcomes,
fingerprint deduplication, version-aware updates and conflicts, budgets, automatic re-checks,
and the decisions people make on waiting writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from support.audit import (
    current_resources_for_command,
    resources_for_command,
    resources_for_patient,
)
from support.interleave import Interleave, edit_now, our_write_answers
from support.sandbox_process import SandboxProcess
from support.updates import chart_observation, clinician_edits, conflicting_update, our_update
from support.workflow_runs import command, run_to_end, wait_for_state, wait_until_settled
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from workers import samples
from workers.client import DecisionRefused, WritebackClient
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Urgency,
    WriteCommand,
    WriteState,
    WriteStatus,
)

HANG_ON_CREATE = {"kind": "commit_then_hang", "seconds": 3, "method": "POST"}
DROP_ON_CREATE = {"kind": "commit_then_drop", "method": "POST"}
UNAVAILABLE = {"kind": "status", "status": 503}


def decision(action: ResolutionAction, **kw: Any) -> Resolution:
    return Resolution(action=action, by="op-7", reason=f"test {action.value}", **kw)


@pytest.mark.parametrize("tenant", ["fast-r4", "fast-epic", "fast-cerner"])
@pytest.mark.parametrize("lost_answer", ["hang", "drop"])
async def test_a_lost_answer_after_commit_never_duplicates(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    lost_answer: str,
    key: str,
) -> None:
    """The EHR commits, but its answer never arrives (too late, or the connection drops): an
    ambiguous outcome. Where the EHR deduplicates (conditional create) the create is sent again;
    elsewhere nothing is re-sent: a search finds the copy. The write ends verified, counted as
    the only copy, and there is no second resource."""
    fault = HANG_ON_CREATE if lost_answer == "hang" else DROP_ON_CREATE
    await faults.post(f"/_admin/faults/{tenant}", json={"queue": [fault]})
    cmd = command(tenant, key)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert status.ehr_log[0].outcome.startswith("ambiguous")
    if tenant == "fast-r4":  # conditional create: sending again cannot duplicate
        assert status.attempts == 2
        assert "already present" in status.ehr_log[1].outcome
    else:
        assert status.attempts == 1
        assert status.ehr_log[1].step == "locate" and "found" in status.ehr_log[1].outcome
    assert status.copies == 1
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1


async def test_ehr_that_drops_identifiers_is_deduplicated_by_fingerprint(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """This EHR keeps no custom identifier, so our command identifier cannot find what a dropped
    answer left behind: the retry finds the resource by its clinical content instead."""
    await faults.post("/_admin/tenants/drops-ids", json={"allowed_identifier_systems": []})
    patient = f"fp-{uuid.uuid4().hex[:8]}"
    await faults.post("/_admin/faults/drops-ids", json={"queue": [DROP_ON_CREATE]})
    cmd = command("drops-ids", key, samples.heart_rate(patient, 88))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert status.ehr_log[0].outcome.startswith("ambiguous")
    assert status.attempts == 1  # found by its content: nothing re-sent
    assert status.ehr_log[1].step == "locate" and "found" in status.ehr_log[1].outcome
    assert status.copies == 1
    assert resources_for_patient(ehr.db, "drops-ids", f"Patient/{patient}") == 1
    assert resources_for_command(ehr.db, "drops-ids", cmd.command_identifier) == 0  # dropped


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_server_error_to_a_create_is_not_followed_by_a_blind_resend(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    status: int,
    key: str,
) -> None:
    """A 500/502/504 says nothing about whether the EHR committed (a 503 or 429 does: refused,
    unprocessed). On a search-before-create tenant the create is sent again only after searches
    through the quiet period found nothing."""
    fault = {"kind": "status", "status": status, "method": "POST"}
    await faults.post("/_admin/faults/fast-epic", json={"queue": [fault]})
    cmd = command("fast-epic", key)
    status_ = await run_to_end(writeback, cmd)

    assert status_.state is WriteState.VERIFIED
    assert status_.ehr_log[0].outcome.startswith("ambiguous")
    steps = [(e.step, e.outcome) for e in status_.ehr_log]
    resent = steps.index(("write", "HTTP 201: created"))
    assert ("locate", "nothing found after the quiet period: safe to re-send") in steps[:resent]
    assert resources_for_command(ehr.db, "fast-epic", cmd.command_identifier) == 1


@pytest.mark.parametrize("tenant", ["fast-epic", "fast-cerner"])
async def test_an_answer_that_cannot_be_decoded_after_the_commit_is_ambiguous(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    """The EHR commits the create and answers with a body httpx cannot decode (DecodingError, an
    exception outside the taxonomy). It says nothing about the outcome: the write looks for the
    copy instead of rejecting a write that is in the chart."""
    await faults.post(
        f"/_admin/faults/{tenant}", json={"queue": [{"kind": "garbled_answer", "method": "POST"}]}
    )
    cmd = command(tenant, key)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.ehr_log[0].outcome.startswith("ambiguous: POST Observation: DecodingError")
    assert status.attempts == 1 and status.copies == 1
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1


async def committed_then_budget_spent(
    env: WorkflowEnvironment, writeback: WritebackClient, http: httpx.AsyncClient, key: str
) -> tuple[WriteCommand, WriteStatus]:
    """A stat write on fast-r4 whose first attempt commits but times out and whose next four
    get 503: the budget (5) is spent and it waits, though the EHR holds it."""
    unavailable_on_create = {**UNAVAILABLE, "method": "POST"}
    await http.post(
        "/_admin/faults/fast-r4", json={"queue": [HANG_ON_CREATE] + [unavailable_on_create] * 4}
    )
    cmd = command("fast-r4", key, urgency=Urgency.STAT)
    await writeback.submit(cmd)
    return cmd, await wait_until_settled(env, writeback, cmd.workflow_id)


async def test_exhausted_budget_waits_then_finds_the_write_by_itself(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """First attempt commits but times out, the next four get 503: the stat budget (5) is spent
    and the write waits — then its automatic re-check finds the resource and verifies it."""
    cmd, waiting = await committed_then_budget_spent(time_skipping, writeback, faults, key)

    assert waiting.state is WriteState.PENDING_CONFIRMATION
    assert waiting.error_class == "transient"
    assert "retry budget (stat) spent after 5 attempts" in (waiting.reason or "")
    assert waiting.waiting_since is not None and waiting.next_check_at is not None

    await time_skipping.sleep(timedelta(minutes=2))
    final = await wait_for_state(writeback, cmd.workflow_id, WriteState.VERIFIED)
    assert final.state is WriteState.VERIFIED
    assert "automatic re-check" in (final.transitions[-1].detail or "")
    assert resources_for_command(ehr.db, "fast-r4", cmd.command_identifier) == 1


async def test_a_decision_sent_during_an_automatic_recheck_is_answered_not_stranded(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """A write waits after its stat budget ran out (its first attempt did commit). A person's
    decision arrives while the automatic re-check is talking to the EHR — the re-check that then
    finds the write and verifies it. The decision is refused at once with the reason, instead of
    being accepted and never applied (the caller then waited on a write that had ended)."""
    cmd, waiting = await committed_then_budget_spent(time_skipping, writeback, faults, key)
    assert waiting.state is WriteState.PENDING_CONFIRMATION

    for _ in range(400):  # the first attempt's POST, whose answer hangs, is over
        if not (await faults.get("/_admin/in-flight")).json().get("fast-r4"):
            break
        await asyncio.sleep(0.05)
    await faults.post("/_admin/faults/fast-r4", json={"latency_ms": 700})  # a slow re-check
    skipping = asyncio.create_task(time_skipping.sleep(timedelta(minutes=2)))
    for _ in range(400):  # until the re-check's search is being served
        if (await faults.get("/_admin/in-flight")).json().get("fast-r4"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the automatic re-check never reached the EHR")
    with pytest.raises(DecisionRefused, match="automatic re-check of the EHR is running"):
        await writeback.resolve(cmd.workflow_id, decision(ResolutionAction.REVERIFY), key)
    await skipping

    final = await wait_for_state(writeback, cmd.workflow_id, WriteState.VERIFIED)
    assert "automatic re-check" in (final.transitions[-1].detail or "")
    assert resources_for_command(ehr.db, "fast-r4", cmd.command_identifier) == 1


async def spent_stat_budget(
    env: WorkflowEnvironment, writeback: WritebackClient, http: httpx.AsyncClient, key: str
) -> WriteCommand:
    """A stat write on demo-r4 whose 5 attempts all meet a 503: it waits for a person."""
    await http.post("/_admin/faults/demo-r4", json={"queue": [UNAVAILABLE] * 5})
    cmd = command("demo-r4", key, urgency=Urgency.STAT)
    await writeback.submit(cmd)
    settled = await wait_until_settled(env, writeback, cmd.workflow_id)
    assert settled.state is WriteState.PENDING_CONFIRMATION
    return cmd


async def test_retry_decision_resends_with_a_fresh_budget(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    cmd = await spent_stat_budget(time_skipping, writeback, faults, key)
    final = await writeback.resolve(cmd.workflow_id, decision(ResolutionAction.RETRY), key)

    assert final.state is WriteState.VERIFIED
    assert final.attempts > 5  # the decision bought new attempts
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 1


async def planted_copies(http: httpx.AsyncClient, tenant: str, cmd: WriteCommand) -> list[str]:
    """Two copies carrying the command's identifier, e.g. from a hand-built integration that
    wrote it twice before us: their ids, oldest first."""
    body = {
        **cmd.resource,
        "identifier": [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": cmd.command_identifier}],
    }
    ids = []
    for _ in range(2):
        created = await http.post(f"/fhir/{tenant}/Observation", json=body)
        ids.append(created.headers["Location"].split("/")[-1])
    return ids


async def test_several_copies_on_a_create_only_tenant_wait_for_a_person_with_every_reference(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Two copies of one command, on Epic (create only: nothing can be withdrawn through its
    API): never verified. A person's choice does not make the other copy go away, so the write
    keeps waiting and says which copies to withdraw by hand."""
    cmd = command("demo-epic", key)
    ids = await planted_copies(faults, "demo-epic", cmd)
    await writeback.submit(cmd)
    waiting = await writeback.wait(cmd.workflow_id)

    assert waiting.state is WriteState.PENDING_CONFIRMATION
    assert waiting.error_class == "duplicate"
    assert all(f"Observation/{id_}" in (waiting.reason or "") for id_ in ids)
    chosen = decision(ResolutionAction.CONFIRM, reference=f"Observation/{ids[1]}")
    after = await writeback.resolve(cmd.workflow_id, chosen, key)
    assert after.state is WriteState.PENDING_CONFIRMATION
    assert after.error_class == "duplicate" and after.copies == 2
    assert f"Observation/{ids[1]} (this write's) and Observation/{ids[0]}" in (after.reason or "")
    assert "cannot withdraw" in (after.reason or "")
    assert resources_for_command(ehr.db, "demo-epic", cmd.command_identifier) == 2


async def test_several_copies_on_a_tenant_that_can_withdraw_keep_the_oldest(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """On a tenant that can update Observations, the oldest copy stands and the others are
    withdrawn (entered-in-error, not deleted) before it is called verified: one live copy."""
    cmd = command("demo-cerner", key)
    ids = await planted_copies(faults, "demo-cerner", cmd)
    final = await run_to_end(writeback, cmd)

    assert final.state is WriteState.VERIFIED, final.reason
    assert final.resource == f"Observation/{ids[0]}" and final.copies == 1
    assert any(e.step == "withdraw" and f"Observation/{ids[1]}" in e.outcome for e in final.ehr_log)
    stored = current_resources_for_command(ehr.db, "demo-cerner", cmd.command_identifier)
    status_by_id = {resource["id"]: resource["status"] for resource in stored}
    assert status_by_id == {ids[0]: cmd.resource["status"], ids[1]: "entered-in-error"}


# --- updates --------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-cerner", "patch-r4"])
async def test_update_of_the_current_version_is_verified(
    writeback: WritebackClient, faults: httpx.AsyncClient, tenant: str, key: str
) -> None:
    current = await chart_observation(faults, tenant)
    status = await run_to_end(writeback, our_update(tenant, key, current, 75))

    assert status.state is WriteState.VERIFIED
    assert status.version == "2"
    stored = (await faults.get(f"/fhir/{tenant}/Observation/{current['id']}")).json()
    assert stored["valueQuantity"]["value"] == 75 and stored["status"] == "amended"


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-cerner", "patch-r4"])
async def test_stale_version_with_disjoint_changes_is_merged(
    writeback: WritebackClient, faults: httpx.AsyncClient, tenant: str, key: str
) -> None:
    current = await chart_observation(faults, tenant)
    await clinician_edits(faults, tenant, {**current, "note": [{"text": "repeat in 1 h"}]})
    status = await run_to_end(writeback, our_update(tenant, key, current, 75))

    assert status.state is WriteState.VERIFIED
    stored = (await faults.get(f"/fhir/{tenant}/Observation/{current['id']}")).json()
    assert stored["note"] == [{"text": "repeat in 1 h"}]  # the clinician's edit survived
    assert stored["valueQuantity"]["value"] == 75  # and ours landed
    assert stored["meta"]["versionId"] == "3"


@pytest.mark.parametrize(("tenant", "stale_status"), [("demo-r4", 412), ("demo-cerner", 409)])
async def test_a_race_lost_on_if_match_reads_again(
    racing: WritebackClient,
    interleave: Interleave,
    faults: httpx.AsyncClient,
    tenant: str,
    stale_status: int,
    key: str,
) -> None:
    """A clinician writes between our read and our PUT (a real race, not an injected status): our
    PUT carries If-Match with the version we read, so the EHR refuses it — 412 (spec) or 409
    (Oracle Health) — and the update reads the new version, merges, and writes with If-Match on
    that one. The clinician's edit survives; nothing was overwritten."""
    current = await chart_observation(faults, tenant)
    reference = f"Observation/{current['id']}"

    async def clinician_adds_a_note() -> None:
        await edit_now(faults, tenant, reference, lambda r: r.update(note=[{"text": "recheck"}]))

    interleave.before_writes(clinician_adds_a_note)
    cmd = our_update(tenant, key, current, 76)
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    assert [(w.method, w.if_match) for w in interleave.writes] == [
        ("PUT", 'W/"1"'),  # the version we read ...
        ("PUT", 'W/"2"'),  # ... and, after the refusal, the clinician's
    ]
    assert await our_write_answers(faults, tenant, reference) == [stale_status, 200]
    stored = (await faults.get(f"/fhir/{tenant}/{reference}")).json()
    assert stored["note"] == [{"text": "recheck"}] and stored["valueQuantity"]["value"] == 76


async def test_overlapping_changes_are_a_conflict_and_override_writes_ours(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    current, waiting = await conflicting_update(writeback, faults, "demo-r4", key)

    assert waiting.state is WriteState.CONFLICT
    assert "valueQuantity" in (waiting.reason or "")
    assert waiting.next_check_at is None  # a conflict never settles by itself
    override = decision(ResolutionAction.OVERRIDE)
    final = await writeback.resolve(waiting.workflow_id, override, key)
    assert final.state is WriteState.VERIFIED
    stored = (await faults.get(f"/fhir/demo-r4/Observation/{current['id']}")).json()
    assert stored["valueQuantity"]["value"] == 75


async def test_conflict_abandoned_leaves_the_chart_as_the_clinician_left_it(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    current, waiting = await conflicting_update(writeback, faults, "demo-cerner", key)
    assert waiting.state is WriteState.CONFLICT

    final = await writeback.resolve(waiting.workflow_id, decision(ResolutionAction.ABANDON), key)
    assert final.state is WriteState.ABANDONED
    stored = (await faults.get(f"/fhir/demo-cerner/Observation/{current['id']}")).json()
    assert stored["valueQuantity"]["value"] == 99


async def test_override_is_refused_when_there_is_no_conflict(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    cmd = await spent_stat_budget(time_skipping, writeback, faults, key)
    with pytest.raises(DecisionRefused, match="override is only for a write in conflict"):
        await writeback.resolve(cmd.workflow_id, decision(ResolutionAction.OVERRIDE), key)


async def test_update_on_a_create_only_tenant_is_rejected(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    current = await chart_observation(faults, "demo-epic")
    status = await run_to_end(writeback, our_update("demo-epic", key, current, 75))
    assert status.state is WriteState.REJECTED
    assert status.error_class == "unsupported"
    assert "does not accept update of Observation" in (status.reason or "")
