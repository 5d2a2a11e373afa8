"""Proprietary write APIs of the athena and Veradigm personalities (docs/vendors.md quirks 13, 15).

Neither vendor takes clinical writes over FHIR, so the sandbox offers the vendor's own calls and
stores what they carry as FHIR resources in the same store: the tenant's (read-only) FHIR API then
shows them, which is how the product verifies a proprietary write.

athenaOne (docs.athenahealth.com/api, "Chart > Vitals", "Clinical documents", "Chart > Problems";
the request shape
``departmentid``/``source``/``returnvitalids``/``vitals`` with an array of arrays of
``clinicalelementid``/``value``/``readingtaken`` and the ``vitalids`` answer is the one public
athenaOne clients use)::

    POST /athena/{tenant}/v1/{practiceid}/chart/{patientid}/vitals          (form)
         -> {"success": true, "vitalids": [{"clinicalelementid": ..., "vitalid": n}, ...]}
    POST /athena/{tenant}/v1/{practiceid}/patients/{patientid}/documents/clinicaldocument  (form)
         -> {"success": true, "clinicaldocumentid": n}

    POST /athena/{tenant}/v1/{practiceid}/chart/{patientid}/problems  (form: departmentid,
         snomedcode, startdate MM/DD/YYYY optional)  -> {"success": true, "problemid": n}

  FHIR ids: ``Observation/a-{practiceid}.vitals-{first vitalid}``,
  ``DocumentReference/a-{practiceid}.clinicaldocument-{clinicaldocumentid}``,
  ``Condition/a-{practiceid}.problem-{problemid}`` (an active problem-list item).

Veradigm Unity (developer.veradigm.com, "Unity API": ``GetToken`` then ``MagicJson`` with the
envelope ``Action, AppUserID, Appname, PatientID, Token, Parameter1..6, Data``; answers are
``[{"<action>info": [...]}]`` or ``[{"Error": "..."}]`` with HTTP 200)::

    POST /unity/{tenant}/json/GetToken   {"Username", "Password"}  -> the token (text/plain)
    POST /unity/{tenant}/json/MagicJson  Action SaveVitals: Parameter1 = reading time (UTC ISO),
         Parameter2 = JSON [{"loinc", "value", "unit"}]  -> [{"savevitalsinfo": [{"VitalsID"}]}]
    POST /unity/{tenant}/json/MagicJson  Action SaveNote: Parameter1 = note type (LOINC),
         Parameter2 = note text, Parameter3 = encounter id (optional)
                                                         -> [{"savenoteinfo": [{"NoteID"}]}]

  FHIR ids: ``Observation/vitals-{VitalsID}``, ``DocumentReference/note-{NoteID}``.

The athena handlers are here, Unity's in sandbox/unity.py, their routes in sandbox/vendor_routes.py.
Neither API has an idempotency key: a replay makes a second record (docs/vendors.md).
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response

from sandbox import interactions
from sandbox.pipeline import Call
from sandbox.responses import FhirError, Json

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
CLINICAL_NOTE = {
    "coding": [
        {
            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "code": "clinical-note",
        }
    ]
}
SNOMED = "http://snomed.info/sct"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
BP_PANEL = "85354-9"
BP_PARTS = frozenset({"8480-6", "8462-4"})

#: athenaOne clinical element -> (LOINC, UCUM unit athena records it in).
ATHENA_ELEMENTS: dict[str, tuple[str, str]] = {
    "VITALS.HEARTRATE": ("8867-4", "/min"),
    "VITALS.RESPIRATIONRATE": ("9279-1", "/min"),
    "VITALS.TEMPERATURE": ("8310-5", "[degF]"),
    "VITALS.WEIGHT": ("29463-7", "g"),
    "VITALS.HEIGHT": ("8302-2", "cm"),
    "VITALS.BMI": ("39156-5", "kg/m2"),
    "VITALS.O2SATURATION": ("59408-5", "%"),
    "VITALS.BLOODPRESSURE.SYSTOLIC": ("8480-6", "mm[Hg]"),
    "VITALS.BLOODPRESSURE.DIASTOLIC": ("8462-4", "mm[Hg]"),
}
#: athenaOne clinical document subclass -> LOINC note type.
ATHENA_SUBCLASSES: dict[str, str] = {
    "PROGRESSNOTE": "11506-3",
    "CONSULTNOTE": "11488-4",
    "DISCHARGESUMMARY": "18842-5",
    "HISTORYANDPHYSICAL": "34117-2",
}


class VendorError(Exception):
    """A refusal in the vendor's own error shape (not an OperationOutcome)."""


def _number(text: Any) -> int | float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise VendorError("value must be a number") from None
    return int(value) if value.is_integer() else value


def _quantity(value: Any, unit: str) -> Json:
    return {"value": _number(value), "unit": unit, "system": UCUM, "code": unit}


def _concept(code: str) -> Json:
    return {"coding": [{"system": LOINC, "code": code}]}


def vital_observation(patient: str, when: str, readings: list[tuple[str, Any, str]]) -> Json:
    """One FHIR vital-sign Observation for a group of (LOINC, value, unit) readings taken together:
    systolic + diastolic become the blood pressure panel."""
    body: Json = {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS],
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
    }
    codes = {code for code, _, _ in readings}
    if codes == BP_PARTS and len(readings) == 2:
        body["code"] = _concept(BP_PANEL)
        body["component"] = [
            {"code": _concept(code), "valueQuantity": _quantity(value, unit)}
            for code, value, unit in sorted(readings, key=lambda r: r[0] != "8480-6")
        ]
    elif len(readings) == 1:
        code, value, unit = readings[0]
        body["code"] = _concept(code)
        body["valueQuantity"] = _quantity(value, unit)
    else:
        raise VendorError("a reading group is one vital sign, or systolic with diastolic")
    return body


def note_document(
    patient: str, loinc: str, text: str, when: str, encounter: str | None = None
) -> Json:
    body: Json = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": _concept(loinc),
        "category": [CLINICAL_NOTE],
        "subject": {"reference": f"Patient/{patient}"},
        "date": when,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    if encounter:
        body["context"] = {"encounter": [{"reference": f"Encounter/{encounter}"}]}
    return body


def number_id() -> int:
    return int(secrets.token_hex(4), 16)


def utc(now: float) -> str:
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def store(call: Call, rtype: str, rid: str, body: Json) -> None:
    """Validate (vendor rules, drift) and store as FHIR; the FHIR write rules (read-only, writable
    types) do not apply: this is the vendor's own write path."""
    env = call.env
    with call.sb.store.tx(env.tenant) as tx:
        interactions.store(
            env, tx, rtype, rid, interactions.prepare(env, rtype, body, None, create=True)
        )


async def _form(call: Call) -> dict[str, str]:
    return dict(parse_qsl((await call.request.body()).decode(errors="replace")))


def _athena_error(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _reading_time(text: str) -> str:
    """athena's ``readingtaken`` (``MM/DD/YYYY HH24:MI:SS``, the practice's clock; here UTC)."""
    try:
        return datetime.strptime(text, "%m/%d/%Y %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise VendorError("readingtaken must look like MM/DD/YYYY HH24:MI:SS") from None


async def athena_vitals(call: Call) -> Response:
    params = call.request.path_params
    form = await _form(call)
    practice, patient = params["practiceid"], params["patientid"]
    try:
        if not form.get("departmentid"):
            raise VendorError("departmentid is required")
        groups = json.loads(form.get("vitals") or "null")
        if not isinstance(groups, list) or not groups:
            raise VendorError("vitals must be a JSON array of reading groups")
        answer: list[dict[str, Any]] = []
        for group in groups:
            readings: list[tuple[str, Any, str]] = []
            elements: list[str] = []
            when = None
            for item in group if isinstance(group, list) else []:
                element = item.get("clinicalelementid") if isinstance(item, dict) else None
                if element not in ATHENA_ELEMENTS:
                    raise VendorError("unknown clinicalelementid")
                loinc, unit = ATHENA_ELEMENTS[element]
                readings.append((loinc, item.get("value"), unit))
                elements.append(element)
                when = _reading_time(str(item.get("readingtaken", "")))
            if not readings or when is None:
                raise VendorError("a reading group needs at least one reading")
            body = vital_observation(patient, when, readings)
            ids = [number_id() for _ in elements]
            store(call, "Observation", f"a-{practice}.vitals-{ids[0]}", body)
            answer += [
                {"clinicalelementid": element, "vitalid": vid}
                for element, vid in zip(elements, ids, strict=True)
            ]
    except (VendorError, ValueError) as exc:
        return _athena_error(str(exc) if isinstance(exc, VendorError) else "vitals is not JSON")
    except FhirError as err:
        return _athena_error(err.diagnostics, err.status)
    if form.get("returnvitalids", "").lower() != "true":
        return JSONResponse({"success": True})
    return JSONResponse({"success": True, "vitalids": answer})


async def athena_clinical_document(call: Call) -> Response:
    params = call.request.path_params
    form = await _form(call)
    practice, patient = params["practiceid"], params["patientid"]
    subclass = form.get("documentsubclass", "")
    if not form.get("departmentid"):
        return _athena_error("departmentid is required")
    if subclass not in ATHENA_SUBCLASSES:
        return _athena_error("unknown documentsubclass")
    try:
        text = base64.b64decode(form.get("attachmentcontents", ""), validate=True).decode()
    except ValueError:
        return _athena_error("attachmentcontents must be base64 text")
    doc_id = number_id()
    body = note_document(patient, ATHENA_SUBCLASSES[subclass], text, utc(call.env.now))
    try:
        store(call, "DocumentReference", f"a-{practice}.clinicaldocument-{doc_id}", body)
    except FhirError as err:
        return _athena_error(err.diagnostics, err.status)
    return JSONResponse({"success": True, "clinicaldocumentid": doc_id})


def problem_condition(patient: str, snomed: str, startdate: str, when: str) -> Json:
    """The FHIR Condition athena's FHIR shows for a problem added to the chart."""
    body: Json = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": SNOMED, "code": snomed}]},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": when,
    }
    if startdate:
        body["onsetDateTime"] = datetime.strptime(startdate, "%m/%d/%Y").date().isoformat()
    return body


async def athena_problem(call: Call) -> Response:
    params = call.request.path_params
    form = await _form(call)
    practice, patient = params["practiceid"], params["patientid"]
    if not form.get("departmentid"):
        return _athena_error("departmentid is required")
    if not form.get("snomedcode", "").isdigit():
        return _athena_error("snomedcode must be a SNOMED CT concept id")
    try:
        body = problem_condition(
            patient, form["snomedcode"], form.get("startdate", ""), utc(call.env.now)
        )
        problem_id = number_id()
        store(call, "Condition", f"a-{practice}.problem-{problem_id}", body)
    except ValueError:
        return _athena_error("startdate must look like MM/DD/YYYY")
    except FhirError as err:
        return _athena_error(err.diagnostics, err.status)
    return JSONResponse({"success": True, "problemid": problem_id})
