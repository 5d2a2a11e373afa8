"""One write's EHR exchange on a conditional-create (strict R4) tenant, as writeback's activities
send it: a POST with ``If-None-Exist`` on the command identifier, then a GET of what it created.

Shared by the direct baseline (bench/writes.py) and the hand-built outbox's worker
(bench/outbox.py), which runs in a process of its own: keep this module's imports light.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, FHIR_JSON


async def create_and_read(
    http: httpx.AsyncClient, base_url: str, body: dict[str, Any], identifier: str
) -> str:
    """Conditional create of ``body`` (an Observation carrying the command identifier
    ``identifier``) then read it back; the resource's id."""
    created = await http.post(
        f"{base_url}/Observation",
        json=body,
        headers={
            "Content-Type": FHIR_JSON,
            "Accept": FHIR_JSON,
            "If-None-Exist": "identifier="
            + quote(f"{COMMAND_IDENTIFIER_SYSTEM}|{identifier}", safe=""),
        },
    )
    if created.status_code not in (200, 201):
        raise RuntimeError(f"POST answered {created.status_code}")
    resource_id = str(created.json()["id"]) if created.content else _id_from(created)
    read = await http.get(f"{base_url}/Observation/{resource_id}", headers={"Accept": FHIR_JSON})
    if read.status_code != 200:
        raise RuntimeError(f"GET answered {read.status_code}")
    return resource_id


def _id_from(response: httpx.Response) -> str:
    location = response.headers["Location"]
    return location.split("/Observation/", 1)[1].split("/", 1)[0]
