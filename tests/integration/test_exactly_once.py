"""Exactly once where the EHR cannot deduplicate, on real time (the Temporal dev server: quiet
periods and the EHR's index lag run on the same clock, as in production).

The lag tenants (tests/support/tenants.py) have a 1 s request timeout and a 2 s late-commit
window, so the quiet period after an unanswered create is 2 s + 5 s margin, counted from the
latest moment the request could have been sent. Each test makes the EHR's search lag behind
its writes by longer than a retry's backoff — the case that duplicated before.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from support.audit import (
    live_resources_for_command,
    resources_for_command,
    resources_for_patient,
)
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

pytestmark = pytest.mark.integration

DROP_ON_CREATE = {"kind": "commit_then_drop", "method": "POST"}
INDEX_LAG = 4  # seconds: longer than the first retry's backoff (0-1 s), shorter than quiet


async def posts(http: httpx.AsyncClient, tenant: str) -> int:
    logged = (await http.get(f"/_admin/requests/{tenant}")).json()["requests"]
    return sum(1 for request in logged if request["method"] == "POST")


@pytest.mark.parametrize("tenant", ["lag-epic", "lag-cerner", "lag-r4"])
async def test_a_lost_answer_behind_a_lagging_index_is_found_not_sent_again(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    """The EHR commits, drops the answer, and its search does not show the copy for 4 s. A
    search-before-create tenant must not send the create again while the quiet period runs: a
    later search finds the copy. (Before: one search ~1 s later found nothing, a second POST
    went out, and both copies were reported verified.) A conditional-create tenant may re-send
    (the EHR deduplicates) but is verified only when a count after the quiet period shows one
    copy."""
    await faults.post(f"/_admin/reset/{tenant}")
    await faults.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [DROP_ON_CREATE], "index_delay_seconds": INDEX_LAG},
    )
    cmd = command(tenant, key)
    await writeback.submit(cmd)
    status = await writeback.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.copies == 1
    assert live_resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1
    if tenant == "lag-r4":
        # its If-None-Exist searches the same lagging index, so the re-sent create may make a
        # second copy: the count after the quiet period finds it, and it is withdrawn
        extra = resources_for_command(ehr.db, tenant, cmd.command_identifier) - 1
        assert extra == sum(1 for e in status.ehr_log if e.step == "withdraw")
    else:
        assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1
        assert await posts(faults, tenant) == 1  # nothing sent again
        assert any(e.step == "locate" and e.outcome == "nothing found" for e in status.ehr_log)


async def test_a_fingerprint_tenant_behind_a_lagging_index_is_not_written_twice(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """The same on an EHR that keeps no identifier of ours: the copy is found by its content."""
    tenant = "lag-ids"
    await faults.post(f"/_admin/reset/{tenant}")
    await faults.post(f"/_admin/tenants/{tenant}", json={"allowed_identifier_systems": []})
    await faults.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [DROP_ON_CREATE], "index_delay_seconds": INDEX_LAG},
    )
    patient = f"fp-{uuid.uuid4().hex[:8]}"
    cmd = command(tenant, key, samples.heart_rate(patient, 91))
    await writeback.submit(cmd)
    status = await writeback.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.copies == 1
    assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == 1
    assert await posts(faults, tenant) == 1


async def test_a_copy_the_search_never_shows_in_time_is_sent_once_more_and_both_are_caught(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Beyond what the tenant promised (an index lagging 12 s, longer than the quiet period):
    the create is sent again after the quiet period, and the one-copy check that follows finds
    both copies. Cerner can withdraw an Observation: the extra copy is marked entered-in-error
    (never deleted) and the write is verified as the only live copy."""
    tenant = "lag-cerner"
    await faults.post(f"/_admin/reset/{tenant}")
    await faults.post(
        f"/_admin/faults/{tenant}", json={"queue": [DROP_ON_CREATE], "index_delay_seconds": 12}
    )
    cmd = command(tenant, key)
    await writeback.submit(cmd)
    status = await writeback.wait(cmd.workflow_id)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.copies == 1
    assert any(e.step == "withdraw" for e in status.ehr_log)
    assert await posts(faults, tenant) == 2
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 2
    assert live_resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1
