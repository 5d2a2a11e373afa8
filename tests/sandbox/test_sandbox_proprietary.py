"""The athenaOne and Veradigm Unity write endpoints, and the Epic / Cerner note and vital rules."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
from support.sandbox_process import observation

PRACTICE = {"ah-practice": "Organization/a-1.Practice-195900"}
ATHENA = "/athena/demo-athena/v1/195900"
UNITY = "/unity/demo-veradigm/json"


def patient() -> str:
    return f"p{uuid.uuid4().hex[:8]}"


def bp_group(when: str = "11/25/2026 09:00:00") -> list[list[dict[str, str]]]:
    return [
        [
            {
                "clinicalelementid": "VITALS.BLOODPRESSURE.SYSTOLIC",
                "value": "120",
                "readingtaken": when,
            },
            {
                "clinicalelementid": "VITALS.BLOODPRESSURE.DIASTOLIC",
                "value": "80",
                "readingtaken": when,
            },
        ]
    ]


def athena_vitals(client: httpx.Client, pid: str, vitals: Any) -> httpx.Response:
    form = {"departmentid": "1", "source": "DEVICEGENERATED", "returnvitalids": "true"}
    return client.post(f"{ATHENA}/chart/{pid}/vitals", data={**form, "vitals": json.dumps(vitals)})


def test_athena_vitals_store_a_bp_panel_readable_over_fhir(client: httpx.Client) -> None:
    """athenaOne "Chart: Vitals": a reading group of systolic + diastolic answers one vitalid per
    element and is one FHIR blood pressure panel, readable with ah-practice."""
    pid = patient()
    r = athena_vitals(client, pid, bp_group())
    assert r.status_code == 200 and r.json()["success"] is True
    ids = r.json()["vitalids"]
    assert [i["clinicalelementid"] for i in ids] == [
        "VITALS.BLOODPRESSURE.SYSTOLIC",
        "VITALS.BLOODPRESSURE.DIASTOLIC",
    ]
    read = client.get(
        f"/fhir/demo-athena/Observation/a-195900.vitals-{ids[0]['vitalid']}", params=PRACTICE
    )
    assert read.status_code == 200
    body = read.json()
    assert body["code"]["coding"][0]["code"] == "85354-9"
    assert body["effectiveDateTime"] == "2026-11-25T09:00:00Z"
    assert [c["valueQuantity"]["value"] for c in body["component"]] == [120, 80]
    assert body["subject"] == {"reference": f"Patient/{pid}"}


def test_athena_refuses_bad_vitals_in_its_own_error_shape(client: httpx.Client) -> None:
    bad_element = [[{"clinicalelementid": "VITALS.NOPE", "value": "1", "readingtaken": "x"}]]
    r = athena_vitals(client, patient(), bad_element)
    assert r.status_code == 400 and r.json() == {"error": "unknown clinicalelementid"}
    no_department = client.post(
        f"{ATHENA}/chart/p1/vitals", data={"vitals": json.dumps(bp_group())}
    )
    assert no_department.status_code == 400 and "departmentid" in no_department.json()["error"]
    bad_time = athena_vitals(client, patient(), bp_group("2026-11-25"))
    assert bad_time.status_code == 400 and "readingtaken" in bad_time.json()["error"]


def test_athena_clinical_document_is_a_fhir_clinical_note(client: httpx.Client) -> None:
    pid = patient()
    form = {
        "departmentid": "1",
        "documentsubclass": "PROGRESSNOTE",
        "attachmentcontents": base64.b64encode(b"Seen today.").decode(),
    }
    r = client.post(f"{ATHENA}/patients/{pid}/documents/clinicaldocument", data=form)
    assert r.status_code == 200
    doc_id = r.json()["clinicaldocumentid"]
    read = client.get(
        f"/fhir/demo-athena/DocumentReference/a-195900.clinicaldocument-{doc_id}", params=PRACTICE
    )
    assert read.json()["type"]["coding"][0]["code"] == "11506-3"
    assert base64.b64decode(read.json()["content"][0]["attachment"]["data"]) == b"Seen today."


def test_vendor_endpoints_exist_only_for_their_personality(client: httpx.Client) -> None:
    assert client.post("/athena/demo-epic/v1/1/chart/p1/vitals", data={}).status_code == 404
    assert client.post("/unity/demo-athena/json/GetToken", json={}).status_code == 404


def unity(client: httpx.Client, token: str, action: str, pid: str, *params: str) -> Any:
    message = {"Action": action, "Token": token, "PatientID": pid, "Appname": "wb", "Data": None}
    message |= {f"Parameter{n + 1}": value for n, value in enumerate(params)}
    return client.post(f"{UNITY}/MagicJson", json=message).json()


def test_unity_needs_a_token_and_answers_errors_with_200(client: httpx.Client) -> None:
    """Veradigm Unity: GetToken answers a token as text; MagicJson refuses an unknown token with
    HTTP 200 and an Error object; SaveVitals and SaveNote store FHIR, readable on the read-only
    FHIR API."""
    assert client.post(f"{UNITY}/GetToken", json={}).text.startswith("error")
    token = client.post(f"{UNITY}/GetToken", json={"Username": "u", "Password": "p"}).text
    pid = patient()
    refused = unity(client, "forged", "SaveVitals", pid, "2026-11-25T09:00:00Z", "[]")
    assert refused == [{"Error": "Magic error - Security token is invalid"}]

    readings = json.dumps([{"loinc": "8867-4", "value": 72, "unit": "/min"}])
    saved = unity(client, token, "SaveVitals", pid, "2026-11-25T09:00:00Z", readings)
    vitals_id = saved[0]["savevitalsinfo"][0]["VitalsID"]
    obs = client.get(f"/fhir/demo-veradigm/Observation/vitals-{vitals_id}").json()
    assert obs["valueQuantity"]["value"] == 72

    note = unity(client, token, "SaveNote", pid, "11506-3", "Plan: rest.", "enc-9")
    note_id = note[0]["savenoteinfo"][0]["NoteID"]
    doc = client.get(f"/fhir/demo-veradigm/DocumentReference/note-{note_id}").json()
    assert doc["context"]["encounter"] == [{"reference": "Encounter/enc-9"}]
    assert unity(client, token, "Nope", pid) == [{"Error": "Magic error - unknown Action"}]


def epic_note(**changes: Any) -> dict[str, Any]:
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "context": {"encounter": [{"reference": "Encounter/e1"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}],
    }
    return note | changes


def test_epic_note_needs_encounter_and_base64_text_first_attachment(client: httpx.Client) -> None:
    """Epic DocumentReference.Create (Clinical Notes): context.encounter required; the first
    attachment must be base64 text/plain or text/html; only it is kept (docs/vendors.md quirk 2)."""
    url = "/fhir/demo-epic/DocumentReference"
    no_encounter = client.post(url, json={k: v for k, v in epic_note().items() if k != "context"})
    assert no_encounter.status_code == 422
    assert no_encounter.json()["issue"][0]["expression"] == ["DocumentReference.context.encounter"]
    pdf = [{"attachment": {"contentType": "application/pdf", "data": "aGVsbG8="}}]
    assert client.post(url, json=epic_note(content=pdf)).status_code == 422
    two = epic_note(content=epic_note()["content"] * 2)
    created = client.post(url, json=two)
    assert created.status_code == 201
    assert len(client.get(f"/fhir/demo-epic/{created.headers['location']}").json()["content"]) == 1


def test_epic_repeated_vital_reading_answers_59189_when_enabled(
    client: httpx.Client, tenant: str
) -> None:
    """Epic Observation.Create (Vitals): the same patient, code and time again is 400 with Epic
    code 59189 "Reading already exists" (per tenant, off by default)."""
    client.post(
        f"/_admin/tenants/{tenant}", json={"personality": "epic", "rejects_duplicate_vitals": True}
    )
    url = f"/fhir/{tenant}/Observation"
    assert client.post(url, json=observation(patient="dup")).status_code == 201
    again = client.post(url, json=observation(patient="dup"))
    assert again.status_code == 400
    assert again.json()["issue"][0]["details"]["coding"][0]["code"] == "59189"
    later = observation(patient="dup") | {"effectiveDateTime": "2024-05-01T11:30:00Z"}
    assert client.post(url, json=later).status_code == 201
    assert (
        client.post(
            f"/_admin/tenants/{tenant}", json={"rejects_duplicate_vitals": "yes"}
        ).status_code
        == 400
    )


def test_cerner_stores_xhtml_notes_as_rtf(client: httpx.Client) -> None:
    """Oracle Health DocumentReference create: XHTML is converted to RTF on store (quirk 11)."""
    markup = base64.b64encode(b"<div><p>Seen &amp; well</p></div>").decode()
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": "text/html; charset=utf-8", "data": markup}}],
    }
    created = client.post("/fhir/demo-cerner/DocumentReference", json=note)
    stored = client.get(created.headers["location"]).json()["content"][0]["attachment"]
    assert stored["contentType"] == "text/rtf"
    rtf = base64.b64decode(stored["data"]).decode()
    assert rtf.startswith("{\\rtf1") and "Seen & well" in rtf
