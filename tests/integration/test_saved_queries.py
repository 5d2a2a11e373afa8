"""Issue 10, acceptance 2: the visibility queries the README documents for the exception queue
return exactly the writes they name, on a dev server of their own (so no other test's writes are
in the way). Writes are made to wait in `pending_confirmation` the quick way: the EHR already holds
two resources carrying the command's identifier (a duplicate a person must choose between)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support.temporal import dev_server_environment
from support.workers import running_worker

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import Urgency, WriteCommand, WriteState

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_TIME = "2026-11-25T08:00:00Z"


def saved_queries() -> dict[str, str]:
    """The README's table of saved views: view name -> query."""
    section = README.read_text().split("### Saved views of the exception queue", 1)[1]
    rows = re.findall(r"^\| ([^|`]+?) \| `(.+)` \|$", section.split("\n### ", 1)[0], re.MULTILINE)
    return dict(rows)


@pytest.fixture(scope="module")
async def own_server(tenants: TenantRegistry) -> AsyncIterator[WritebackClient]:
    env = await dev_server_environment()
    try:
        async with running_worker(env.client, tenants) as client:
            yield client
    finally:
        await env.shutdown()


async def submit_duplicated(
    client: WritebackClient, ehr: httpx.AsyncClient, cmd: WriteCommand
) -> None:
    """Two copies of the command in the EHR before it is submitted. Where the tenant can withdraw
    the extra copy (Oracle Health), a clinician amended it first: it is not withdrawn over their
    change, so the write waits for a person there too."""
    body = {
        **cmd.resource,
        "identifier": [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": cmd.command_identifier}],
    }
    amended = {**body, "status": "amended"} if cmd.tenant == "demo-cerner" else body
    for copy in (body, amended):
        assert (await ehr.post(f"/fhir/{cmd.tenant}/Observation", json=copy)).status_code == 201
    await client.submit(cmd)


def ids(commands: list[WriteCommand]) -> set[str]:
    return {c.workflow_id for c in commands}


async def listed(client: WritebackClient, query: str, expected: set[str]) -> set[str]:
    """The query's workflow ids, once visibility (eventually consistent) shows ``expected`` or
    after 30 s, whichever comes first."""
    found: set[str] = set()
    for _ in range(150):
        found = {execution.id async for execution in client.temporal.list_workflows(query)}
        if found == expected:
            break
        await asyncio.sleep(0.2)
    return found


async def test_readme_saved_queries_return_exactly_their_writes(
    own_server: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    client = own_server

    def cmd(tenant: str, n: int, urgency: Urgency = Urgency.ROUTINE) -> WriteCommand:
        resource = samples.heart_rate(f"sq-{key}-{n}", 60 + n)
        return WriteCommand(
            tenant=tenant, idempotency_key=f"{key}-{n}", resource=resource, urgency=urgency
        )

    epic_waiting = [
        cmd("demo-epic", 0, urgency=Urgency.STAT),
        cmd("demo-epic", 1),
        cmd("demo-epic", 2),
    ]
    cerner_waiting = [cmd("demo-cerner", 3)]
    epic_verified = [cmd("demo-epic", 4), cmd("demo-epic", 5)]
    invalid = samples.heart_rate(f"sq-{key}-6", 61)
    del invalid["subject"]
    epic_rejected = [WriteCommand(tenant="demo-epic", idempotency_key=f"{key}-6", resource=invalid)]
    for waiting in epic_waiting + cerner_waiting:
        await submit_duplicated(client, faults, waiting)
    for other in epic_verified + epic_rejected:
        await client.submit(other)
    finals = {
        c.workflow_id: (await client.wait(c.workflow_id)).state
        for c in epic_waiting + cerner_waiting + epic_verified + epic_rejected
    }
    assert [finals[c.workflow_id] for c in epic_waiting + cerner_waiting] == [
        WriteState.PENDING_CONFIRMATION
    ] * 4
    assert [finals[c.workflow_id] for c in epic_verified] == [WriteState.VERIFIED] * 2
    assert finals[epic_rejected[0].workflow_id] is WriteState.REJECTED

    after_all_waiting = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")
    expected = {
        "exception queue (everything waiting for a person)": ids(epic_waiting + cerner_waiting),
        "pending confirmation, one tenant": ids(epic_waiting),
        "duplicates in the EHR waiting for a choice": ids(epic_waiting + cerner_waiting),
        "stat writes waiting": ids(epic_waiting[:1]),
        "conflicts, one vendor": set(),
        "rejected, one tenant": ids(epic_rejected),
        "waiting since before a time": ids(epic_waiting + cerner_waiting),
    }
    queries = saved_queries()
    assert queries.keys() == expected.keys()
    for view, query in queries.items():
        query = query.replace(EXAMPLE_TIME, after_all_waiting.replace("+00:00", "Z"))
        assert await listed(client, query, expected[view]) == expected[view], view

    # `writeback review list` is the first view
    assert {w.workflow_id for w in await client.waiting()} == ids(epic_waiting + cerner_waiting)
