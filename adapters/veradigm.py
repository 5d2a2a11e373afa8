"""Veradigm: clinical writes through the Unity API; its FHIR API is read-only (docs/vendors.md 15).

Sources: developer.veradigm.com, "Veradigm FHIR API" ("limited to read-only access ... Unity API
enabling both reads and writes") and the Unity API: ``POST .../json/GetToken`` with
``{"Username", "Password"}`` answers a token as text; ``POST .../json/MagicJson`` carries
``{"Action", "AppUserID", "Appname", "PatientID", "Token", "Parameter1".."Parameter6", "Data"}``
and answers ``[{"<action>info": [...]}]``, or ``[{"Error": "..."}]`` with HTTP 200. Actions used
here: ``SaveVitals`` (Parameter1 reading time, Parameter2 the readings as JSON) and ``SaveNote``
(Parameter1 LOINC note type, Parameter2 the text, Parameter3 the encounter).

How Veradigm's FHIR ids relate to Unity ids is site configuration; the sandbox (and this adapter)
use ``vitals-{VitalsID}`` and ``note-{NoteID}``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from adapters.clinical_notes import note_text
from adapters.families import Family
from adapters.problems import Problem, ResourceInvalid
from adapters.proprietary import (
    AnswerKind,
    VendorCall,
    VendorRefused,
    encounter_id,
    loinc_codes,
    note_projection,
    patient_id,
    readings,
    utc_time,
    vital_projection,
)
from adapters.tenants import Tenant
from adapters.vendor import ApiVendor, Vendor, VendorApiSettings

MAGIC_JSON = "json/MagicJson"
GET_TOKEN = "json/GetToken"
UNITY_PARAMETERS = 6
#: What Unity's public documentation shows an action for (docs/vendors.md quirk 15): SaveVitals
#: and SaveNote. Its problem, allergy, medication and immunization actions are not publicly
#: documented with their parameters: those families are refused (quirk 19).
FAMILIES = frozenset({Family.VITAL_SIGN, Family.CLINICAL_NOTE})


class UnityApiSettings(VendorApiSettings):
    """Veradigm's ``vendor_api``: the Unity base URL, the app and user it acts as, and GetToken's
    credentials (the password from an environment variable, never from the tenant file)."""

    kind: Literal["veradigm"] = "veradigm"
    app_name: str | None = Field(default=None, description="Veradigm Unity Appname")
    app_user: str | None = Field(default=None, description="Veradigm Unity AppUserID")
    username: str | None = Field(default=None, description="Veradigm Unity GetToken Username")
    password_env: str | None = Field(
        default=None, description="environment variable holding the Unity GetToken password"
    )


def unity_settings(tenant: Tenant) -> UnityApiSettings | None:
    api = tenant.vendor_api
    return api if isinstance(api, UnityApiSettings) else None


def _envelope(tenant: Tenant, action: str, patient: str, *parameters: str) -> dict[str, Any]:
    api = unity_settings(tenant)
    message: dict[str, Any] = {
        "Action": action,
        "AppUserID": (api.app_user if api else None) or "",
        "Appname": (api.app_name if api else None) or "",
        "PatientID": patient,
        "Data": None,
    }
    padded = list(parameters) + [""] * (UNITY_PARAMETERS - len(parameters))
    message.update({f"Parameter{n + 1}": value for n, value in enumerate(padded)})
    return message


def plan(tenant: Tenant, resource: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
    """The Unity MagicJson call for a canonical vital sign or note, and the FHIR it will show."""
    patient = patient_id(resource)
    if resource.get("resourceType") == "Observation":
        when = utc_time(resource)
        items = [{"loinc": c, "value": v, "unit": u} for c, v, u in readings(resource)]
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = _envelope(tenant, "SaveVitals", patient, stamp, json.dumps(items))
        call = VendorCall(
            answer=AnswerKind.UNITY, path=MAGIC_JSON, message=message, id_prefix="vitals-"
        )
        return call, vital_projection(resource, when)
    if resource.get("resourceType") == "DocumentReference":
        types = loinc_codes(resource.get("type"))
        encounter = encounter_id(resource)
        args = [types[0] if types else "", note_text(resource) or "", encounter or ""]
        message = _envelope(tenant, "SaveNote", patient, *args)
        call = VendorCall(
            answer=AnswerKind.UNITY, path=MAGIC_JSON, message=message, id_prefix="note-"
        )
        return call, note_projection(resource, args[0], encounter)
    raise ResourceInvalid([Problem("resourceType", "Veradigm Unity writes vitals and notes here")])


def vendor_id(call: VendorCall, answer: Any) -> str:
    """The Unity id in a MagicJson answer (``VitalsID`` / ``NoteID``)."""
    first = answer[0] if isinstance(answer, list) and answer else None
    if not isinstance(first, dict):
        raise VendorRefused(f"Unity {call.action} answered in an unknown shape")
    if "Error" in first:
        # Unity's error text can echo input: only whether it concerns the token is kept
        expired = "token" in str(first["Error"]).lower()
        raise VendorRefused(f"Unity {call.action} answered an error", token_expired=expired)
    rows = first.get(f"{call.action.lower()}info")
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    found = row.get("VitalsID") or row.get("NoteID")
    if not found:
        raise VendorRefused(f"Unity {call.action} answered without an id")
    return str(found)


class Veradigm(ApiVendor):
    """Veradigm: writes through Unity's MagicJson, a read-only FHIR API to read them back."""

    families = FAMILIES

    api_settings = UnityApiSettings
    dev_personality = "veradigm"

    def plan(self, tenant: Tenant, body: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
        return plan(tenant, body)

    def vendor_id(self, call: VendorCall, answer: Any) -> str:
        return vendor_id(call, answer)


ADAPTER = Veradigm(Vendor.VERADIGM)
