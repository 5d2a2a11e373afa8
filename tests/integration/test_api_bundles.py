"""``POST /fhir/{tenant}`` with FHIR Bundles, over HTTP: the real `writeback api` process in
front of the real Temporal dev server, a `writeback worker` process and the sandbox EHR. A
transaction is one saga (its ``urn:uuid`` references become the EHR's ids), a batch independent
writes; a Bundle that cannot be taken is a 400 naming the element, never quoting it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.api_process import ApiProcess
from support.audit import current_resources_for_command
from support.sandbox_process import SandboxProcess

from workers import samples

pytestmark = pytest.mark.integration

TENANT = "demo-r4"
API_CLIENTS = """
[[client]]
id = "bundle-app"
tenants = ["demo-r4"]
scopes = ["system/*.cu"]
requests_per_second = 50
burst = 200
"""
REFERRAL_SCOPES = ("system/ServiceRequest.c", "system/Task.c", "system/Communication.c")
WAIT = {"Prefer": "wait=60"}


@pytest.fixture
async def http(api: ApiProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=90) as client:
        yield client


def headers(api: ApiProcess, key: str | None, *scopes: str, **extra: str) -> dict[str, str]:
    token = api.token("bundle-app", *(scopes or REFERRAL_SCOPES), user="Practitioner/7")
    sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json", **extra}
    return {**sent, "Idempotency-Key": key} if key else sent


def referral_bundle(patient: str, kind: str = "transaction") -> dict[str, Any]:
    """samples.referral as a FHIR Bundle: the Task and Communication refer to the entries
    before them by their ``urn:uuid`` fullUrls."""
    urls = {step.name: f"urn:uuid:{uuid.uuid4()}" for step in samples.referral(patient)}
    entries = []
    for step in samples.referral(patient):
        resource = step.resource
        if step.name == "task":
            resource = {**resource, "focus": {"reference": urls["request"]}}
        if step.name == "notify":
            about = [{"reference": urls["request"]}, {"reference": urls["task"]}]
            resource = {**resource, "about": about}
        entries.append(
            {
                "fullUrl": urls[step.name],
                "resource": resource,
                "request": {"method": "POST", "url": step.resource_type},
            }
        )
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def stored(ehr: SandboxProcess, key: str, index: int) -> list[dict[str, Any]]:
    """What the sandbox's own database holds for the transaction's entry ``index``."""
    return current_resources_for_command(ehr.db, TENANT, f"{TENANT}:saga.{key}.e{index}")


def response_bundle(answer: httpx.Response, kind: str) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = answer.json()
    assert body["resourceType"] == "Bundle" and body["type"] == kind, body
    return [entry["response"] for entry in body["entry"]]


async def test_a_transaction_is_one_saga_linked_by_the_ehrs_ids(
    http: httpx.AsyncClient, api: ApiProcess, ehr: SandboxProcess, key: str
) -> None:
    bundle = referral_bundle("bundle-pt-1")
    answer = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, **WAIT))

    responses = response_bundle(answer, "transaction-response")
    saga_id = f"wb-saga:{TENANT}:{key}"
    assert answer.headers["Content-Location"] == f"/writes/{saga_id}"
    assert [r["status"] for r in responses] == ["201 Created"] * 3, responses
    request, task, notify = (stored(ehr, key, index)[0] for index in range(3))
    for response, resource in zip(responses, (request, task, notify), strict=True):
        location = f"{resource['resourceType']}/{resource['id']}"
        assert response["location"].startswith(f"{location}/_history/"), response
        assert response["etag"].startswith('W/"'), response
    assert task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert notify["about"] == [
        {"reference": f"ServiceRequest/{request['id']}"},
        {"reference": f"Task/{task['id']}"},
    ]
    # the saga's answer again, from its id
    again = await http.get(f"/writes/{saga_id}/transaction-response", headers=headers(api, None))
    assert response_bundle(again, "transaction-response") == responses


async def test_a_failing_entry_withdraws_the_others_and_the_response_says_so(
    http: httpx.AsyncClient, api: ApiProcess, ehr: SandboxProcess, key: str
) -> None:
    bundle = referral_bundle("bundle-pt-2")
    del bundle["entry"][2]["resource"]["status"]  # Communication.status is required
    accepted = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key))
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["Content-Location"] == f"/writes/wb-saga:{TENANT}:{key}"

    # the same Bundle under the same key is the same saga: wait for it this time
    answer = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, **WAIT))
    request, task, notify = response_bundle(answer, "transaction-response")
    assert notify["status"].startswith("422"), notify
    assert notify["outcome"]["issue"][0]["expression"] == ["Bundle.entry[2]"]
    for withdrawn in (request, task):
        assert withdrawn["status"] == "424 Failed Dependency", withdrawn
        assert "withdrawn" in withdrawn["outcome"]["issue"][0]["diagnostics"]
        assert "after Bundle.entry[2] failed" in withdrawn["outcome"]["issue"][0]["diagnostics"]
    assert [r["status"] for r in stored(ehr, key, 0)] == ["revoked"]
    assert [r["status"] for r in stored(ehr, key, 1)] == ["cancelled"]
    assert stored(ehr, key, 2) == []


async def test_a_malformed_bundle_is_400_naming_the_element_not_its_value(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    patient = f"secret-patient-{uuid.uuid4().hex[:8]}"
    bundle = referral_bundle(patient)
    bundle["entry"][1]["request"]["method"] = "DELETE"
    answer = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key))

    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Bundle.entry[1].request.method"]
    assert patient not in answer.text and "DELETE" not in answer.text
    unknown = await http.get(f"/writes/wb-saga:{TENANT}:{key}", headers=headers(api, None))
    assert unknown.status_code == 404  # nothing started


async def test_an_entry_outside_the_clients_scopes_is_403_and_starts_nothing(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    scopes = ("system/ServiceRequest.c", "system/Task.c")  # no Communication
    bundle = referral_bundle("bundle-pt-3")
    answer = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, *scopes))

    assert answer.status_code == 403, answer.text
    assert "system/Communication.c" in answer.headers["WWW-Authenticate"]
    unknown = await http.get(f"/writes/wb-saga:{TENANT}:{key}", headers=headers(api, None))
    assert unknown.status_code == 404


async def test_the_same_key_with_another_bundle_is_422(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    first = await http.post(
        f"/fhir/{TENANT}", json=referral_bundle("bundle-pt-4"), headers=headers(api, key)
    )
    assert first.status_code == 202, first.text
    other = await http.post(
        f"/fhir/{TENANT}", json=referral_bundle("bundle-pt-5"), headers=headers(api, key)
    )
    assert other.status_code == 422, other.text


async def test_a_batch_is_independent_writes_answered_by_a_batch_response(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    entries = [
        {"resource": samples.heart_rate("bundle-pt-6", bpm), "request": {"method": "POST"}}
        for bpm in (61, 62)
    ]
    for entry in entries:
        entry["request"]["url"] = "Observation"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    scope = "system/Observation.c"
    answer = await http.post(f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, scope))
    assert answer.status_code == 202, answer.text
    expressions = [issue["expression"] for issue in answer.json()["issue"]]
    assert expressions == [["Bundle.entry[0]"], ["Bundle.entry[1]"]]

    settled = await http.post(
        f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, scope, **WAIT)
    )
    responses = response_bundle(settled, "batch-response")
    assert [r["status"] for r in responses] == ["201 Created"] * 2, responses
    assert all(r["location"].startswith("Observation/") for r in responses)


async def test_a_batch_entry_outside_the_clients_scopes_is_403_and_starts_nothing(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    entry = {"resource": samples.heart_rate("bundle-pt-7", 63)}
    entry["request"] = {"method": "POST", "url": "Observation"}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    answer = await http.post(
        f"/fhir/{TENANT}", json=bundle, headers=headers(api, key, "system/Observation.u")
    )

    assert answer.status_code == 403, answer.text
    assert "system/Observation.c" in answer.headers["WWW-Authenticate"]
    unknown = await http.get(f"/writes/wb:{TENANT}:batch.{key}.e0", headers=headers(api, None))
    assert unknown.status_code == 404
