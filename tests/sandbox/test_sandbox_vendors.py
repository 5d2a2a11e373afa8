"""Epic and Oracle Health (Cerner) personalities."""

from __future__ import annotations

import re

import httpx
from support.sandbox_process import ident, new_cmd, observation

EPIC_OID = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369"


def test_epic_create_empty_body_relative_location_no_etag(client: httpx.Client) -> None:
    r = client.post("/fhir/demo-epic/Observation", json=observation())
    assert r.status_code == 201
    assert r.content == b""
    assert re.fullmatch(r"Observation/[0-9a-f]{12}", r.headers["location"])
    assert "etag" not in r.headers
    read = client.get(f"/fhir/demo-epic/{r.headers['location']}")
    assert read.status_code == 200 and "etag" not in read.headers


def test_epic_ignores_if_none_exist(client: httpx.Client) -> None:
    cmd = new_cmd()
    for _ in range(2):
        r = client.post(
            "/fhir/demo-epic/Observation",
            json=observation(cmd),
            headers={"If-None-Exist": ident(cmd)},
        )
        assert r.status_code == 201
    assert client.get(f"/fhir/demo-epic/Observation?{ident(cmd)}").json()["total"] == 2


def test_epic_update_405_and_unwritable_type_403(client: httpx.Client) -> None:
    rid = client.post("/fhir/demo-epic/Observation", json=observation()).headers["location"]
    body = {**observation(), "id": rid.split("/")[1]}
    r = client.put(f"/fhir/demo-epic/{rid}", json=body)
    assert r.status_code == 405
    issue = r.json()["issue"][0]
    assert issue["details"]["coding"][0]["system"] == EPIC_OID
    assert issue["details"]["coding"][0]["code"].isdigit()
    patient = client.post("/fhir/demo-epic/Patient", json={"resourceType": "Patient"})
    assert patient.status_code == 403 and patient.content == b""


def test_epic_errors_use_epic_codes(client: httpx.Client) -> None:
    bad = observation()
    del bad["status"]
    r = client.post("/fhir/demo-epic/Observation", json=bad)
    assert r.status_code == 422
    coding = r.json()["issue"][0]["details"]["coding"][0]
    assert coding == {**coding, "system": EPIC_OID, "code": "59008"}
    assert "status" in r.json()["issue"][0]["diagnostics"]
    missing = client.get("/fhir/demo-epic/Observation/nothere")
    assert missing.json()["issue"][0]["details"]["coding"][0]["system"] == EPIC_OID


def test_cerner_create_and_stale_if_match(client: httpx.Client) -> None:
    cmd = new_cmd()
    url = "/fhir/demo-cerner/Observation"
    r = client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    assert r.status_code == 201
    assert r.headers["content-length"] == "0" and r.content == b""
    base = str(client.base_url).rstrip("/")
    assert re.fullmatch(re.escape(f"{base}{url}/") + r"[0-9a-f]{12}", r.headers["location"])
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["x-request-id"]
    again = client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    assert again.status_code == 201  # conditional create not supported: duplicate
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 2

    location = r.headers["location"]
    current = client.get(location)
    assert current.headers["etag"] == 'W/"1"' and current.headers["x-request-id"]
    body = {**current.json(), "status": "amended"}
    ok = client.put(location, json=body, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    stale = client.put(location, json=body, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 409
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert stale.headers["x-request-id"] != ok.headers["x-request-id"]


def test_unknown_tenant_defaults_to_r4(client: httpx.Client) -> None:
    cmd = new_cmd()
    url = "/fhir/some-new-tenant/Observation"
    assert (
        client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)}).status_code
        == 201
    )
    assert (
        client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)}).status_code
        == 200
    )
    # tenants are isolated from each other
    assert client.get(f"/fhir/demo-r4/Observation?{ident(cmd)}").json()["total"] == 0
