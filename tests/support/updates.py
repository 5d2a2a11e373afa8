"""Updates of an Observation already in the sandbox's chart: the version a user saw, a clinician's
edit in between, and our update (for update and conflict tests)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from support.workflow_runs import command
from workers import samples
from workers.client import WritebackClient
from workflows.contract import Interaction, WriteStatus


async def chart_observation(http: httpx.AsyncClient, tenant: str) -> dict[str, Any]:
    """An Observation already in the chart (written by someone else), version 1."""
    response = await http.post(
        f"/fhir/{tenant}/Observation",
        json=samples.heart_rate(f"upd-{uuid.uuid4().hex[:6]}", 70),
        headers={"Prefer": "return=representation"},
    )
    location = response.headers["Location"]
    resource_id = location.split("Observation/")[-1].split("/")[0]
    read = await http.get(f"/fhir/{tenant}/Observation/{resource_id}")
    return dict(read.json())


async def clinician_edits(http: httpx.AsyncClient, tenant: str, resource: dict[str, Any]) -> None:
    """Another user's edit of the version ``resource`` was read at (If-Match, as Oracle Health
    requires of every update)."""
    response = await http.put(
        f"/fhir/{tenant}/Observation/{resource['id']}",
        json=resource,
        headers={"If-Match": f'W/"{resource["meta"]["versionId"]}"'},
    )
    assert response.status_code == 200, response.text


def our_update(tenant: str, key: str, current: dict[str, Any], value: float) -> Any:
    desired = {k: v for k, v in current.items() if k != "meta"}
    desired["valueQuantity"] = {**current["valueQuantity"], "value": value}
    desired["status"] = "amended"
    return command(
        tenant,
        key,
        desired,
        interaction=Interaction.UPDATE,
        target=f"Observation/{current['id']}",
        base_version=current["meta"]["versionId"],
    )


async def conflicting_update(
    writeback: WritebackClient, http: httpx.AsyncClient, tenant: str, key: str
) -> tuple[dict[str, Any], WriteStatus]:
    """A clinician changes the value (to 99) after the user saw version 1; our update changes it
    too (to 75). Returns the chart's version 1 and the status the write settles in."""
    current = await chart_observation(http, tenant)
    theirs = {**current, "valueQuantity": {**current["valueQuantity"], "value": 99}}
    await clinician_edits(http, tenant, theirs)
    cmd = our_update(tenant, key, current, 75)
    await writeback.submit(cmd)
    return current, await writeback.wait(cmd.workflow_id)
