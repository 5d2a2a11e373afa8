"""Validation of FHIR R4 resources before anything is sent: R4 structure, then clinical rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.clinical_notes import check_clinical_note
from adapters.clinical_semantics import ClinicalContext, semantic_problems
from adapters.problems import Problem, ResourceInvalid
from adapters.vital_signs import check_vital_sign

__all__ = ["SUPPORTED_RESOURCE_TYPES", "Problem", "ResourceInvalid", "validate_resource"]


def _structure_only(resource: dict[str, Any]) -> list[Problem]:
    return []


#: Clinical rules per resource type, on top of the R4 structure.
_CLINICAL_RULES: dict[str, Callable[[dict[str, Any]], list[Problem]]] = {
    "Observation": check_vital_sign,
    "DocumentReference": check_clinical_note,
    # the other resources of the sagas (workflows/clinical_saga.py): R4 structure only, for now
    "ServiceRequest": _structure_only,
    "Task": _structure_only,
    "Communication": _structure_only,
    "Provenance": _structure_only,
}

SUPPORTED_RESOURCE_TYPES = frozenset(_CLINICAL_RULES)


def _structure_problems(resource_type: str, resource: dict[str, Any]) -> list[Problem]:
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            Problem(".".join(str(part) for part in err["loc"]) or resource_type, err["msg"])
            for err in exc.errors(include_input=False, include_url=False)
        ]
    return []


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
    problems = _structure_problems(resource_type, resource)
    if not problems:
        problems = _CLINICAL_RULES[resource_type](resource)
    if not problems and context is not None:
        problems = semantic_problems(resource, context)
    if problems:
        raise ResourceInvalid(problems)
    return resource_type
