"""Content fingerprints: what makes two stored resources the same clinical fact, compared on
normalised values, so that what an EHR rewrites when it stores our resource does not hide our copy.

An Observation is its patient, code, effective time, value and components; a note
(DocumentReference) its patient, type, encounters and text. Values are normalised (FHIR R4
datatypes.html) before they are hashed:

* decimals and integers compare as decimal numbers: ``72`` == ``72.0`` == ``72.00`` (a stored
  precision is not a different value);
* a ``dateTime`` / ``instant`` with a time is converted to UTC:
  ``2026-01-01T10:00:00+02:00`` == ``2026-01-01T08:00:00Z`` (fractional seconds without trailing
  zeros, so ``.000`` is no fraction); a partial date (``2026``, ``2026-01``, ``2026-01-01``) keeps
  its precision: it is a day, never that day's midnight; a time without a zone (invalid in R4)
  is kept as written;
* a Coding or CodeableConcept is the set of its ``system|code`` (display, text, version and
  userSelected ignored); a concept without codings is its text;
* a Quantity (Age, Duration, Count, Distance, SimpleQuantity) is its value and comparator, with
  its unit as ``system|code`` when both are given, else its ``unit`` text;
* a Reference is ``Type/id`` (an absolute URL or ``_history`` suffix cut), else as written;
* text has its whitespace collapsed; element ``id`` and ``extension`` are ignored.

The fingerprint is the SHA-256 of the canonical JSON (sorted keys) of the normalised key: the same
on every run, process and machine. ``CreateRequest.is_ours`` recomputes our side with the running
code rather than comparing with a fingerprint recorded in workflow history, so a change of these
rules never hides a copy from a write that started under the old ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.clinical_notes import note_text

_DATE_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d{2}:\d{2})$"
)
_REFERENCE = re.compile(r"(?:^|/)(?P<ref>[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
#: Elements holding a dateTime or instant (by name: effectiveDateTime, Period.start/end, ...).
_TIME_SUFFIXES = ("DateTime", "Instant")
_TIME_NAMES = frozenset({"start", "end", "event"})
_QUANTITY_KEYS = frozenset({"value", "comparator", "unit", "system", "code", "id", "extension"})
_IGNORED = frozenset({"id", "extension"})


def normal_number(value: int | float | Decimal | str) -> str:
    """A decimal number's canonical text: ``72``, ``72.0`` and ``"72.00"`` are all ``"72"``."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        return str(value).strip()
    if not number.is_finite():
        return str(number)
    if number.is_zero():
        return "0"
    return format(number.normalize(), "f")


def normal_instant(value: str) -> str:
    """A dateTime or instant with a time, in UTC (``...Z``); anything else as written."""
    text = value.strip()
    match = _DATE_TIME.match(text)
    if match is None:
        return text
    zone = match["zone"]
    offset = timedelta(0)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        local = datetime.fromisoformat(f"{match['date']}T{match['h']}:{match['m']}:{match['s']}")
    except ValueError:  # a leap second, or no such date: nothing to convert
        return text
    utc = local.replace(tzinfo=timezone(offset)).astimezone(UTC)
    fraction = (match["fraction"] or "").rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _text(value: Any) -> str:
    return " ".join(str(value).split())


def _codes(concept: Any) -> list[str]:
    """A CodeableConcept's (or a Coding's) codes as sorted ``system|code``."""
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding") if "coding" in concept else [concept]
    return sorted(
        {
            f"{_text(coding.get('system') or '')}|{_text(coding.get('code') or '')}"
            for coding in codings or []
            if isinstance(coding, dict) and coding.get("code") is not None
        }
    )


def _concept(concept: dict[str, Any]) -> dict[str, Any]:
    if codes := _codes(concept):
        return {"codes": codes}
    return {"text": _text(concept.get("text") or "")}


def _reference(reference: Any) -> str:
    text = _text(reference or "")
    match = _REFERENCE.search(text.split("?", 1)[0])
    return match["ref"] if match else text


def _is_quantity(element: dict[str, Any]) -> bool:
    value = element.get("value")
    return (
        isinstance(value, int | float | Decimal)
        and not isinstance(value, bool)
        and set(element) <= _QUANTITY_KEYS
    )


def _quantity(quantity: dict[str, Any]) -> dict[str, Any]:
    system, code = quantity.get("system"), quantity.get("code")
    unit = _text(quantity.get("unit") or "")
    if system and code:
        unit = f"{_text(system)}|{_text(code)}"
    return {
        "value": normal_number(quantity["value"]),
        "comparator": quantity.get("comparator"),
        "unit": unit,
    }


def normalised(value: Any, name: str = "") -> Any:
    """``value`` (the element called ``name``) with the rules of this module applied."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return normal_number(value)
    if isinstance(value, str):
        if name.endswith(_TIME_SUFFIXES) or name in _TIME_NAMES:
            return normal_instant(value)
        return _text(value)
    if isinstance(value, list):
        return [normalised(item, name) for item in value]
    if not isinstance(value, dict):
        return _text(value)
    if "coding" in value or name.endswith("CodeableConcept"):
        return _concept(value)
    if name.endswith("Coding"):
        return {"codes": _codes(value)}
    if "reference" in value:
        return {"reference": _reference(value["reference"])}
    if _is_quantity(value):
        return _quantity(value)
    return {k: normalised(v, k) for k, v in value.items() if k not in _IGNORED}


def _prefixed(resource: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: normalised(v, k) for k, v in resource.items() if k.startswith(prefix)}


def _note_key(resource: dict[str, Any]) -> list[Any]:
    """A note is the same note when patient, type, encounter and text are (its date is the
    EHR's filing time on some APIs, and its encoding changes on store)."""
    context = resource.get("context")
    encounters = context.get("encounter") if isinstance(context, dict) else None
    return [
        resource.get("resourceType"),
        _reference((resource.get("subject") or {}).get("reference")),
        _codes(resource.get("type")),
        sorted(_reference(e.get("reference")) for e in encounters or [] if isinstance(e, dict)),
        note_text(resource),
    ]


def _observation_key(resource: dict[str, Any]) -> list[Any]:
    components = sorted(
        _canonical([_codes(c.get("code")), _prefixed(c, "value")])
        for c in resource.get("component", [])
        if isinstance(c, dict)
    )
    return [
        resource.get("resourceType"),
        _reference((resource.get("subject") or {}).get("reference")),
        _codes(resource.get("code")),
        _prefixed(resource, "effective"),
        _prefixed(resource, "value"),
        components,
    ]


def _canonical(key: Any) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(resource: dict[str, Any]) -> str:
    """A hash of what makes a resource the same clinical fact: for an Observation patient, code,
    time, value and components; for a note patient, type, encounter and text. Two stored
    resources with the same fingerprint are the same reading written twice."""
    if resource.get("resourceType") == "DocumentReference":
        key = _note_key(resource)
    else:
        key = _observation_key(resource)
    return hashlib.sha256(_canonical(key).encode()).hexdigest()
