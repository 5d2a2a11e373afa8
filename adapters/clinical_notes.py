"""US Core clinical notes (DocumentReference, category ``clinical-note``, LOINC note type) and how a
note's content is compared once an EHR has stored it.

EHRs re-encode notes: Oracle Health stores XHTML as RTF (docs/vendors.md quirk 11), Epic keeps the
first attachment only, the proprietary APIs keep text and drop our content type. Read-back therefore
compares the note's *text* — decoded, markup removed, whitespace collapsed — not its bytes.
"""

from __future__ import annotations

import base64
import binascii
import copy
import html
import re
from typing import Any

from adapters.code_systems import LOINC
from adapters.problems import Problem

NOTE_CATEGORY_SYSTEM = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
CLINICAL_NOTE = "clinical-note"
#: Content types a note may be written in (US Core clinical notes; what Epic and Cerner accept).
NOTE_CONTENT_TYPES = frozenset({"text/plain", "text/html", "application/xhtml+xml"})

_TAG = re.compile(r"<[^>]+>")
_RTF_CONTROL = re.compile(r"\\[a-z]+-?\d* ?|[{}]")
_RTF_FONT_TABLE = re.compile(r"\{\\fonttbl[^}]*\}+")


def media_type(content_type: Any) -> str:
    return str(content_type or "").split(";")[0].strip().lower()


def first_attachment(resource: dict[str, Any]) -> dict[str, Any]:
    content = resource.get("content")
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return {}
    attachment = content[0].get("attachment")
    return attachment if isinstance(attachment, dict) else {}


def note_text(resource: dict[str, Any]) -> str | None:
    """The note's plain text: the first attachment decoded, markup (XHTML or RTF) removed and
    whitespace collapsed; None when there is no decodable text."""
    attachment = first_attachment(resource)
    try:
        raw = base64.b64decode(str(attachment.get("data", "")), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    kind = media_type(attachment.get("contentType"))
    if kind in {"text/rtf", "application/rtf", "text/richtext"}:
        raw = _RTF_CONTROL.sub(" ", _RTF_FONT_TABLE.sub(" ", raw)).replace("\\par", " ")
    elif kind in {"text/html", "application/xhtml+xml"}:
        raw = html.unescape(_TAG.sub(" ", raw))
    return " ".join(raw.split()) or None


def comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with a note's content replaced by its normalized text, so that a comparison
    sees what the clinician wrote rather than how the EHR encoded it. Other resources unchanged."""
    if resource.get("resourceType") != "DocumentReference" or "content" not in resource:
        return resource
    normalized = copy.deepcopy(resource)
    normalized["content"] = [{"text": note_text(resource)}]
    return normalized


def codes_in(concept: Any, system: str) -> list[str]:
    """The codes of ``system`` in a CodeableConcept."""
    if not isinstance(concept, dict):
        return []
    return [
        str(coding.get("code"))
        for coding in concept.get("coding", [])
        if isinstance(coding, dict) and coding.get("system") == system
    ]


def check_clinical_note(resource: dict[str, Any]) -> list[Problem]:
    """Problems that make this DocumentReference unfit as a US Core clinical note."""
    problems: list[Problem] = []
    if resource.get("status") != "current":
        problems.append(Problem("status", "a new note must be 'current'"))
    categories = [
        code
        for concept in resource.get("category", [])
        for code in codes_in(concept, NOTE_CATEGORY_SYSTEM)
    ]
    if CLINICAL_NOTE not in categories:
        problems.append(Problem("category", f"needs the US Core '{CLINICAL_NOTE}' category"))
    if not codes_in(resource.get("type"), LOINC):
        problems.append(Problem("type", "needs a LOINC note type (e.g. 11506-3 progress note)"))
    subject = (resource.get("subject") or {}).get("reference", "")
    if not str(subject).startswith("Patient/"):
        problems.append(Problem("subject", "must reference a Patient"))
    attachment = first_attachment(resource)
    if media_type(attachment.get("contentType")) not in NOTE_CONTENT_TYPES:
        allowed = ", ".join(sorted(NOTE_CONTENT_TYPES))
        problems.append(Problem("content[0].attachment.contentType", f"must be one of {allowed}"))
    elif note_text(resource) is None:
        problems.append(Problem("content[0].attachment.data", "must be base64 text"))
    return problems
