"""The chart before the run, written into the sandbox over its own APIs before any fault or token
is configured: the Observations the updates will change (some already edited by a clinician), and
crowded patients with more than 200 Observations each on the vendors whose deduplication is by
content (athenaOne, Veradigm: written through their proprietary APIs, as their EHR would hold them).
Synthetic data only."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from chaos_plan import ChaosTenant, Seeded, Slot, Target

from workers import samples

#: Crowd readings are taken from here on, one minute apart: never the time of a chaos write.
CROWD_START = datetime(2020, 1, 2, 8, 0, tzinfo=UTC)
T = TypeVar("T")


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code not in (200, 201):
        raise RuntimeError(f"seeding {what}: HTTP {response.status_code}: {response.text[:200]}")
    return response


async def _target(
    http: httpx.AsyncClient, slot: Slot, run: str, clinician: bool
) -> tuple[int, Target]:
    tenant = slot.tenant.id
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    created = _ok(
        await http.post(
            f"/fhir/{tenant}/Observation",
            json=samples.heart_rate(f"upd-{run}-{slot.n}", 70, when),
        ),
        "an update target",
    )
    rid = created.headers["Location"].split("Observation/", 1)[1].split("/")[0]
    body = _ok(await http.get(f"/fhir/{tenant}/Observation/{rid}"), "a read").json()
    note = None
    if clinician:  # version 2: a clinician's note, which our update (based on version 1) must keep
        note = f"clinician note {slot.n}"
        edited = {**body, "note": [{"text": note}]}
        version = (body.get("meta") or {}).get("versionId", "1")
        headers = {"If-Match": f'W/"{version}"'}  # Oracle Health refuses a PUT without it
        edit = await http.put(f"/fhir/{tenant}/Observation/{rid}", json=edited, headers=headers)
        _ok(edit, "a clinician edit")
    return slot.n, Target(f"Observation/{rid}", body, note)


async def _athena_crowd(
    http: httpx.AsyncClient, tenant: ChaosTenant, patient: str, size: int
) -> None:
    practice = "195900"
    groups = [
        [
            {
                "clinicalelementid": "VITALS.HEARTRATE",
                "value": 60 + i % 40,
                "readingtaken": (CROWD_START + timedelta(minutes=i)).strftime("%m/%d/%Y %H:%M:%S"),
            }
        ]
        for i in range(size)
    ]
    form = {"departmentid": "1", "returnvitalids": "true", "vitals": json.dumps(groups)}
    url = f"/athena/{tenant.id}/v1/{practice}/chart/{patient}/vitals"
    answer = _ok(await http.post(url, data=form), "athena vitals").json()
    if len(answer.get("vitalids", [])) != size:
        raise RuntimeError(f"seeding athena vitals: {answer}")


async def _unity_crowd(
    http: httpx.AsyncClient, tenant: ChaosTenant, patient: str, size: int, gate: asyncio.Semaphore
) -> None:
    root = f"/unity/{tenant.id}/json"
    token = _ok(
        await http.post(f"{root}/GetToken", json={"Username": "seed", "Password": ""}), "GetToken"
    ).text

    async def one(i: int) -> None:
        when = (CROWD_START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        readings = [{"loinc": "8867-4", "value": 60 + i % 40, "unit": "/min"}]
        message = {
            "Action": "SaveVitals",
            "Token": token,
            "PatientID": patient,
            "Parameter1": when,
            "Parameter2": json.dumps(readings),
        }
        async with gate:
            answer = _ok(await http.post(f"{root}/MagicJson", json=message), "SaveVitals").json()
        if "savevitalsinfo" not in answer[0]:
            raise RuntimeError(f"seeding Unity SaveVitals: {answer}")

    await asyncio.gather(*(one(i) for i in range(size)))


async def _bounded(gate: asyncio.Semaphore, work: Awaitable[T]) -> T:
    async with gate:
        return await work


async def seed(
    http: httpx.AsyncClient,
    slots: list[Slot],
    tenants: tuple[ChaosTenant, ...],
    rng: random.Random,
    *,
    run: str,
    clinician_share: float,
    crowded_patients: int,
    crowd_size: int,
) -> Seeded:
    seeded = Seeded()
    gate = asyncio.Semaphore(16)
    updates = [slot for slot in slots if slot.kind == "update"]
    clinicians = [rng.random() < clinician_share for _ in updates]
    targets = await asyncio.gather(
        *(
            _bounded(gate, _target(http, slot, run, clinician))
            for slot, clinician in zip(updates, clinicians, strict=True)
        )
    )
    seeded.targets = dict(targets)
    seeded.resources += len(targets)
    crowds: list[Any] = []
    for tenant in tenants:
        if not tenant.crowded:
            continue
        patients = [f"crowd-{run}-{i}" for i in range(crowded_patients)]
        seeded.crowds[tenant.id] = patients
        for patient in patients:
            if tenant.personality == "athena":
                crowds.append(_bounded(gate, _athena_crowd(http, tenant, patient, crowd_size)))
            else:
                crowds.append(_unity_crowd(http, tenant, patient, crowd_size, gate))
            seeded.resources += crowd_size
    await asyncio.gather(*crowds)
    return seeded
