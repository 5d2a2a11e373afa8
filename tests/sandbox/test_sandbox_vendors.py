"""Epic and Oracle Health (Cerner) personalities."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from support.sandbox_process import ident, new_cmd, observation

EPIC_OID = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369"


def test_epic_create_empty_body_relative_location_no_etag(client: httpx.Client) -> None:
    """Epic on FHIR: Observation.Create (Vitals) (R4): 201 with an empty body, a relative
    Location and no ETag (docs/vendors.md quirk 7)."""
    r = client.post("/fhir/demo-epic/Observation", json=observation())
    assert r.status_code == 201
    assert r.content == b""
    assert re.fullmatch(r"Observation/[0-9a-f]{12}", r.headers["location"])
    assert "etag" not in r.headers
    read = client.get(f"/fhir/demo-epic/{r.headers['location']}")
    assert read.status_code == 200 and "etag" not in read.headers


def test_epic_ignores_if_none_exist(client: httpx.Client) -> None:
    """Epic on FHIR: no conditional create; If-None-Exist is ignored, a replay duplicates
    (docs/vendors.md quirk 8)."""
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
    """Epic on FHIR: create-only resources (no update: 405, Epic-coded OperationOutcome); a type
    the client is not registered to write answers 403, empty body (docs/vendors.md quirk 5)."""
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
    """Epic on FHIR: errors are OperationOutcomes coded in the Epic OID system
    urn:oid:1.2.840.114350.1.13.0.1.7.2.657369 (docs/vendors.md quirk 6)."""
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
    """Oracle Health Millennium Platform FHIR R4 API: Observation create answers 201 with
    Content-Length: 0, an absolute Location and ETag W/"1"; no conditional create; a stale
    If-Match on update is 409 (docs/vendors.md quirks 9, 12)."""
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


# -- Epic ---------------------------------------------------------------------------------

VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def condition(patient: str, verification: str = "provisional") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "verificationStatus": {"coding": [{"system": VER_STATUS, "code": verification}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def allergy(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
        "patient": {"reference": f"Patient/{patient}"},
    }


def test_epic_vital_sign_requires_final(client: httpx.Client) -> None:
    """Epic on FHIR: Observation.Create (Vitals) (R4) files vital signs with status=final only
    (docs/vendors.md quirk 1); errors carry Epic's OID code system (quirk 6)."""
    prelim = {**observation(), "status": "preliminary"}
    r = client.post("/fhir/demo-epic/Observation", json=prelim)
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert issue["details"]["coding"][0]["system"] == EPIC_OID
    assert issue["expression"] == ["Observation.status"]
    not_vital = {**prelim, "category": []}
    del not_vital["category"]
    assert client.post("/fhir/demo-epic/Observation", json=not_vital).status_code == 201


def test_epic_condition_requires_provisional_59012(client: httpx.Client) -> None:
    """Epic on FHIR: Condition.Create (Problems) (R4): verificationStatus must be provisional,
    else 422 with Epic error code 59012 (docs/vendors.md quirk 3)."""
    r = client.post("/fhir/demo-epic/Condition", json=condition("p1", "confirmed"))
    assert r.status_code == 422
    coding = r.json()["issue"][0]["details"]["coding"][0]
    assert coding["system"] == EPIC_OID and coding["code"] == "59012"
    ok = client.post("/fhir/demo-epic/Condition", json=condition("p1"))
    assert ok.status_code == 201 and ok.content == b""


def test_epic_holding_tank_hides_until_reviewed(client: httpx.Client) -> None:
    """Epic on FHIR: AllergyIntolerance.Create and Condition.Create (R4): created allergies and
    problems wait in a holding tank for clinician review: readable by id, absent from search
    (docs/vendors.md quirk 4). POST /_admin/review/{tenant}/{type}/{id} plays the clinician."""
    patient = new_cmd()
    for rtype, body in (
        ("Condition", condition(patient)),
        ("AllergyIntolerance", allergy(patient)),
    ):
        loc = client.post(f"/fhir/demo-epic/{rtype}", json=body).headers["location"]
        assert client.get(f"/fhir/demo-epic/{loc}").status_code == 200
        search = f"/fhir/demo-epic/{rtype}?patient={patient}"
        assert client.get(search).json()["total"] == 0
        rid = loc.split("/")[1]
        assert client.post(f"/_admin/review/demo-epic/{rtype}/{rid}").status_code == 200
        assert client.get(search).json()["total"] == 1
    assert client.post("/_admin/review/demo-epic/Condition/nope").status_code == 404
    # vital signs are not held
    obs = client.post("/fhir/demo-epic/Observation", json=observation(patient=patient))
    assert client.get(f"/fhir/demo-epic/Observation?patient={patient}").json()["total"] == 1
    assert obs.status_code == 201


def test_epic_has_no_patch_transaction_or_delete(client: httpx.Client) -> None:
    """Epic on FHIR: writable resources are create-only; no PATCH, update, delete or transaction
    (docs/vendors.md capability matrix)."""
    loc = client.post("/fhir/demo-epic/Observation", json=observation()).headers["location"]
    patch = client.patch(
        f"/fhir/demo-epic/{loc}",
        json=[{"op": "remove", "path": "/note"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 405
    assert patch.json()["issue"][0]["details"]["coding"][0]["system"] == EPIC_OID
    assert client.delete(f"/fhir/demo-epic/{loc}").status_code == 405
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert client.post("/fhir/demo-epic", json=bundle).status_code == 405
    assert client.get(f"/fhir/demo-epic/{loc}/_history/1").status_code == 405


# -- Oracle Health (Cerner) ---------------------------------------------------------------


def document(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": content,
    }


def text_attachment(ctype: str) -> dict[str, Any]:
    return {"attachment": {"contentType": ctype, "data": "aGVsbG8="}}


def test_cerner_put_without_if_match_and_correlation_headers(client: httpx.Client) -> None:
    """Oracle Health Millennium Platform FHIR R4 API: an update must carry If-Match (Cerner FHIR
    developers group: "no If-Match or invalid If-Match header provided" answers 412); a stale
    one is 409 (tested above), never 412. Responses carry X-Request-Id and opc-request-id
    (docs/vendors.md quirk 12, correlation row)."""
    loc = client.post("/fhir/demo-cerner/Observation", json=observation()).headers["location"]
    current = client.get(loc).json()
    unversioned = client.put(loc, json={**current, "status": "amended"})
    assert unversioned.status_code == 412
    assert client.get(loc).json()["meta"]["versionId"] == "1"  # nothing written
    r = client.put(loc, json={**current, "status": "amended"}, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.headers["x-request-id"] == r.headers["opc-request-id"]
    assert client.get("/fhir/demo-cerner/Observation/none").headers["opc-request-id"]
    patch = client.patch(loc, json=[], headers={"Content-Type": "application/json-patch+json"})
    assert patch.status_code == 405  # no PATCH


def test_cerner_document_reference_one_content_with_charset(client: httpx.Client) -> None:
    """Oracle Health Millennium Platform FHIR R4 API: DocumentReference create: exactly one
    content entry, attachment contentType with a charset (docs/vendors.md quirk 11)."""
    url = "/fhir/demo-cerner/DocumentReference"
    two = document([text_attachment("text/plain; charset=UTF-8")] * 2)
    r = client.post(url, json=two)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == [
        "DocumentReference.content"
    ]
    no_charset = client.post(url, json=document([text_attachment("text/plain")]))
    assert no_charset.status_code == 422
    assert "charset" in no_charset.json()["issue"][0]["diagnostics"]
    ok = client.post(url, json=document([text_attachment("text/plain; charset=UTF-8")]))
    assert ok.status_code == 201 and ok.headers["content-length"] == "0"


# -- athenaOne ----------------------------------------------------------------------------

PRACTICE = "ah-practice=Organization/a-1.Practice-195900"


def questionnaire_response() -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": "Patient/a-195900.E-1"},
    }


def test_athena_requires_ah_practice_and_writes_only_questionnaire_response(
    client: httpx.Client, tenant: str
) -> None:
    """athenaOne FHIR R4 API (and Athena Core IG, extension ah-practice): every FHIR call names
    the practice with ah-practice=Organization/a-1.Practice-{id}; FHIR writes exist only for
    QuestionnaireResponse (docs/vendors.md quirk 13)."""
    client.post(f"/_admin/tenants/{tenant}", json={"personality": "athena"})
    base = f"/fhir/{tenant}"
    missing = client.get(f"{base}/Patient")
    assert missing.status_code == 400
    assert "ah-practice" in missing.json()["issue"][0]["diagnostics"]
    assert client.get(f"{base}/Patient?ah-practice=Organization/1").status_code == 400
    assert client.get(f"{base}/Patient?{PRACTICE}").json()["total"] == 0
    qr = client.post(f"{base}/QuestionnaireResponse?{PRACTICE}", json=questionnaire_response())
    assert qr.status_code == 201
    rid = qr.json()["id"]
    assert client.get(f"{base}/QuestionnaireResponse/{rid}?{PRACTICE}").status_code == 200
    assert (
        client.post(f"{base}/QuestionnaireResponse", json=questionnaire_response()).status_code
        == 400
    )
    obs = client.post(f"{base}/Observation?{PRACTICE}", json=observation())
    assert obs.status_code == 405 and obs.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{base}/metadata").status_code == 200  # discovery needs no practice


def test_athena_429_beyond_concurrent_requests(client: httpx.Client, tenant: str) -> None:
    """athenaPractice answers 429 beyond ~30 concurrent requests (docs/vendors.md quirk 14); the
    threshold is the tenant setting max_in_flight (default 30 for athena), here 3."""
    client.post(f"/_admin/tenants/{tenant}", json={"personality": "athena", "max_in_flight": 3})
    assert client.get(f"/_admin/tenants/{tenant}").json()["max_in_flight"] == 3
    client.post(f"/_admin/faults/{tenant}", json={"latency_ms": 1500})
    base = str(client.base_url)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=10) as c:
            return c.get(f"/fhir/{tenant}/Patient?{PRACTICE}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(one, range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [429] * 7
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json()["issue"][0]["code"] == "throttled"


# -- Veradigm -----------------------------------------------------------------------------


def test_veradigm_fhir_is_read_only(client: httpx.Client, tenant: str) -> None:
    """Veradigm FHIR API: the FHIR R4 endpoint is read-only; writes go through the proprietary
    Unity API, so every FHIR write answers 405 (docs/vendors.md quirk 15)."""
    client.post(f"/_admin/tenants/{tenant}", json={"personality": "veradigm"})
    base = f"/fhir/{tenant}"
    writes = [
        client.post(f"{base}/Observation", json=observation()),
        client.put(f"{base}/Observation/x1", json={**observation(), "id": "x1"}),
        client.put(f"{base}/Observation?identifier=a", json=observation()),
        client.delete(f"{base}/Observation/x1"),
        client.patch(
            f"{base}/Observation/x1",
            json=[],
            headers={"Content-Type": "application/json-patch+json"},
        ),
        client.post(base, json={"resourceType": "Bundle", "type": "batch", "entry": []}),
    ]
    for r in writes:
        assert r.status_code == 405, r.request
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{base}/Observation").status_code == 200
    assert client.get(f"{base}/Observation/x1").status_code == 404


# -- any personality: drops custom identifiers ---------------------------------------------


def test_allowed_identifier_systems_drop_custom_identifiers(
    client: httpx.Client, tenant: str
) -> None:
    """Personality option: identifiers whose system is not allowed are dropped on store."""
    client.post(
        f"/_admin/tenants/{tenant}",
        json={"personality": "cerner", "allowed_identifier_systems": ["urn:oid:2.16.840.1"]},
    )
    body = observation()
    body["identifier"].append({"system": "urn:oid:2.16.840.1", "value": "kept"})
    loc = client.post(f"/fhir/{tenant}/Observation", json=body).headers["location"]
    stored = client.get(loc).json()
    assert stored["identifier"] == [{"system": "urn:oid:2.16.840.1", "value": "kept"}]
    cmd = body["identifier"][0]["value"]
    assert client.get(f"/fhir/{tenant}/Observation?{ident(cmd)}").json()["total"] == 0
