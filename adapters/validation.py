"""Validation of FHIR R4 resources before anything is sent: R4 structure, then clinical rules."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.clinical_notes import check_clinical_note
from adapters.clinical_semantics import ClinicalContext, semantic_problems
from adapters.families import Family, family_of
from adapters.problems import Problem, ResourceInvalid, element_path, validation_problems
from adapters.versions import AdapterVersion
from adapters.vital_signs import check_vital_sign

__all__ = [
    "SUPPORTED_RESOURCE_TYPES",
    "Problem",
    "ResourceInvalid",
    "clinical_context",
    "validate_resource",
]

log = logging.getLogger("writeback.validation")


def _structure_only(resource: dict[str, Any]) -> list[Problem]:
    return []


def _vital_sign_unless_laboratory(resource: dict[str, Any]) -> list[Problem]:
    if family_of(resource) is Family.LABORATORY_RESULT:
        return []
    return check_vital_sign(resource)


#: Clinical rules per resource type, on top of the R4 structure.
_CLINICAL_RULES: dict[str, Callable[[dict[str, Any]], list[Problem]]] = {
    "Observation": _vital_sign_unless_laboratory,
    # the new families (#20): structure only until their US Core rules land
    "DiagnosticReport": _structure_only,
    "Goal": _structure_only,
    "CarePlan": _structure_only,
    "Condition": _structure_only,
    "AllergyIntolerance": _structure_only,
    "MedicationRequest": _structure_only,
    "MedicationStatement": _structure_only,
    "Immunization": _structure_only,
    "Procedure": _structure_only,
    "DocumentReference": check_clinical_note,
    # the other resources of the sagas (workflows/clinical_saga.py): R4 structure only, for now
    "ServiceRequest": _structure_only,
    "Task": _structure_only,
    "Communication": _structure_only,
    "Provenance": _structure_only,
}

SUPPORTED_RESOURCE_TYPES = frozenset(_CLINICAL_RULES)


def _structure_problems(resource_type: str, resource: dict[str, Any]) -> list[Problem]:
    """R4 structure problems, as element paths and error codes (never values)."""
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return validation_problems(exc, resource_type)
    except Exception as exc:  # fhir.resources raises KeyError('R4.<value>Type') and the like
        return [Problem(resource_type, f"not_r4_structure ({type(exc).__name__})")]
    return []


class _TenantRules(Protocol):
    """What of a tenant (adapters/tenants.py) the checks depend on."""

    @property
    def adapter_version(self) -> AdapterVersion: ...

    @property
    def require_encounter(self) -> bool: ...


def clinical_context(tenant: _TenantRules, now: datetime) -> ClinicalContext | None:
    """The context ``validate_resource`` checks a tenant's resources in: the clinical semantics,
    where the tenant's adapter version checks them. The worker's validate step
    (activities/command_steps.py) and the HTTP API's door (workers/api/submission.py) both ask
    here, so the door refuses exactly what the worker would."""
    if not tenant.adapter_version.checks_clinical_semantics:
        return None
    return ClinicalContext(now=now, require_encounter=tenant.require_encounter)


def validate_resource(resource: dict[str, Any], context: ClinicalContext | None = None) -> str:
    """Return the resource type when ``resource`` may be written; raise ResourceInvalid if not.
    With a ``context``, the clinical semantics (ranges, times, encounter) are checked as well."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise ResourceInvalid([Problem("resourceType", "missing")])
    if resource_type not in SUPPORTED_RESOURCE_TYPES:
        supported = ", ".join(sorted(SUPPORTED_RESOURCE_TYPES))
        raise ResourceInvalid(
            [Problem("resourceType", f"not a supported write type (supported: {supported})")]
        )
    problems = _null_problems(resource) or _structure_problems(resource_type, resource)
    try:
        if not problems:
            problems = _CLINICAL_RULES[resource_type](resource)
        if not problems and context is not None:
            problems = semantic_problems(resource, context)
    except Exception as exc:  # a rule tripped over input it did not expect: say so, not what
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.warning(
            "clinical rules failed on a %s: %s at %s:%s (a rule to harden)",
            resource_type,
            type(exc).__name__,
            frame.filename,
            frame.lineno,
        )
        problems = [Problem(resource_type, f"unprocessable ({type(exc).__name__})")]
    if problems:
        raise ResourceInvalid(problems)
    return resource_type


def _null_problems(resource: dict[str, Any]) -> list[Problem]:
    """FHIR JSON has no null elements; an array may hold null only to align a repeating
    primitive with its extensions (``"_given": [null, {...}]``)."""
    problems: list[Problem] = []
    stack: list[tuple[object, list[str | int], bool]] = [(resource, [], False)]
    while stack and len(problems) < 10:
        node, parts, may_hold_null = stack.pop()
        if node is None and not may_hold_null:
            problems.append(Problem(element_path(parts, "(resource)"), "null_not_allowed"))
        elif isinstance(node, dict):
            stack.extend((value, [*parts, key], False) for key, value in node.items())
        elif isinstance(node, list):
            aligned = bool(parts) and str(parts[-1]).startswith("_")
            stack.extend((item, [*parts, index], aligned) for index, item in enumerate(node))
    return sorted(problems, key=str)
