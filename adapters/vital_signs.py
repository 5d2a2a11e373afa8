"""US Core vital signs rules for Observation (profiles at hl7.org/fhir/us/core)."""

from __future__ import annotations

from typing import Any

from adapters.code_systems import LOINC, OBSERVATION_CATEGORY, UCUM
from adapters.problems import Problem

#: LOINC code -> UCUM units US Core accepts for it. 85354-9 is the blood pressure panel, whose
#: value lives in components 8480-6 (systolic) and 8462-4 (diastolic).
VITAL_SIGN_UNITS: dict[str, frozenset[str]] = {
    "8867-4": frozenset({"/min"}),  # heart rate
    "9279-1": frozenset({"/min"}),  # respiratory rate
    "8310-5": frozenset({"Cel", "[degF]"}),  # body temperature
    "29463-7": frozenset({"kg", "g", "[lb_av]"}),  # body weight
    "8302-2": frozenset({"cm", "[in_i]"}),  # body height
    "39156-5": frozenset({"kg/m2"}),  # BMI
    "59408-5": frozenset({"%"}),  # oxygen saturation (pulse oximetry)
    "2708-6": frozenset({"%"}),  # oxygen saturation
    "8480-6": frozenset({"mm[Hg]"}),  # systolic
    "8462-4": frozenset({"mm[Hg]"}),  # diastolic
}
BLOOD_PRESSURE_PANEL = "85354-9"
BLOOD_PRESSURE_COMPONENTS = frozenset({"8480-6", "8462-4"})
WRITABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})


def _loinc_codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        str(coding.get("code"))
        for coding in concept.get("coding", [])
        if isinstance(coding, dict) and coding.get("system") == LOINC
    ]


def _quantity_problems(path: str, code: str, quantity: Any) -> list[Problem]:
    if not isinstance(quantity, dict) or "value" not in quantity:
        return [Problem(path, "a vital sign needs a valueQuantity with a value")]
    if quantity.get("system") != UCUM:
        return [Problem(f"{path}.system", f"must be UCUM ({UCUM})")]
    allowed = VITAL_SIGN_UNITS.get(code)
    if allowed is not None and quantity.get("code") not in allowed:
        allowed_units = ", ".join(sorted(allowed))
        return [Problem(f"{path}.code", f"unit not allowed for LOINC {code}: use {allowed_units}")]
    return []


def check_vital_sign(resource: dict[str, Any]) -> list[Problem]:
    """Problems that make this Observation unfit as a US Core vital sign (empty when fit)."""
    problems: list[Problem] = []
    if resource.get("status") not in WRITABLE_STATUSES:
        problems.append(Problem("status", f"must be one of {sorted(WRITABLE_STATUSES)}"))
    categories = [
        coding
        for concept in resource.get("category", [])
        for coding in concept.get("coding", [])
        if coding.get("system") == OBSERVATION_CATEGORY
    ]
    if not any(coding.get("code") == "vital-signs" for coding in categories):
        problems.append(Problem("category", "needs the 'vital-signs' observation category"))
    codes = _loinc_codes(resource.get("code"))
    known = [code for code in codes if code in VITAL_SIGN_UNITS or code == BLOOD_PRESSURE_PANEL]
    if not known:
        problems.append(Problem("code", "needs a LOINC vital-sign code"))
    subject = resource.get("subject", {}).get("reference", "")
    if not str(subject).startswith("Patient/"):
        problems.append(Problem("subject", "must reference a Patient"))
    if not any(key.startswith("effective") for key in resource):
        problems.append(Problem("effective[x]", "a vital sign needs the time it was taken"))
    if problems or "dataAbsentReason" in resource:
        return problems
    code = known[0]
    if code == BLOOD_PRESSURE_PANEL:
        components = {
            comp_code: (index, component)
            for index, component in enumerate(resource.get("component", []))
            for comp_code in _loinc_codes(component.get("code"))
        }
        for needed in sorted(BLOOD_PRESSURE_COMPONENTS):
            if needed not in components:
                problems.append(Problem("component", f"blood pressure needs component {needed}"))
                continue
            index, component = components[needed]
            problems += _quantity_problems(
                f"component[{index}].valueQuantity", needed, component.get("valueQuantity")
            )
        return problems
    return _quantity_problems("valueQuantity", code, resource.get("valueQuantity"))
