"""Proprietary write APIs of the athena and Veradigm personalities (docs/vendors.md quirks 13, 15).

Neither vendor takes clinical writes over FHIR, so the sandbox offers the vendor's own calls and
stores what they carry as FHIR resources in the same store: the tenant's (read-only) FHIR API then
shows them, which is how the product verifies a proprietary write.

athenaOne (docs.athenahealth.com/api, "Chart > Vitals", "Clinical documents"; the request shape
``departmentid``/``source``/``returnvitalids``/``vitals`` with an array of arrays of
``clinicalelementid``/``value``/``readingtaken`` and the ``vitalids`` answer is the one public
athenaOne clients use)::

    POST /athena/{tenant}/v1/{practiceid}/chart/{patientid}/vitals          (form)
         -> {"success": true, "vitalids": [{"clinicalelementid": ..., "vitalid": n}, ...]}
    POST /athena/{tenant}/v1/{practiceid}/patients/{patientid}/documents/clinicaldocument  (form)
         -> {"success": true, "clinicaldocumentid": n}

  FHIR ids: ``Observation/a-{practiceid}.vitals-{first vitalid}``,
  ``DocumentReference/a-{practiceid}.clinicaldocument-{clinicaldocumentid}``.

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

Neither API has an idempotency key: a replay makes a second record (docs/vendors.md).
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox import interactions
from sandbox.pipeline import Call, Handler, fhir_route
from sandbox.responses import FhirError, Json
from sandbox.state import Sandbox

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


def _number_id() -> int:
    return int(secrets.token_hex(4), 16)


def _utc(now: float) -> str:
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store(call: Call, rtype: str, rid: str, body: Json) -> None:
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
            ids = [_number_id() for _ in elements]
            _store(call, "Observation", f"a-{practice}.vitals-{ids[0]}", body)
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
    doc_id = _number_id()
    body = note_document(patient, ATHENA_SUBCLASSES[subclass], text, _utc(call.env.now))
    try:
        _store(call, "DocumentReference", f"a-{practice}.clinicaldocument-{doc_id}", body)
    except FhirError as err:
        return _athena_error(err.diagnostics, err.status)
    return JSONResponse({"success": True, "clinicaldocumentid": doc_id})


def _unity(action: str, rows: list[Json]) -> Response:
    return JSONResponse([{f"{action.lower()}info": rows}])


def _unity_error(message: str) -> Response:
    return JSONResponse([{"Error": message}])


async def unity_get_token(call: Call) -> Response:
    try:
        creds = json.loads(await call.request.body())
    except ValueError:
        creds = None
    if (
        not isinstance(creds, dict)
        or not creds.get("Username")
        or not isinstance(creds.get("Password"), str)
    ):
        return PlainTextResponse("error: Username and Password are required")
    token = secrets.token_hex(16)
    call.sb.unity_tokens[call.env.tenant].add(token)
    return PlainTextResponse(token)


async def unity_magic(call: Call) -> Response:
    try:
        msg = json.loads(await call.request.body())
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        return _unity_error("Magic error - request is not a JSON object")
    if msg.get("Token") not in call.sb.unity_tokens[call.env.tenant]:
        return _unity_error("Magic error - Security token is invalid")
    action, patient = msg.get("Action"), str(msg.get("PatientID") or "")
    if not patient:
        return _unity_error("Magic error - PatientID is required")
    try:
        if action == "SaveVitals":
            items = json.loads(msg.get("Parameter2") or "null")
            if not isinstance(items, list):
                raise VendorError("Parameter2 must be a JSON array of readings")
            readings = [(str(i["loinc"]), i["value"], str(i["unit"])) for i in items]
            body = vital_observation(patient, str(msg.get("Parameter1")), readings)
            vitals_id = _number_id()
            _store(call, "Observation", f"vitals-{vitals_id}", body)
            return _unity(action, [{"VitalsID": str(vitals_id)}])
        if action == "SaveNote":
            loinc, text = str(msg.get("Parameter1") or ""), msg.get("Parameter2")
            if not loinc or not isinstance(text, str) or not text:
                raise VendorError("Parameter1 (note type) and Parameter2 (text) are required")
            encounter = str(msg.get("Parameter3") or "") or None
            body = note_document(patient, loinc, text, _utc(call.env.now), encounter)
            note_id = _number_id()
            _store(call, "DocumentReference", f"note-{note_id}", body)
            return _unity(action, [{"NoteID": str(note_id)}])
    except (VendorError, KeyError, TypeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, VendorError) else "malformed parameters"
        return _unity_error(f"Magic error - {reason}")
    except FhirError as err:
        return _unity_error(f"Magic error - {err.diagnostics}")
    return _unity_error("Magic error - unknown Action")


def _only_for(personality: str, handler: Handler) -> Handler:
    async def guarded(call: Call) -> Response:
        if call.env.p.name != personality:
            return JSONResponse({"error": f"not a {personality} tenant"}, status_code=404)
        return await handler(call)

    return guarded


def routes(sb: Sandbox) -> list[Route]:
    """The vendor APIs go through the same pipeline as FHIR calls (stats, the in-flight limit,
    outages, latency, queued faults such as commit_then_drop) but need no FHIR bearer token or
    ``ah-practice`` (the vendors' own OAuth is not modelled)."""
    athena = "/athena/{tenant}/v1/{practiceid}"
    unity = "/unity/{tenant}/json"

    def route(path: str, personality: str, handler: Handler) -> Route:
        endpoint = fhir_route(sb, _only_for(personality, handler), public=True)
        return Route(path, endpoint, methods=["POST"])

    return [
        route(f"{athena}/chart/{{patientid}}/vitals", "athena", athena_vitals),
        route(
            f"{athena}/patients/{{patientid}}/documents/clinicaldocument",
            "athena",
            athena_clinical_document,
        ),
        route(f"{unity}/GetToken", "veradigm", unity_get_token),
        route(f"{unity}/MagicJson", "veradigm", unity_magic),
    ]
