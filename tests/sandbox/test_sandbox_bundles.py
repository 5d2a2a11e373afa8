"""Batch and transaction Bundles (R4 http.html#transaction): atomicity, urn:uuid references,
processing order, per-entry batch outcomes."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from typing import Any

import httpx
from support.sandbox_process import SandboxProcess, ident, new_cmd, observation


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post(resource: dict[str, Any], full_url: str | None = None, **req: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **req},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _rows(db: Any, tenant: str) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM resource_versions WHERE tenant=?", (tenant,)
        ).fetchone()
    return int(n)


def test_transaction_rewrites_urn_uuid_references(client: httpx.Client, tenant: str) -> None:
    patient_urn, encounter_urn = _urn(), _urn()
    obs = observation()
    obs["subject"] = {"reference": patient_urn}
    obs["encounter"] = {"reference": encounter_urn}
    bundle = _bundle(
        "transaction",
        _post(obs),  # refers to entries that come later in the bundle
        _post({"resourceType": "Patient", "gender": "female"}, patient_urn),
        _post(
            {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
            encounter_urn,
        ),
    )
    r = client.post(f"/fhir/{tenant}", json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response" and len(out["entry"]) == 3
    assert all(e["response"]["status"] == "201 Created" for e in out["entry"])
    patient_loc = out["entry"][1]["response"]["location"]
    assert patient_loc.startswith("Patient/") and patient_loc.endswith("/_history/1")
    patient_id = patient_loc.split("/")[1]
    stored = client.get(f"/fhir/{tenant}/{out['entry'][0]['response']['location']}").json()
    assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
    assert stored["encounter"]["reference"].startswith("Encounter/")
    found = client.get(f"/fhir/{tenant}/Observation?patient={patient_id}").json()
    assert found["total"] == 1


def test_transaction_is_atomic_when_third_entry_is_invalid(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    bad = observation()
    del bad["code"]
    bundle = _bundle(
        "transaction",
        _post(observation()),
        _post({"resourceType": "Patient"}),
        _post(bad),
        _post(observation()),
    )
    r = client.post(f"/fhir/{tenant}", json=bundle)
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert issue["diagnostics"].startswith("Bundle.entry[2]")
    assert "Observation.code" in issue["expression"]
    assert _rows(sandbox.db, tenant) == 0
    assert client.get(f"/fhir/{tenant}/Observation").json()["total"] == 0


def test_transaction_order_conditionals_and_412(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    keep = client.post(url, json=observation()).json()
    doomed = client.post(url, json=observation()).json()
    cmd = new_cmd()
    existing = client.post(url, json=observation(cmd)).json()
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    bundle = _bundle(
        "transaction",
        {"request": {"method": "GET", "url": f"Observation/{doomed['id']}"}},
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": base64.b64encode(json.dumps(patch).encode()).decode(),
            },
            "request": {"method": "PATCH", "url": f"Observation/{keep['id']}", "ifMatch": 'W/"1"'},
        },
        _post(observation(cmd), ifNoneExist=ident(cmd)),
        {"request": {"method": "DELETE", "url": f"Observation/{doomed['id']}"}},
    )
    r = client.post(f"/fhir/{tenant}", json=bundle)
    # DELETE runs before GET (spec order), so the read of the deleted resource fails: 410
    assert r.status_code == 410, r.text
    assert client.get(f"{url}/{doomed['id']}").status_code == 200  # rolled back
    assert client.get(f"{url}/{keep['id']}").json()["status"] == "final"

    bundle["entry"][0] = {"request": {"method": "GET", "url": f"Observation?{ident(cmd)}"}}
    r = client.post(f"/fhir/{tenant}", json=bundle, headers={"Prefer": "return=minimal"})
    assert r.status_code == 200, r.text
    search, patched, conditional, deleted = r.json()["entry"]
    assert search["resource"]["total"] == 1
    assert patched["response"]["etag"] == 'W/"2"' and "resource" not in patched
    assert conditional["response"]["status"] == "200 OK"
    assert conditional["response"]["location"].startswith(f"Observation/{existing['id']}")
    assert deleted["response"]["status"] == "204 No Content"
    assert client.get(f"{url}/{doomed['id']}").status_code == 410
    assert client.get(f"{url}/{keep['id']}").json()["status"] == "amended"

    client.post(url, json=observation(cmd))
    dup = client.post(f"/fhir/{tenant}", json=_bundle("transaction", bundle["entry"][2]))
    assert dup.status_code == 412


def test_batch_entries_succeed_or_fail_alone(client: httpx.Client, tenant: str) -> None:
    bad = observation()
    del bad["code"]
    bundle = _bundle(
        "batch",
        _post(observation()),
        _post(bad),
        {"request": {"method": "GET", "url": "Observation/does-not-exist"}},
        {"request": {"method": "PUT", "url": "Bogus/1"}},
        _post({"resourceType": "Patient"}),
    )
    r = client.post(f"/fhir/{tenant}", json=bundle)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in out["entry"]]
    assert statuses == ["201", "422", "404", "404", "201"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/{tenant}/Observation").json()["total"] == 1


def test_bundle_shape_errors(client: httpx.Client, tenant: str) -> None:
    base = f"/fhir/{tenant}"
    assert client.post(base, json={"resourceType": "Patient"}).status_code == 400
    no_request = _bundle("transaction", {"resource": observation()})
    assert client.post(base, json=no_request).status_code == 400
    same = _urn()
    dup_urls = _bundle("transaction", _post(observation(), same), _post(observation(), same))
    assert client.post(base, json=dup_urls).status_code == 400
    assert client.get(f"{base}/Observation").json()["total"] == 0
