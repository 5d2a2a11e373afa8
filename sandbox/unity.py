"""Veradigm Unity's write API in the sandbox (docs/vendors.md quirk 15; the shapes are in
sandbox/proprietary.py's docstring): GetToken, and MagicJson's SaveVitals and SaveNote, stored
as FHIR the tenant's read-only FHIR API then shows."""

from __future__ import annotations

import json
import secrets

from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.pipeline import Call
from sandbox.proprietary import VendorError, note_document, number_id, store, utc, vital_observation
from sandbox.responses import FhirError, Json


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
            vitals_id = number_id()
            store(call, "Observation", f"vitals-{vitals_id}", body)
            return _unity(action, [{"VitalsID": str(vitals_id)}])
        if action == "SaveNote":
            loinc, text = str(msg.get("Parameter1") or ""), msg.get("Parameter2")
            if not loinc or not isinstance(text, str) or not text:
                raise VendorError("Parameter1 (note type) and Parameter2 (text) are required")
            encounter = str(msg.get("Parameter3") or "") or None
            body = note_document(patient, loinc, text, utc(call.env.now), encounter)
            note_id = number_id()
            store(call, "DocumentReference", f"note-{note_id}", body)
            return _unity(action, [{"NoteID": str(note_id)}])
    except (VendorError, KeyError, TypeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, VendorError) else "malformed parameters"
        return _unity_error(f"Magic error - {reason}")
    except FhirError as err:
        return _unity_error(f"Magic error - {err.diagnostics}")
    return _unity_error("Magic error - unknown Action")
