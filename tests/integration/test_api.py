"""The HTTP API as its users meet it: the real `writeback api` process over HTTP, in front of the
real Temporal dev server, a real `writeback worker` process and the sandbox EHR.

The worker checks each command's credential as for any caller: the API signs it with its own
caller key as the token's client, and the worker's registry holds that key for each API client
(as `writeback api-callers` prints it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api_process import ApiProcess
from support.audit import resources_for_command
from support.ports import free_port
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from temporalio.testing import WorkflowEnvironment

from adapters.callers import CallerSigner
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand

pytestmark = pytest.mark.integration

TENANT = "demo-r4"
USER = "Practitioner/7"
API_CLIENTS = """
[[client]]
id = "api-app"
tenants = ["demo-r4", "demo-cerner"]
scopes = ["system/*.cu"]
requests_per_second = 50
burst = 200

[[client]]
id = "api-operator"
tenants = ["demo-r4"]
scopes = ["writeback/operator", "system/*.cu"]
requests_per_second = 50
burst = 200

[[client]]
id = "api-slow"
tenants = ["demo-r4"]
scopes = ["system/*.cu"]
requests_per_second = 0.05
burst = 2
"""
WRITE = "system/Observation.cu"
SETTLE_SECONDS = 60


@pytest.fixture
async def http(api: ApiProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        yield client


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def app_headers(api: ApiProcess, key: str | None = None, **extra: str) -> dict[str, str]:
    headers = bearer(api.token("api-app", WRITE, user=USER), **extra)
    headers.setdefault("Content-Type", "application/fhir+json")
    if key:
        headers["Idempotency-Key"] = key
    return headers


def heart_rate(bpm: int = 72, patient: str = "api-patient") -> dict[str, Any]:
    return samples.heart_rate(patient, bpm)


async def settled(http: httpx.AsyncClient, api: ApiProcess, location: str) -> dict[str, Any]:
    """GET the write until it is settled (verified, rejected, or waiting for a person)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    settled_states = {"verified", "reconciled", "rejected", "abandoned", "conflict"}
    settled_states |= {"pending_confirmation", "mismatch"}
    while True:
        answer = await http.get(location, headers=bearer(api.token("api-app", WRITE)))
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        if status["state"] in settled_states:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.3)


def outcome(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert code in [issue["code"] for issue in body["issue"]], body
    return body


# --- writes ----------------------------------------------------------------------------------


async def test_a_create_is_accepted_then_settles_verified(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    answer = await http.post(
        f"/fhir/{TENANT}/Observation", json=heart_rate(), headers=app_headers(api, key)
    )
    assert answer.status_code == 202, answer.text
    location = answer.headers["Content-Location"]
    assert location == f"/writes/wb:{TENANT}:{key}"
    assert answer.json()["resourceType"] == "OperationOutcome"
    status = await settled(http, api, location)
    assert status["state"] == "verified", status
    # the caller is the token's client, the user its fhirUser, proved to the worker
    assert status["authorization"]["requested_by"] == "api-app"
    assert status["authorization"]["on_behalf_of"] == USER
    assert any(
        check.startswith("caller-credential:api-app@")
        for check in status["authorization"]["checks"]
    )


async def test_prefer_wait_answers_201_with_the_ehrs_location_and_etag(
    http: httpx.AsyncClient, api: ApiProcess, ehr: SandboxProcess, key: str
) -> None:
    answer = await http.post(
        f"/fhir/{TENANT}/Observation",
        json=heart_rate(),
        headers=app_headers(api, key, Prefer="wait=30"),
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Location"].startswith(f"{ehr.url}/fhir/{TENANT}/Observation/")
    assert "/_history/1" in answer.headers["Location"]
    assert answer.headers["ETag"] == 'W/"1"'
    assert answer.headers["Content-Location"] == f"/writes/wb:{TENANT}:{key}"
    body = answer.json()
    assert body["issue"][0]["details"]["coding"][0]["code"] == "verified"


async def test_the_same_key_twice_is_one_write(
    http: httpx.AsyncClient, api: ApiProcess, ehr: SandboxProcess, key: str
) -> None:
    resource = heart_rate(81)
    answers = await asyncio.gather(
        *(
            http.post(f"/fhir/{TENANT}/Observation", json=resource, headers=app_headers(api, key))
            for _ in range(3)
        )
    )
    assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
    assert {a.headers["Content-Location"] for a in answers} == {f"/writes/wb:{TENANT}:{key}"}
    status = await settled(http, api, answers[0].headers["Content-Location"])
    assert status["state"] == "verified", status
    again = await http.post(
        f"/fhir/{TENANT}/Observation",
        json=resource,
        headers=app_headers(api, key, Prefer="wait=10"),
    )
    assert again.status_code == 201, again.text  # as for the first, now that it is verified
    assert resources_for_command(ehr.db, TENANT, f"{TENANT}:{key}") == 1


async def test_the_same_key_with_another_body_is_422(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    body = heart_rate(60)
    first = await http.post(f"/fhir/{TENANT}/Observation", json=body, headers=app_headers(api, key))
    assert first.status_code == 202, first.text
    again = await http.post(f"/fhir/{TENANT}/Observation", json=body, headers=app_headers(api, key))
    assert again.status_code == 202, again.text
    other = await http.post(
        f"/fhir/{TENANT}/Observation",
        json={**body, "valueQuantity": {**body["valueQuantity"], "value": 61}},
        headers=app_headers(api, key),
    )
    outcome(other, 422, "conflict")
    # another user with the same key and body is another request too
    token = api.token("api-app", WRITE, user="Practitioner/8")
    headers = bearer(token, **{"Idempotency-Key": key, "Content-Type": "application/json"})
    another_user = await http.post(f"/fhir/{TENANT}/Observation", json=body, headers=headers)
    outcome(another_user, 422, "conflict")


async def test_without_a_key_the_same_request_is_one_write_under_a_keyed_digest(
    http: httpx.AsyncClient, api: ApiProcess
) -> None:
    resource = heart_rate(uuid.uuid4().int % 100 + 50, patient=f"p-{uuid.uuid4().hex[:6]}")
    first = await http.post(f"/fhir/{TENANT}/Observation", json=resource, headers=app_headers(api))
    second = await http.post(f"/fhir/{TENANT}/Observation", json=resource, headers=app_headers(api))
    assert first.status_code == second.status_code == 202
    location = first.headers["Content-Location"]
    assert location == second.headers["Content-Location"]
    assert location.startswith(f"/writes/wb:{TENANT}:hk-")
    assert resource["subject"]["reference"].split("/")[1] not in location  # a keyed digest


async def test_a_stale_if_match_takes_the_writes_conflict_path(
    http: httpx.AsyncClient, api: ApiProcess, ehr: SandboxProcess, key: str
) -> None:
    created = await http.post(
        f"/fhir/{TENANT}/Observation",
        json=heart_rate(70),
        headers=app_headers(api, key, Prefer="wait=30"),
    )
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == 'W/"1"'
    resource_id = created.headers["Location"].split("/Observation/")[1].split("/")[0]
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{TENANT}") as chart:
        current = (await chart.get(f"/Observation/{resource_id}")).json()
        theirs = {**current, "valueQuantity": {**current["valueQuantity"], "value": 99}}
        assert (await chart.put(f"/Observation/{resource_id}", json=theirs)).is_success
    ours = {**heart_rate(75), "id": resource_id, "subject": current["subject"]}
    ours["effectiveDateTime"] = current["effectiveDateTime"]
    without = await http.put(
        f"/fhir/{TENANT}/Observation/{resource_id}", json=ours, headers=app_headers(api)
    )
    outcome(without, 428, "required")
    updated = await http.put(
        f"/fhir/{TENANT}/Observation/{resource_id}",
        json=ours,
        headers=app_headers(api, f"{key}-u", Prefer="wait=30", **{"If-Match": 'W/"1"'}),
    )
    body = outcome(updated, 202, "conflict")
    assert body["issue"][0]["details"]["coding"][0]["code"] == "conflict"
    location = updated.headers["Content-Location"]
    assert (await settled(http, api, location))["state"] == "conflict"

    # a decision needs the operator scope
    decision = {"action": "abandon", "reason": "the chart's value stands"}
    resolve = f"{location}/$resolve"
    refused = await http.post(resolve, json=decision, headers=app_headers(api))
    outcome(refused, 403, "forbidden")
    operator = bearer(api.token("api-operator", "writeback/operator"))
    queue = await http.get("/review", params={"tenant": TENANT}, headers=operator)
    assert queue.status_code == 200, queue.text
    assert location.removeprefix("/writes/") in [e["workflow_id"] for e in queue.json()["entries"]]
    decided = await http.post(resolve, json=decision, headers=operator)
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "abandoned"


# --- the door: who may ask, and what --------------------------------------------------------


async def test_no_token_or_an_expired_one_is_401(http: httpx.AsyncClient, api: ApiProcess) -> None:
    url = f"/fhir/{TENANT}/Observation"
    headers = {"Content-Type": "application/fhir+json"}
    missing = await http.post(url, json=heart_rate(), headers=headers)
    outcome(missing, 401, "login")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    expired = api.token("api-app", WRITE, now=time.time() - 7200, ttl=60)
    answer = await http.post(url, json=heart_rate(), headers=bearer(expired, **headers))
    outcome(answer, 401, "expired")
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    forged = api.token("api-app", WRITE)[:-4] + "AAAA"
    outcome(
        await http.post(url, json=heart_rate(), headers=bearer(forged, **headers)), 401, "security"
    )


async def test_a_wrong_scope_or_tenant_is_403(http: httpx.AsyncClient, api: ApiProcess) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    update_only = bearer(api.token("api-app", "system/Observation.u"), **headers)
    answer = await http.post(f"/fhir/{TENANT}/Observation", json=heart_rate(), headers=update_only)
    outcome(answer, 403, "forbidden")
    assert 'scope="system/Observation.c"' in answer.headers["WWW-Authenticate"]
    # a tenant outside the client's entry, and one its token narrows away
    other = bearer(api.token("api-app", WRITE), **headers)
    outcome(
        await http.post("/fhir/demo-epic/Observation", json=heart_rate(), headers=other),
        403,
        "forbidden",
    )
    narrowed = bearer(api.token("api-app", WRITE, tenants=["demo-cerner"]), **headers)
    outcome(
        await http.post(f"/fhir/{TENANT}/Observation", json=heart_rate(), headers=narrowed),
        403,
        "forbidden",
    )
    # a client this API does not serve, whatever its token grants
    stranger = bearer(api.token("stranger", "system/*.cu"), **headers)
    outcome(
        await http.post(f"/fhir/{TENANT}/Observation", json=heart_rate(), headers=stranger),
        403,
        "forbidden",
    )


async def test_bad_bodies_are_refused_before_anything_starts(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    url = f"/fhir/{TENANT}/Observation"
    big = {**heart_rate(), "note": [{"text": "x" * (300 * 1024)}]}
    outcome(await http.post(url, json=big, headers=app_headers(api, key)), 413, "too-long")
    xml = app_headers(api, key, **{"Content-Type": "application/fhir+xml"})
    outcome(await http.post(url, content=b"<Observation/>", headers=xml), 415, "not-supported")
    planted = "PLANTED-7731"
    broken = app_headers(api, key)
    body = outcome(
        await http.post(url, content=f'{{"a": "{planted}",'.encode(), headers=broken),
        400,
        "invalid",
    )
    assert planted not in str(body)
    invalid = heart_rate()
    invalid["status"] = planted  # not a FHIR code
    invalid["valueQuantity"]["unit"] = planted
    del invalid["code"]
    answer = await http.post(url, json=invalid, headers=app_headers(api, key))
    body = outcome(answer, 400, "required")
    assert planted not in answer.text
    expressions = [e for issue in body["issue"] for e in issue.get("expression", [])]
    assert "Observation.code" in expressions, body
    wrong_shape = {**heart_rate(), "subject": planted}  # an object expected
    answer = await http.post(url, json=wrong_shape, headers=app_headers(api, key))
    body = outcome(answer, 400, "invalid")
    assert planted not in answer.text
    assert body["issue"][0]["expression"] == ["Observation.subject"], body
    wrong_type = {**heart_rate(), "resourceType": "Patient"}
    outcome(await http.post(url, json=wrong_type, headers=app_headers(api, key)), 400, "invalid")
    # none of these started a write
    status = await http.get(f"/writes/wb:{TENANT}:{key}", headers=app_headers(api))
    outcome(status, 404, "not-found")


async def test_a_forged_caller_in_the_request_changes_nothing(
    http: httpx.AsyncClient, api: ApiProcess, key: str
) -> None:
    forged = {**heart_rate(), "requested_by": "cli", "on_behalf_of": "Practitioner/1"}
    url = f"/fhir/{TENANT}/Observation"
    answer = await http.post(url, json=forged, headers=app_headers(api, key))
    body = outcome(answer, 400, "invalid")
    assert "Practitioner/1" not in answer.text
    assert body["issue"][0]["expression"]
    # query parameters and headers naming a caller are not read either
    answer = await http.post(
        url,
        params={"requested_by": "cli", "on_behalf_of": "Practitioner/1"},
        json=heart_rate(),
        headers=app_headers(api, key, **{"X-Requested-By": "cli", "Prefer": "wait=30"}),
    )
    assert answer.status_code == 201, answer.text
    status = (await http.get(answer.headers["Content-Location"], headers=app_headers(api))).json()
    assert status["authorization"]["requested_by"] == "api-app"
    assert status["authorization"]["on_behalf_of"] == USER


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    http: httpx.AsyncClient, api: ApiProcess
) -> None:
    headers = bearer(api.token("api-slow", WRITE))
    answers = [
        await http.get(f"/writes/wb:{TENANT}:nothing-here", headers=headers) for _ in range(3)
    ]
    assert [a.status_code for a in answers[:2]] == [404, 404]
    outcome(answers[2], 429, "throttled")
    assert int(answers[2].headers["Retry-After"]) >= 1


async def test_the_openapi_document_describes_the_routes(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"/fhir/{tenant}/{resource_type}", "/writes/{workflow_id}", "/review"} <= set(paths)
    assert "/writes/{workflow_id}/$resolve" in paths
    assert "OperationOutcome" in document["components"]["schemas"]
    assert "WriteStatus" in document["components"]["schemas"]


async def test_another_api_process_knows_the_key_and_its_request(
    http: httpx.AsyncClient,
    api: ApiProcess,
    dev_server: WorkflowEnvironment,
    tenants_file: Path,
    key: str,
) -> None:
    resource = heart_rate(66)
    first = await http.post(
        f"/fhir/{TENANT}/Observation", json=resource, headers=app_headers(api, key)
    )
    assert first.status_code == 202, first.text
    second = ApiProcess(
        temporal_address(dev_server), api.task_queue, api.config_dir, tenants_file, free_port()
    )
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=60) as other:
            same = await other.post(
                f"/fhir/{TENANT}/Observation",
                json=resource,
                headers=app_headers(api, key, Prefer="wait=30"),
            )
            assert same.status_code == 201, same.text
            assert same.headers["Content-Location"] == first.headers["Content-Location"]
            changed = {**resource, "status": "amended"}
            answer = await other.post(
                f"/fhir/{TENANT}/Observation", json=changed, headers=app_headers(api, key)
            )
            outcome(answer, 422, "conflict")
    finally:
        second.stop()


async def test_a_key_taken_by_a_write_started_elsewhere_is_compared_by_its_command(
    http: httpx.AsyncClient, api: ApiProcess, dev_server: WorkflowEnvironment, key: str
) -> None:
    client = WritebackClient(
        dev_server.client, task_queue=api.task_queue, signer=CallerSigner.from_env()
    )
    await client.submit(WriteCommand(tenant=TENANT, idempotency_key=key, resource=heart_rate(68)))
    # the same resource, but another caller (the CLI's `cli` there, the token's client here)
    answer = await http.post(
        f"/fhir/{TENANT}/Observation", json=heart_rate(68), headers=app_headers(api, key)
    )
    outcome(answer, 422, "conflict")
