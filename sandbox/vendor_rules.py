"""Vendor content rules: checks that look inside a resource before it is stored."""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Callable
from typing import Any

from sandbox.responses import FhirError, Json

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_SIGNS = (OBSERVATION_CATEGORY, "vital-signs")
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORIES = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/condition-category",
        "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
    }
)
#: The categories each vendor documents a create API for, per type (docs/vendors.md quirks 16,
#: 17): a resource whose categories (in these systems) name none of them has no API to go to.
WRITABLE_CATEGORIES: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "epic": {
        "Observation": (frozenset({OBSERVATION_CATEGORY}), frozenset({"vital-signs"})),
        "Condition": (CONDITION_CATEGORIES, frozenset({"problem-list-item"})),
    },
    "cerner": {
        "Observation": (
            frozenset({OBSERVATION_CATEGORY}),
            frozenset({"vital-signs", "laboratory"}),
        ),
        "Condition": (
            CONDITION_CATEGORIES,
            frozenset({"problem-list-item", "encounter-diagnosis"}),
        ),
    },
}


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


def _categories(body: Json, systems: frozenset[str]) -> set[str]:
    concepts = body.get("category")
    listed = concepts if isinstance(concepts, list) else []
    return {
        str(coding.get("code"))
        for concept in listed
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict) and coding.get("system") in systems
    }


def _undocumented_category(personality: str, rtype: str, body: Json) -> bool:
    """Does the resource name categories, none of which the vendor has a create API for?"""
    rule = WRITABLE_CATEGORIES.get(personality, {}).get(rtype)
    if rule is None:
        return False
    codes = _categories(body, rule[0])
    return bool(codes) and not codes & rule[1]


def epic_create(rtype: str, body: Json) -> None:
    """Epic on FHIR create rules.

    * "Epic on FHIR: Observation.Create (Vitals) (R4)": a vital-sign reading is
      filed only with ``status = final`` (docs/vendors.md quirk 1).
    * "Epic on FHIR: Condition.Create (Problems) (R4)": ``verificationStatus``
      must be ``provisional``, otherwise 422 with Epic error 59012 (quirk 3).
    * A category Epic has no create API for (a laboratory result, an encounter diagnosis: quirk
      16) reaches no registered API: 403 with an empty body, as for an unregistered client
      (quirk 5).
    """
    if _undocumented_category("epic", rtype, body):
        raise FhirError(403, "forbidden", "no create API for this category", empty_body=True)
    vital = rtype == "Observation" and _has_coding(body.get("category"), *VITAL_SIGNS)
    if vital and body.get("status") != "final":
        raise FhirError(
            422,
            "business-rule",
            "Observation.status must be final for vital signs",
            expression=["Observation.status"],
            vendor_code="59008",
        )
    if rtype == "DocumentReference":
        _epic_note(body)
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


EPIC_NOTE_TYPES = ("text/plain", "text/html")


def _epic_note(body: Json) -> None:
    """ "Epic on FHIR: DocumentReference.Create (Clinical Notes) (R4)": the note needs an encounter
    (``context.encounter``); only the first attachment is filed and it must be base64 ``text/plain``
    (or ``text/html``) in ``data`` (docs/vendors.md quirk 2). Extra attachments are dropped."""
    context = body.get("context")
    encounters = context.get("encounter") if isinstance(context, dict) else None
    if not encounters:
        raise FhirError(
            422,
            "required",
            "DocumentReference.context.encounter is required",
            expression=["DocumentReference.context.encounter"],
            vendor_code="59100",
        )
    content = body.get("content") or [{}]
    attachment = content[0].get("attachment") if isinstance(content[0], dict) else None
    attachment = attachment if isinstance(attachment, dict) else {}
    ctype = str(attachment.get("contentType", "")).split(";")[0].strip().lower()
    try:
        base64.b64decode(str(attachment.get("data", "")), validate=True)
        decodable = bool(attachment.get("data"))
    except (binascii.Error, ValueError):
        decodable = False
    if ctype not in EPIC_NOTE_TYPES or not decodable:
        raise FhirError(
            422,
            "business-rule",
            "the first attachment must be base64 text/plain or text/html in data",
            expression=["DocumentReference.content[0].attachment"],
            vendor_code="59101",
        )
    body["content"] = content[:1]


def epic_duplicate_vital(body: Json, existing: list[Json]) -> None:
    """ "Epic on FHIR: Observation.Create (Vitals) (R4)": a reading for the same patient, code and
    time is already filed: 400 with Epic code 59189 "Reading already exists" (docs/vendors.md,
    replay row). ``existing`` are the patient's stored Observations with the same code."""
    when = {k: v for k, v in body.items() if k.startswith("effective")}
    if any({k: v for k, v in e.items() if k.startswith("effective")} == when for e in existing):
        raise FhirError(
            400,
            "duplicate",
            "Reading already exists",
            expression=["Observation.effective"],
            vendor_code="59189",
        )


def is_vital_sign(rtype: str, body: Json) -> bool:
    return rtype == "Observation" and _has_coding(body.get("category"), *VITAL_SIGNS)


def cerner_write(rtype: str, body: Json) -> None:
    """Oracle Health Millennium Platform FHIR R4 API, "DocumentReference create":
    exactly one ``content`` entry whose attachment states ``contentType`` with a
    ``charset`` (docs/vendors.md quirk 11). An Observation is created only as a laboratory
    result or a vital sign, a Condition only as a problem-list item or an encounter diagnosis
    (quirk 17: "Update an observation", "Create a condition": "only ... are supported")."""
    if _undocumented_category("cerner", rtype, body):
        raise FhirError(
            422,
            "not-supported",
            f"{rtype}.category: this category is not supported",
            expression=[f"{rtype}.category"],
        )
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


_TAG = re.compile(r"<[^>]+>")
XHTML_TYPES = ("text/html", "application/xhtml+xml")


def cerner_store_xhtml_as_rtf(rtype: str, body: Json) -> None:
    """Oracle Health Millennium Platform FHIR R4 API, "DocumentReference create": XHTML content is
    converted to RTF when stored, so a read-back is not byte-equal to what was sent (docs/vendors.md
    quirk 11). The sandbox keeps the text and wraps it the way an RTF writer would."""
    if rtype != "DocumentReference":
        return
    for entry in body.get("content") or []:
        attachment = entry.get("attachment") if isinstance(entry, dict) else None
        if not isinstance(attachment, dict):
            continue
        ctype = str(attachment.get("contentType", "")).split(";")[0].strip().lower()
        if ctype not in XHTML_TYPES or not isinstance(attachment.get("data"), str):
            continue
        try:
            markup = base64.b64decode(attachment["data"]).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        text = html.unescape(_TAG.sub(" ", markup))
        lines = " ".join(text.split())
        rtf = "{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Arial;}}\\f0\\fs20 " + lines + "\\par}"
        attachment["contentType"] = "text/rtf"
        attachment["data"] = base64.b64encode(rtf.encode()).decode()


Rule = Callable[[str, Json], None]
CREATE_RULES: dict[str, tuple[Rule, ...]] = {
    "epic": (epic_create,),
    "cerner": (cerner_write,),
}
UPDATE_RULES: dict[str, tuple[Rule, ...]] = {
    "cerner": (cerner_write,),
}


#: Changes a vendor makes to what it stores (after the rules have accepted it).
STORE_TRANSFORMS: dict[str, tuple[Rule, ...]] = {
    "cerner": (cerner_store_xhtml_as_rtf,),
}


def check(personality: str, rtype: str, body: Json, *, create: bool) -> None:
    for rule in (CREATE_RULES if create else UPDATE_RULES).get(personality, ()):
        rule(rtype, body)
    for transform in STORE_TRANSFORMS.get(personality, ()):
        transform(rtype, body)
