"""Vendor content rules: checks that look inside a resource before it is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.responses import FhirError, Json

VITAL_SIGNS = ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def _has_coding(concepts: Any, system: str, code: str) -> bool:
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        if isinstance(concept, dict):
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict) and (coding.get("system"), coding.get("code")) == (
                    system,
                    code,
                ):
                    return True
    return False


def epic_create(rtype: str, body: Json) -> None:
    """Epic on FHIR create rules.

    * "Epic on FHIR: Observation.Create (Vitals) (R4)": a vital-sign reading is
      filed only with ``status = final`` (VENDORS.md quirk 1).
    * "Epic on FHIR: Condition.Create (Problems) (R4)": ``verificationStatus``
      must be ``provisional``, otherwise 422 with Epic error 59012 (quirk 3).
    """
    vital = rtype == "Observation" and _has_coding(body.get("category"), *VITAL_SIGNS)
    if vital and body.get("status") != "final":
        raise FhirError(
            422,
            "business-rule",
            "Observation.status must be final for vital signs",
            expression=["Observation.status"],
            vendor_code="59008",
        )
    if rtype == "Condition" and not _has_coding(
        body.get("verificationStatus"), CONDITION_VERIFICATION, "provisional"
    ):
        raise FhirError(
            422,
            "business-rule",
            "Condition.verificationStatus must be provisional",
            expression=["Condition.verificationStatus"],
            vendor_code="59012",
        )


def cerner_write(rtype: str, body: Json) -> None:
    """Oracle Health Millennium Platform FHIR R4 API, "DocumentReference create":
    exactly one ``content`` entry whose attachment states ``contentType`` with a
    ``charset`` (VENDORS.md quirk 11)."""
    if rtype != "DocumentReference":
        return
    content = body.get("content")
    if not isinstance(content, list) or len(content) != 1:
        raise FhirError(
            422,
            "business-rule",
            "DocumentReference.content must have exactly one entry",
            expression=["DocumentReference.content"],
        )
    attachment = content[0].get("attachment") if isinstance(content[0], dict) else None
    ctype = attachment.get("contentType") if isinstance(attachment, dict) else None
    if not isinstance(ctype, str) or "charset=" not in ctype.replace(" ", "").lower():
        raise FhirError(
            422,
            "business-rule",
            "DocumentReference.content[0].attachment.contentType must include a charset",
            expression=["DocumentReference.content[0].attachment.contentType"],
        )


Rule = Callable[[str, Json], None]
CREATE_RULES: dict[str, tuple[Rule, ...]] = {
    "epic": (epic_create,),
    "cerner": (cerner_write,),
}
UPDATE_RULES: dict[str, tuple[Rule, ...]] = {
    "cerner": (cerner_write,),
}


def check(personality: str, rtype: str, body: Json, *, create: bool) -> None:
    for rule in (CREATE_RULES if create else UPDATE_RULES).get(personality, ()):
        rule(rtype, body)
