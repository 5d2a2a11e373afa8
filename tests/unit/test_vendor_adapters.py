"""Vendor adapters without I/O: Epic's create rules, athenaOne and Unity mapping and answers, note
normalization, and which tenants can compensate a write."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from adapters import athena, epic, veradigm
from adapters.athena import AthenaApiSettings as VendorApiSettings  # athena fields
from adapters.clinical_notes import comparable, note_text
from adapters.compensation import can_compensate
from adapters.fhir_r4 import differences, fingerprint, prepare_create
from adapters.problems import ResourceInvalid
from adapters.proprietary import AnswerKind, VendorCall, VendorRefused
from adapters.tenants import Capabilities, Interaction, Tenant, Vendor
from workers import samples

API = VendorApiSettings(base_url="http://ehr.test/api", practice_id="195900", department_id="7")


def tenant(vendor: Vendor, *, updates: bool = True) -> Tenant:
    writable = [Interaction.CREATE, Interaction.UPDATE] if updates else [Interaction.CREATE]
    return Tenant(
        id="t1",
        vendor=vendor,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        # a tenant that updates needs a guard against lost updates (Tenant refuses it otherwise)
        capabilities=Capabilities(if_match=updates, writable={"Observation": writable}),
        vendor_api=API,
    )


def condition(status: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    return {
        "resourceType": "Condition",
        "verificationStatus": {"coding": [{"system": system, "code": status}]},
        "subject": {"reference": "Patient/p1"},
    }


def test_epic_condition_must_be_provisional() -> None:
    """Epic Condition.Create answers 422 / 59012 unless verificationStatus is provisional
    (docs/vendors.md quirk 3): the adapter refuses it before sending, naming the field."""
    (problem,) = epic.create_problems(condition("confirmed"))
    assert problem.path == "verificationStatus" and "provisional" in problem.message
    assert epic.create_problems(condition("provisional")) == []


@pytest.mark.parametrize(
    ("note", "path"),
    [
        (samples.clinical_note("p1", "text"), "context.encounter"),
        (
            samples.clinical_note("p1", "<p>x</p>", "e1", "application/xhtml+xml"),
            "content[0].attachment.contentType",
        ),
    ],
)
def test_epic_note_needs_an_encounter_and_plain_or_html_text(
    note: dict[str, Any], path: str
) -> None:
    """Epic DocumentReference.Create: context.encounter required, first attachment base64
    text/plain or text/html (docs/vendors.md quirk 2); refused at the map step, no EHR call."""
    with pytest.raises(ResourceInvalid) as refused:
        prepare_create(tenant(Vendor.EPIC), note, "t1:k")
    assert [p.path for p in refused.value.problems] == [path]


def test_epic_keeps_only_the_first_attachment_so_one_is_required() -> None:
    note = samples.clinical_note("p1", "text", "e1")
    note["content"] = note["content"] * 2
    assert [p.path for p in epic.create_problems(note)] == ["content"]


def test_cerner_takes_one_content_entry() -> None:
    note = samples.clinical_note("p1", "text", "e1")
    note["content"] = note["content"] * 2
    with pytest.raises(ResourceInvalid) as refused:
        prepare_create(tenant(Vendor.CERNER), note, "t1:k")
    assert [p.path for p in refused.value.problems] == ["content"]


def test_epic_reading_already_exists_is_recognised_by_its_code() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"code": "duplicate", "details": {"coding": [{"code": "59189"}]}}],
    }
    assert epic.reading_already_exists(outcome)
    outcome["issue"][0]["details"]["coding"][0]["code"] = "59008"
    assert not epic.reading_already_exists(outcome)
    assert not epic.reading_already_exists(None)


def test_notes_compare_as_text_whatever_the_ehr_encoding() -> None:
    """Cerner stores XHTML as RTF (docs/vendors.md quirk 11): read-back compares normalized text,
    and a changed word is still a difference."""
    sent = samples.clinical_note(
        "p1", "<div><p>Plan:  recheck &amp; call</p></div>", None, "text/html"
    )
    rtf = r"{\rtf1\ansi\deff0 {\fonttbl {\f0 Arial;}}\f0\fs20 Plan: recheck & call\par}"
    stored = {**sent, "content": [{"attachment": {"contentType": "text/rtf", "data": ""}}]}
    stored["content"][0]["attachment"]["data"] = base64.b64encode(rtf.encode()).decode()

    assert note_text(sent) == note_text(stored) == "Plan: recheck & call"
    assert differences(comparable(sent), comparable(stored)) == []
    changed = {**stored, "content": [{"attachment": {"contentType": "text/plain", "data": ""}}]}
    changed["content"][0]["attachment"]["data"] = base64.b64encode(b"Plan: discharge").decode()
    assert differences(comparable(sent), comparable(changed)) == ["content[0].text"]


def test_athena_blood_pressure_is_one_reading_group_of_two_elements() -> None:
    resource = samples.blood_pressure("p 1", 120, 80)
    resource["effectiveDateTime"] = "2026-11-25T10:15:00+01:00"
    call, projection = athena.plan(tenant(Vendor.ATHENA), resource)

    assert call.path == "v1/195900/chart/p%201/vitals"
    assert call.form is not None and call.form["departmentid"] == "7"
    (group,) = json.loads(call.form["vitals"])
    assert [(r["clinicalelementid"], r["value"]) for r in group] == [
        ("VITALS.BLOODPRESSURE.SYSTOLIC", "120"),
        ("VITALS.BLOODPRESSURE.DIASTOLIC", "80"),
    ]
    assert {r["readingtaken"] for r in group} == {"11/25/2026 09:15:00"}  # UTC
    assert projection["effectiveDateTime"] == "2026-11-25T09:15:00Z"
    assert athena.fhir_params(tenant(Vendor.ATHENA)) == {
        "ah-practice": "Organization/a-1.Practice-195900"
    }


def test_athena_answer_maps_to_the_fhir_id() -> None:
    call = VendorCall(answer=AnswerKind.ATHENA_VITALS, path="x", id_prefix="a-1.vitals-")
    answer = {"success": True, "vitalids": [{"clinicalelementid": "X", "vitalid": 46467}]}
    assert athena.vendor_id(call, answer) == "46467"
    with pytest.raises(VendorRefused):
        athena.vendor_id(call, {"error": "departmentid is required"})


def test_unity_error_about_the_token_asks_for_a_new_one_and_keeps_no_text() -> None:
    call, _ = veradigm.plan(tenant(Vendor.VERADIGM), samples.heart_rate("p1", 70))
    assert call.message is not None and call.message["Action"] == "SaveVitals"
    assert set(call.message) >= {f"Parameter{n}" for n in range(1, 7)}
    assert veradigm.vendor_id(call, [{"savevitalsinfo": [{"VitalsID": "12"}]}]) == "12"
    with pytest.raises(VendorRefused) as refused:
        veradigm.vendor_id(call, [{"Error": "Magic error - Security token is invalid"}])
    assert refused.value.token_expired and "Magic error" not in str(refused.value)


def test_the_projection_fingerprint_matches_what_the_vendor_stores() -> None:
    """Deduplication through a proprietary API compares the stored FHIR with the projection."""
    request = prepare_create(tenant(Vendor.VERADIGM), samples.heart_rate("p1", 70), "t1:k")
    assert request.expected is not None
    stored = {**request.expected, "id": "vitals-1", "meta": {"versionId": "1"}}
    assert fingerprint(stored) == request.fingerprint and request.is_ours(stored)


@pytest.mark.parametrize(
    ("vendor", "updates", "expected"),
    [
        (Vendor.GENERIC_R4, True, True),
        (Vendor.CERNER, True, True),
        (Vendor.CERNER, False, False),  # this tenant may only create Observations
        (Vendor.EPIC, True, False),  # Epic is create-only
        (Vendor.ATHENA, True, False),
        (Vendor.VERADIGM, True, False),
    ],
)
def test_can_compensate_per_vendor(vendor: Vendor, updates: bool, expected: bool) -> None:
    assert can_compensate(tenant(vendor, updates=updates), "Observation") is expected


def test_a_type_without_an_error_status_cannot_be_compensated() -> None:
    assert not can_compensate(tenant(Vendor.GENERIC_R4), "Provenance")
