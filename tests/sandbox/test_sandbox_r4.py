"""Strict FHIR R4 personality: CRUD, search, conditional create, validation."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from support.sandbox_process import ident, new_cmd, observation

FHIR = "application/fhir+json"


def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_metadata_reflects_personality(client: httpx.Client) -> None:
    caps = {}
    for tenant in ("demo-r4", "demo-epic", "demo-cerner"):
        r = client.get(f"/fhir/{tenant}/metadata")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(FHIR)
        CapabilityStatement.model_validate(r.json())
        res = {x["type"]: x for x in r.json()["rest"][0]["resource"]}
        caps[tenant] = res
    obs = {t: c["Observation"] for t, c in caps.items()}
    assert obs["demo-r4"]["conditionalCreate"] is True
    assert obs["demo-epic"]["conditionalCreate"] is False
    assert obs["demo-cerner"]["conditionalCreate"] is False
    assert obs["demo-r4"]["versioning"] == "versioned-update"
    assert obs["demo-epic"]["versioning"] == "no-version"
    assert {"code": "update"} not in obs["demo-epic"]["interaction"]
    assert {"code": "create"} not in caps["demo-epic"]["Patient"]["interaction"]
    assert {"code": "update"} in obs["demo-cerner"]["interaction"]


def test_create_read_vread_and_headers(client: httpx.Client) -> None:
    body = observation()
    body["id"] = "client-chosen"
    body["meta"] = {"versionId": "99", "source": "client"}
    r = client.post("/fhir/demo-r4/Observation", json=body)
    base = str(client.base_url).rstrip("/")
    assert r.status_code == 201
    created = r.json()
    rid = created["id"]
    assert rid != "client-chosen" and len(rid) == 12
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"].endswith("Z")
    assert "source" not in created["meta"]
    assert r.headers["location"] == f"{base}/fhir/demo-r4/Observation/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["content-type"].startswith(FHIR)

    read = client.get(f"/fhir/demo-r4/Observation/{rid}")
    assert read.status_code == 200 and read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/demo-r4/Observation/{rid}/_history/1").json() == created
    assert client.get(f"/fhir/demo-r4/Observation/{rid}/_history/2").status_code == 404
    missing = client.get("/fhir/demo-r4/Observation/doesnotexist")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_prefer_return(client: httpx.Client) -> None:
    url = "/fhir/demo-r4/Observation"
    minimal = client.post(url, json=observation(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"].endswith("/_history/1")
    oo = client.post(url, json=observation(), headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 201 and oo.json()["resourceType"] == "OperationOutcome"
    rep = client.post(url, json=observation(), headers={"Prefer": "return=representation"})
    assert rep.json()["resourceType"] == "Observation"


def test_update_if_match_and_delete(client: httpx.Client) -> None:
    url = "/fhir/demo-r4/Observation"
    created = client.post(url, json=observation()).json()
    rid = created["id"]
    body = {**created, "status": "amended"}
    ok = client.put(f"{url}/{rid}", json=body, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2" and ok.headers["etag"] == 'W/"2"'
    stale = client.put(f"{url}/{rid}", json=body, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.put(f"{url}/{rid}", json=body).json()["meta"]["versionId"] == "3"
    assert client.get(f"{url}/{rid}/_history/1").json()["status"] == "final"
    bad = client.put(f"{url}/{rid}", json=body, headers={"If-Match": "nonsense"})
    assert bad.status_code == 400
    wrong_id = client.put(f"{url}/{rid}", json={**body, "id": "other"})
    assert wrong_id.status_code == 400
    missing = client.put(f"{url}/nope", json={**body, "id": "nope"})
    assert missing.status_code == 404

    assert client.delete(f"{url}/{rid}").status_code == 204
    gone = client.get(f"{url}/{rid}")
    assert gone.status_code == 410 and gone.json()["resourceType"] == "OperationOutcome"
    cmd = body["identifier"][0]["value"]
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 0


def test_search_identifier_forms_and_patient(client: httpx.Client) -> None:
    cmd, patient = new_cmd(), new_cmd()
    url = "/fhir/demo-r4/Observation"
    client.post(url, json=observation(cmd, patient=patient))
    client.post(url, json=observation(patient=patient))
    nosys = observation(patient=patient)
    nosys["identifier"] = [{"value": cmd}]
    client.post(url, json=nosys)

    def total(query: str) -> int:
        r = client.get(f"{url}?{query}")
        assert r.status_code == 200
        bundle = r.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        assert len(bundle["entry"]) == bundle["total"]
        return int(bundle["total"])

    assert total(ident(cmd)) == 1
    assert total(f"identifier=|{cmd}") == 1
    assert total(f"identifier={cmd}") == 2
    assert total("identifier=urn:writeback:command|") >= 2
    assert total(f"patient=Patient/{patient}") == 3
    assert total(f"subject=Patient/{patient}") == 3
    assert total(f"patient={patient}") == 3
    assert total(f"patient=Patient/{patient}&{ident(cmd)}") == 1
    assert total(f"patient=Patient/other&{ident(cmd)}") == 0
    entry = client.get(f"{url}?{ident(cmd)}").json()["entry"][0]
    base = str(client.base_url).rstrip("/")
    assert entry["fullUrl"] == f"{base}/fhir/demo-r4/Observation/{entry['resource']['id']}"
    assert client.get(f"{url}?bogus=1", headers={"Prefer": "handling=strict"}).status_code == 400


def test_conditional_create_zero_one_many(client: httpx.Client) -> None:
    url = "/fhir/demo-r4/Observation"
    cmd = new_cmd()
    first = client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    assert first.status_code == 201
    again = client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 1

    # Force two matches with unconditional creates, then the conditional one fails.
    dup = new_cmd()
    client.post(url, json=observation(dup))
    client.post(url, json=observation(dup))
    many = client.post(url, json=observation(dup), headers={"If-None-Exist": ident(dup)})
    assert many.status_code == 412
    assert many.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{url}?{ident(dup)}").json()["total"] == 2
    unusable = client.post(url, json=observation(), headers={"If-None-Exist": "foo=bar"})
    assert unusable.status_code == 400


def test_validation_errors_name_fields_without_values(client: httpx.Client) -> None:
    url = "/fhir/demo-r4/Observation"
    assert client.post(url, content=b"{not json").status_code == 400
    assert client.post(url, json=[1, 2]).status_code == 400
    wrong = client.post(url, json={**observation(), "resourceType": "Condition"})
    assert wrong.status_code == 400
    assert wrong.json()["resourceType"] == "OperationOutcome"

    secret = "SECRET-PHI-VALUE-123"
    bad = observation()
    del bad["code"]
    bad["valueQuantity"]["value"] = secret
    bad["subject"] = {"reference": 12345, "display": ["x", secret]}
    bad["bogusField"] = secret
    r = client.post(url, json=bad)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(FHIR)
    diag = r.json()["issue"][0]["diagnostics"]
    for path in ("code", "valueQuantity.value", "subject.reference", "bogusField"):
        assert path in diag
    assert secret not in r.text and "12345" not in r.text
    assert client.get(f"{url}?identifier={secret}").json()["total"] == 0


def test_unknown_type_is_404(client: httpx.Client) -> None:
    for path in ("/fhir/demo-r4/Bogus", "/fhir/demo-r4/HumanName", "/fhir/demo-r4/Bogus/1"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.post("/fhir/demo-r4/Bogus", json={"resourceType": "Bogus"}).status_code == 404


def test_other_types_validate_with_r4b(client: httpx.Client) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "female"}
    r = client.post("/fhir/demo-r4/Patient", json=patient)
    assert r.status_code == 201
    assert client.get(f"/fhir/demo-r4/Patient/{r.json()['id']}").json()["gender"] == "female"
