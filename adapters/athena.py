"""athenaOne: clinical writes through the proprietary chart API, reads over FHIR with ah-practice.

Sources (docs/vendors.md quirks 13-14): athenaOne API reference, docs.athenahealth.com/api —
"Chart: Vitals" (``POST /v1/{practiceid}/chart/{patientid}/vitals`` with form fields
``departmentid``, ``source``, ``returnvitalids`` and ``vitals``, a JSON array of reading groups of
``clinicalelementid`` / ``value`` / ``readingtaken``; the answer lists ``vitalids``) and
"Clinical documents" (``POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument``
with ``departmentid``, ``documentsubclass``, ``attachmentcontents``; the answer carries
``clinicaldocumentid``), "Chart: Problems" (``POST /v1/{practiceid}/chart/{patientid}/problems``
with ``departmentid``, ``snomedcode`` and an optional ``startdate`` ``MM/DD/YYYY``; the answer
carries ``problemid``); athenaOne FHIR R4 API and the Athena Core IG: every FHIR call carries
``ah-practice=Organization/a-1.Practice-{practiceid}``. athenaPractice answers 429 beyond ~30
concurrent requests: the tenant's ``max_concurrent_requests`` keeps us under it.

How athena's FHIR ids relate to its API ids is site configuration; the sandbox (and this adapter)
use ``a-{practiceid}.vitals-{vitalid}``, ``a-{practiceid}.clinicaldocument-{id}`` and
``a-{practiceid}.problem-{problemid}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field

from adapters.clinical_notes import codes_in
from adapters.code_systems import CONDITION_CLINICAL, SNOMED
from adapters.families import Family
from adapters.problems import Problem, ResourceInvalid
from adapters.proprietary import (
    AnswerKind,
    VendorCall,
    VendorRefused,
    loinc_codes,
    note_projection,
    number,
    patient_id,
    problem_projection,
    readings,
    utc_time,
    vital_projection,
)
from adapters.tenants import Tenant
from adapters.vendor import ApiVendor, Vendor, VendorApiSettings

#: LOINC -> (athenaOne clinical element, the UCUM unit athena records it in).
VITAL_ELEMENTS: dict[str, tuple[str, str]] = {
    "8867-4": ("VITALS.HEARTRATE", "/min"),
    "9279-1": ("VITALS.RESPIRATIONRATE", "/min"),
    "8310-5": ("VITALS.TEMPERATURE", "[degF]"),
    "29463-7": ("VITALS.WEIGHT", "g"),
    "8302-2": ("VITALS.HEIGHT", "cm"),
    "39156-5": ("VITALS.BMI", "kg/m2"),
    "59408-5": ("VITALS.O2SATURATION", "%"),
    "8480-6": ("VITALS.BLOODPRESSURE.SYSTOLIC", "mm[Hg]"),
    "8462-4": ("VITALS.BLOODPRESSURE.DIASTOLIC", "mm[Hg]"),
}
#: LOINC note type -> athenaOne clinical document subclass.
NOTE_SUBCLASSES: dict[str, str] = {
    "11506-3": "PROGRESSNOTE",
    "11488-4": "CONSULTNOTE",
    "18842-5": "DISCHARGESUMMARY",
    "34117-2": "HISTORYANDPHYSICAL",
}
#: What athenaOne's chart API writes for us (docs/vendors.md quirks 13, 18); every other family
#: is refused before any request.
FAMILIES = frozenset({Family.VITAL_SIGN, Family.CLINICAL_NOTE, Family.PROBLEM})
#: ``source`` of readings we write: device or integration data, not taken in an encounter.
VITALS_SOURCE = "DEVICEGENERATED"


class AthenaApiSettings(VendorApiSettings):
    """athenaOne's ``vendor_api``: the API's base URL and the practice and department written to."""

    kind: Literal["athena"] = "athena"
    practice_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,20}$",
        description="athenaOne practice id: the /v1/{practiceid} path and FHIR's ah-practice",
    )
    department_id: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")


def _api(tenant: Tenant) -> AthenaApiSettings | None:
    api = tenant.vendor_api
    return api if isinstance(api, AthenaApiSettings) else None


def _settings(tenant: Tenant) -> AthenaApiSettings:
    api = _api(tenant)
    if api is None or not api.practice_id or not api.department_id:
        raise ResourceInvalid(
            [Problem("tenant", "athena tenants need vendor_api.practice_id and department_id")]
        )
    return api


def fhir_params(tenant: Tenant) -> dict[str, str]:
    """Query parameters every athenaOne FHIR call must carry."""
    api = _api(tenant)
    if api is None or not api.practice_id:
        return {}
    return {"ah-practice": f"Organization/a-1.Practice-{api.practice_id}"}


#: Units athena does not record, converted into the one it does (its FHIR then shows that unit).
CONVERSIONS: dict[tuple[str, str], Callable[[float], float]] = {
    ("Cel", "[degF]"): lambda celsius: round(celsius * 9 / 5 + 32, 2),
    ("kg", "g"): lambda kilograms: round(kilograms * 1000, 3),
}


def _in_athena_units(code: str, value: float, unit: str) -> tuple[str, int | float, str]:
    if code not in VITAL_ELEMENTS:
        raise ResourceInvalid([Problem("code", f"athenaOne has no vitals element for {code}")])
    athena_unit = VITAL_ELEMENTS[code][1]
    if unit == athena_unit:
        return code, value, unit
    convert = CONVERSIONS.get((unit, athena_unit))
    if convert is None:
        raise ResourceInvalid(
            [Problem("valueQuantity.code", f"athenaOne records {code} in {athena_unit}")]
        )
    return code, number(convert(value)), athena_unit


def _vitals(tenant: Tenant, resource: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
    api = _settings(tenant)
    when = utc_time(resource)
    values = [_in_athena_units(*reading) for reading in readings(resource)]
    taken = when.strftime("%m/%d/%Y %H:%M:%S")
    group = [
        {"clinicalelementid": VITAL_ELEMENTS[code][0], "value": str(value), "readingtaken": taken}
        for code, value, _unit in values
    ]
    call = VendorCall(
        answer=AnswerKind.ATHENA_VITALS,
        path=f"v1/{api.practice_id}/chart/{quote(patient_id(resource), safe='')}/vitals",
        form={
            "departmentid": str(api.department_id),
            "source": VITALS_SOURCE,
            "returnvitalids": "true",
            "vitals": json.dumps([group]),
        },
        id_prefix=f"a-{api.practice_id}.vitals-",
    )
    return call, vital_projection(resource, when, values)


def _note(tenant: Tenant, resource: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
    api = _settings(tenant)
    types = [code for code in loinc_codes(resource.get("type")) if code in NOTE_SUBCLASSES]
    if not types:
        known = ", ".join(sorted(NOTE_SUBCLASSES))
        raise ResourceInvalid([Problem("type", f"athenaOne takes LOINC note types {known}")])
    # a clinical document is filed to the chart, not to an encounter: context.encounter is not
    # carried, and the projection that verification compares with leaves it out
    projection = note_projection(resource, types[0], None)
    call = VendorCall(
        answer=AnswerKind.ATHENA_DOCUMENT,
        path=(
            f"v1/{api.practice_id}/patients/{quote(patient_id(resource), safe='')}"
            "/documents/clinicaldocument"
        ),
        form={
            "departmentid": str(api.department_id),
            "documentsubclass": NOTE_SUBCLASSES[types[0]],
            "attachmentcontents": projection["content"][0]["attachment"]["data"],
        },
        id_prefix=f"a-{api.practice_id}.clinicaldocument-",
    )
    return call, projection


def _onset_date(resource: dict[str, Any]) -> str | None:
    """The onset's calendar date as the resource states it (athena keeps a date, no time)."""
    onset = resource.get("onsetDateTime")
    if onset is None:
        return None
    try:
        return date.fromisoformat(str(onset)[:10]).isoformat()
    except ValueError:
        raise ResourceInvalid([Problem("onsetDateTime", "not a date")]) from None


def _problem(tenant: Tenant, resource: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
    api = _settings(tenant)
    snomed = codes_in(resource.get("code"), SNOMED)
    if not snomed or not snomed[0].isdigit():
        raise ResourceInvalid([Problem("code", "athenaOne files a problem by a SNOMED CT code")])
    clinical = codes_in(resource.get("clinicalStatus"), CONDITION_CLINICAL)
    if clinical != ["active"]:
        raise ResourceInvalid([Problem("clinicalStatus", "athenaOne adds active problems only")])
    onset = _onset_date(resource)
    form = {"departmentid": str(api.department_id), "snomedcode": snomed[0]}
    if onset:
        form["startdate"] = date.fromisoformat(onset).strftime("%m/%d/%Y")
    call = VendorCall(
        answer=AnswerKind.ATHENA_PROBLEM,
        path=f"v1/{api.practice_id}/chart/{quote(patient_id(resource), safe='')}/problems",
        form=form,
        id_prefix=f"a-{api.practice_id}.problem-",
    )
    return call, problem_projection(resource, snomed[0], onset)


#: How each resource type is written through the chart API.
_PLANNERS = {"Observation": _vitals, "DocumentReference": _note, "Condition": _problem}


def plan(tenant: Tenant, resource: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
    """The athenaOne call for a canonical vital sign, note or problem, and the FHIR it will show
    (the validate step has refused every other family: adapters/vendor.py family_refusal)."""
    planner = _PLANNERS.get(str(resource.get("resourceType")))
    if planner is None:
        raise ResourceInvalid([Problem("resourceType", "athenaOne writes vitals, notes, problems")])
    return planner(tenant, resource)


def vendor_id(call: VendorCall, answer: Any) -> str:
    """The athenaOne id in a success answer."""
    if not isinstance(answer, dict) or answer.get("success") not in (True, "true"):
        raise VendorRefused("athenaOne did not report success")
    if call.answer == AnswerKind.ATHENA_VITALS:
        ids = answer.get("vitalids")
        if not isinstance(ids, list) or not ids or not isinstance(ids[0], dict):
            raise VendorRefused("athenaOne answered without vitalids")
        return str(ids[0].get("vitalid"))
    field = "problemid" if call.answer == AnswerKind.ATHENA_PROBLEM else "clinicaldocumentid"
    if answer.get(field) is None:
        raise VendorRefused(f"athenaOne answered without a {field}")
    return str(answer[field])


class Athena(ApiVendor):
    """athenaOne: writes through the chart API, every FHIR call names the practice."""

    families = FAMILIES

    api_settings = AthenaApiSettings
    dev_personality = "athena"

    def plan(self, tenant: Tenant, body: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
        return plan(tenant, body)

    def vendor_id(self, call: VendorCall, answer: Any) -> str:
        return vendor_id(call, answer)

    def fhir_params(self, tenant: Tenant) -> dict[str, str]:
        return fhir_params(tenant)


ADAPTER = Athena(Vendor.ATHENA)
