"""Clinical semantics beyond the schema: a write can be valid FHIR and still clinically wrong.

* plausible ranges for the US Core vital signs (per LOINC code and UCUM unit);
* the clinical time (``effective[x]``, ``onset``, ``date``…) is not in the future, allowing a small
  clock skew, measured against the time the *workflow* passes in (validation runs as a local
  activity: the same input gives the same answer on every attempt);
* the clinical time falls inside the encounter's period, where that period is known;
* an encounter reference is present where the tenant requires one.

Problems name the field and the rule, never the value (see adapters.problems).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.code_systems import LOINC
from adapters.problems import Problem
from adapters.vital_signs import BLOOD_PRESSURE_PANEL

#: How far a clinical time may lie after "now" before it counts as the future (device clocks).
CLOCK_SKEW = timedelta(minutes=5)

#: (LOINC code, UCUM unit) -> inclusive plausible range. Wide on purpose: this catches unit and
#: keying mistakes (a weight in grams sent as kg, 720 beats per minute), not clinical alarms.
PLAUSIBLE_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("8867-4", "/min"): (20, 300),  # heart rate
    ("9279-1", "/min"): (4, 80),  # respiratory rate
    ("8310-5", "Cel"): (25, 45),  # body temperature
    ("8310-5", "[degF]"): (77, 113),
    ("29463-7", "kg"): (0.2, 650),  # body weight
    ("29463-7", "g"): (200, 650_000),
    ("29463-7", "[lb_av]"): (0.5, 1_433),
    ("8302-2", "cm"): (20, 280),  # body height
    ("8302-2", "[in_i]"): (8, 110),
    ("39156-5", "kg/m2"): (5, 150),  # BMI
    ("59408-5", "%"): (40, 100),  # oxygen saturation
    ("2708-6", "%"): (40, 100),
    ("8480-6", "mm[Hg]"): (40, 300),  # systolic
    ("8462-4", "mm[Hg]"): (20, 200),  # diastolic
}

#: Where each resource type keeps its clinical times: when it happened, was recorded, or was
#: asked for; never a planned time (a Goal's start, a CarePlan's period may lie ahead).
_TIME_FIELDS = {
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod", "abatementDateTime", "recordedDate"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "DocumentReference": ("date",),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "CarePlan": ("created",),
    "ServiceRequest": ("authoredOn",),
    "Task": ("authoredOn",),
    "Communication": ("sent", "received"),
    "Provenance": ("recorded",),
}
#: Where each resource type keeps its encounter; a type that has none (Goal, Provenance) is not
#: held to a tenant's ``require_encounter``.
_ENCOUNTER_PATHS = {
    "Observation": ("encounter",),
    "DiagnosticReport": ("encounter",),
    "Condition": ("encounter",),
    "AllergyIntolerance": ("encounter",),
    "DocumentReference": ("context", "encounter"),
    "MedicationRequest": ("encounter",),
    "MedicationStatement": ("context",),
    "Immunization": ("encounter",),
    "Procedure": ("encounter",),
    "CarePlan": ("encounter",),
    "ServiceRequest": ("encounter",),
    "Task": ("encounter",),
    "Communication": ("encounter",),
}


@dataclass(frozen=True)
class EncounterPeriod:
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class ClinicalContext:
    """What the rules need beyond the resource: the reference time and the tenant's policy."""

    now: datetime
    require_encounter: bool = False
    encounter: EncounterPeriod | None = None


def parse_fhir_time(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (a date or a time without zone is taken
    as UTC: the earliest reading, so a date-only 'today' is never the future)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) in (4, 7):  # YYYY, YYYY-MM
        text = text + ("-01-01" if len(text) == 4 else "-01")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clinical_times(resource: dict[str, Any]) -> list[tuple[str, datetime]]:
    """(field path, time) for every clinical time the resource carries."""
    found = []
    for field in _TIME_FIELDS.get(str(resource.get("resourceType")), ()):
        value = resource.get(field)
        if isinstance(value, dict):  # a Period
            for part in ("start", "end"):
                if (when := parse_fhir_time(value.get(part))) is not None:
                    found.append((f"{field}.{part}", when))
        elif (when := parse_fhir_time(value)) is not None:
            found.append((field, when))
    return found


def encounter_reference(resource: dict[str, Any]) -> str | None:
    node: Any = resource
    for step in _ENCOUNTER_PATHS.get(str(resource.get("resourceType")), ()):
        node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, list):
            node = node[0] if node else None
    reference = node.get("reference") if isinstance(node, dict) else None
    return reference if isinstance(reference, str) and reference else None


def encounter_path(resource_type: str) -> str:
    return ".".join(_ENCOUNTER_PATHS.get(resource_type, ("encounter",)))


def time_problems(resource: dict[str, Any], context: ClinicalContext) -> list[Problem]:
    problems = []
    latest = context.now + CLOCK_SKEW
    period = context.encounter
    for path, when in clinical_times(resource):
        if when > latest:
            problems.append(
                Problem(path, f"is in the future (more than {CLOCK_SKEW} after the request)")
            )
        elif period and period.start and when < period.start:
            problems.append(Problem(path, "is before the encounter started"))
        elif period and period.end and when > period.end:
            problems.append(Problem(path, "is after the encounter ended"))
    return problems


def _codings(concept: Any) -> list[Any]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return codings if isinstance(codings, list) else []


def _quantities(resource: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, LOINC code, valueQuantity) of the observation and each of its components."""
    out = []
    for path, node in [("", resource)] + [
        (f"component[{i}].", c) for i, c in enumerate(resource.get("component") or [])
    ]:
        if not isinstance(node, dict) or not isinstance(node.get("valueQuantity"), dict):
            continue
        for coding in _codings(node.get("code")):
            if isinstance(coding, dict) and coding.get("system") == LOINC:
                out.append((f"{path}valueQuantity", str(coding.get("code")), node["valueQuantity"]))
    return out


def range_problems(resource: dict[str, Any]) -> list[Problem]:
    problems = []
    values: dict[str, float] = {}
    for path, code, quantity in _quantities(resource):
        value, unit = quantity.get("value"), quantity.get("code")
        bounds = PLAUSIBLE_RANGES.get((code, str(unit)))
        if bounds is None or not isinstance(value, int | float):
            continue
        values[code] = value
        low, high = bounds
        if not low <= value <= high:
            problems.append(
                Problem(
                    f"{path}.value",
                    f"outside the plausible range {low:g}-{high:g} {unit} for LOINC {code}",
                )
            )
    panel = any(
        isinstance(c, dict) and c.get("system") == LOINC and c.get("code") == BLOOD_PRESSURE_PANEL
        for c in _codings(resource.get("code"))
    )
    if panel and {"8480-6", "8462-4"} <= set(values) and values["8462-4"] >= values["8480-6"]:
        problems.append(Problem("component", "diastolic must be lower than systolic"))
    return problems


def semantic_problems(resource: dict[str, Any], context: ClinicalContext) -> list[Problem]:
    """Problems that make the resource clinically unfit to write (empty when fit)."""
    problems = []
    resource_type = str(resource.get("resourceType"))
    needs_encounter = context.require_encounter and resource_type in _ENCOUNTER_PATHS
    if needs_encounter and encounter_reference(resource) is None:
        problems.append(
            Problem(encounter_path(resource_type), "this tenant requires an encounter reference")
        )
    problems += time_problems(resource, context)
    if resource_type == "Observation":
        problems += range_problems(resource)
    return problems
