"""Laboratory results: US Core Laboratory Result Observation and US Core DiagnosticReport for
Laboratory Results Reporting (hl7.org/fhir/us/core/STU6.1), as constraints.

Beyond the profiles' mandatory elements (a ``laboratory`` category, a patient, a LOINC test code,
a value or the reason it is absent): a numeric result is in UCUM, its unit one a common test is
reported in (``LAB_UNITS``, per LOINC code: a unit keyed for another test is how mmol/L glucose
becomes mg/dL), each reference range in UCUM and in the result's unit, an interpretation coded in
HL7's ObservationInterpretation is one of its codes. A test not in ``LAB_UNITS`` is held to
well-formed UCUM only.
"""

from __future__ import annotations

from typing import Any

from adapters.code_systems import (
    DIAGNOSTIC_SERVICE,
    INTERPRETATION,
    LOINC,
    OBSERVATION_CATEGORY,
    UCUM,
)
from adapters.fhirpath_constraints import (
    MAX_ITEMS,
    MISSING,
    Constraint,
    code_in,
    coded_in_systems,
    has_coding,
    patient,
    references,
    required,
)
from adapters.problems import Problem
from adapters.ucum import well_formed_ucum

#: LOINC code -> the UCUM units the test is commonly reported in (LOINC's example units).
LAB_UNITS: dict[str, tuple[str, ...]] = {
    "2345-7": ("mg/dL", "mmol/L"),  # glucose, serum/plasma
    "2339-0": ("mg/dL", "mmol/L"),  # glucose, blood
    "2951-2": ("mmol/L", "meq/L"),  # sodium
    "2823-3": ("mmol/L", "meq/L"),  # potassium
    "2075-0": ("mmol/L", "meq/L"),  # chloride
    "2028-9": ("mmol/L", "meq/L"),  # carbon dioxide
    "3094-0": ("mg/dL", "mmol/L"),  # urea nitrogen
    "2160-0": ("mg/dL", "umol/L"),  # creatinine
    "17861-6": ("mg/dL", "mmol/L"),  # calcium
    "2093-3": ("mg/dL", "mmol/L"),  # cholesterol
    "4548-4": ("%",),  # hemoglobin A1c
    "718-7": ("g/dL", "g/L", "mmol/L"),  # hemoglobin
    "4544-3": ("%",),  # hematocrit
    "6690-2": ("10*3/uL", "10*9/L"),  # leukocytes
    "789-8": ("10*6/uL", "10*12/L"),  # erythrocytes
    "777-3": ("10*3/uL", "10*9/L"),  # platelets
    "1742-6": ("U/L",),  # ALT
    "1920-8": ("U/L",),  # AST
}

#: HL7 v3 ObservationInterpretation codes (terminology.hl7.org, the R4 binding's code system).
INTERPRETATION_CODES = (
    "<",
    ">",
    "A",
    "AA",
    "AC",
    "B",
    "CAR",
    "D",
    "DET",
    "E",
    "EX",
    "EXP",
    "H",
    "HH",
    "HM",
    "HU",
    "HX",
    "I",
    "IE",
    "IND",
    "L",
    "LL",
    "LU",
    "LX",
    "MS",
    "N",
    "NCL",
    "ND",
    "NEG",
    "NR",
    "NS",
    "OBX",
    "POS",
    "QCF",
    "R",
    "RR",
    "S",
    "SDD",
    "SYN-R",
    "SYN-S",
    "TOX",
    "U",
    "UNE",
    "VS",
    "W",
    "WR",
)

OBSERVATION_STATUS = [
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
]
REPORT_STATUS = [
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
]


def _units_for(loinc: str, units: tuple[str, ...]) -> Constraint:
    literal = " | ".join(f"'{unit}'" for unit in units)
    return Constraint(
        "valueQuantity.code",
        f"code.coding.where(system = '{LOINC}' and code = '{loinc}').empty()"
        f" or valueQuantity.code.empty() or valueQuantity.code in ({literal})",
        f"unit_not_for_loinc ({loinc}: {'|'.join(units)})",
    )


def _range_bound(bound: str) -> list[Constraint]:
    return [
        Constraint(
            f"{bound}.system",
            f"{bound}.empty() or {bound}.system = '{UCUM}'",
            f"not_ucum ({UCUM})",
            each="referenceRange",
        ),
        Constraint(
            f"{bound}.code",
            f"{bound}.empty() or %resource.valueQuantity.empty()"
            f" or {bound}.code = %resource.valueQuantity.code",
            "unit_differs_from_value",
            each="referenceRange",
        ),
    ]


#: The Observation's own required bindings (R4), whatever its family.
OBSERVATION_BASE = [code_in("status", OBSERVATION_STATUS)]

LAB_RESULT = [
    has_coding("category", OBSERVATION_CATEGORY, "laboratory"),
    *patient("subject"),
    coded_in_systems("code", LOINC),
    Constraint(
        "value[x]",
        "value.exists() or dataAbsentReason.exists() or component.exists() or hasMember.exists()",
        MISSING,
    ),
    Constraint(
        "dataAbsentReason",
        "dataAbsentReason.empty() or value.empty()",
        "invariant_failed (obs-6)",
    ),
    Constraint(
        "valueQuantity.code", "valueQuantity.empty() or valueQuantity.code.exists()", MISSING
    ),
    Constraint(
        "valueQuantity.system",
        f"valueQuantity.empty() or valueQuantity.system = '{UCUM}'",
        f"not_ucum ({UCUM})",
    ),
    *[_units_for(loinc, units) for loinc, units in LAB_UNITS.items()],
    Constraint(
        "",
        "low.exists() or high.exists() or text.exists()",
        "invariant_failed (obs-3)",
        each="referenceRange",
    ),
    *_range_bound("low"),
    *_range_bound("high"),
    Constraint(
        "coding",
        f"coding.where(system = '{INTERPRETATION}').code.all($this in "
        + "("
        + " | ".join(f"'{code}'" for code in INTERPRETATION_CODES)
        + "))",
        "code_not_in_code_system",
        each="interpretation",
    ),
]

LAB_REPORT = [
    code_in("status", REPORT_STATUS),
    has_coding("category", DIAGNOSTIC_SERVICE, "LAB"),
    *patient("subject"),
    coded_in_systems("code", LOINC),
    *required("effective"),
    references("result", "Observation"),
]


def _items(resource: dict[str, Any], name: str) -> list[Any]:
    items = resource.get(name)
    return items[:MAX_ITEMS] if isinstance(items, list) else []


def _unit_codes(resource: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, unit code) of every UCUM quantity of a result: its value, its ranges, its
    components' values."""
    found: list[tuple[str, Any]] = []
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict):
        found.append(("valueQuantity", quantity))
    for index, each in enumerate(_items(resource, "referenceRange")):
        for bound in ("low", "high"):
            if isinstance(each, dict) and isinstance(each.get(bound), dict):
                found.append((f"referenceRange[{index}].{bound}", each[bound]))
    for index, component in enumerate(_items(resource, "component")):
        if isinstance(component, dict) and isinstance(component.get("valueQuantity"), dict):
            found.append((f"component[{index}].valueQuantity", component["valueQuantity"]))
    return [(path, q.get("code")) for path, q in found if q.get("system") == UCUM]


def ucum_problems(resource: dict[str, Any]) -> list[Problem]:
    """Every UCUM unit code of the result is well-formed UCUM."""
    return [
        Problem(f"{path}.code", "not_well_formed_ucum")
        for path, code in _unit_codes(resource)
        if code is not None and not well_formed_ucum(code)
    ]
