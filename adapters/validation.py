"""Validation of FHIR R4 resources before anything is sent: R4 structure (fhir.resources' R4B
models: for the resources written here R4 and R4B have the same elements), then the profile of the
resource's clinical family (adapters/us_core_profiles.py: which profile, and why an unknown
declared profile is not refused), then, where the tenant's adapter version checks them, the
clinical semantics."""

from __future__ import annotations

import logging
import traceback
from datetime import datetime
from typing import Any, Protocol

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.clinical_semantics import ClinicalContext, semantic_problems
from adapters.families import DEFAULT_PROFILE, RESOURCE_TYPE, families_of_type, family_of
from adapters.problems import Problem, ResourceInvalid, element_path, validation_problems
from adapters.us_core_profiles import PROFILE_CHECKS, PROFILE_FAMILY, TYPE_CHECKS, check_problems
from adapters.versions import AdapterVersion

__all__ = [
    "SUPPORTED_RESOURCE_TYPES",
    "Problem",
    "ResourceInvalid",
    "clinical_context",
    "profiles_of",
    "validate_resource",
]

log = logging.getLogger("writeback.validation")


#: Every resource type a clinical family is written as (adapters/families.py).
SUPPORTED_RESOURCE_TYPES = frozenset(RESOURCE_TYPE.values())


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
            problems = _profile_problems(resource_type, resource)
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


def profiles_of(resource_type: str, resource: dict[str, Any]) -> tuple[list[str], list[Problem]]:
    """The profiles ``resource`` is checked against: every profile its ``meta.profile`` names
    that the product knows for its type, else its family's default (none for a family without a
    US Core profile). Problems instead when it names a known profile of another resource type,
    or when its family cannot be told (an Observation or Condition of no category we write)."""
    meta = resource.get("meta")
    named = meta.get("profile") if isinstance(meta, dict) else None
    named = named if isinstance(named, list) else []
    claimed: list[str] = []
    problems: list[Problem] = []
    for index, url in enumerate(named):
        known = PROFILE_FAMILY.get(str(url).split("|")[0])
        if known is None:
            continue
        if RESOURCE_TYPE[known] != resource_type:
            problems.append(Problem(f"meta.profile[{index}]", "profile_of_another_type"))
        else:
            claimed.append(str(url).split("|")[0])
    if problems or claimed:
        return claimed, problems
    family = family_of(resource)
    if family is None:
        families = "|".join(families_of_type(resource_type))
        return [], [Problem("category", f"no_family_written ({families})")]
    default = DEFAULT_PROFILE[family]
    return ([default] if default else []), []


def _profile_problems(resource_type: str, resource: dict[str, Any]) -> list[Problem]:
    """The checks of the resource's type, then of each of its profiles (a problem once)."""
    profiles, problems = profiles_of(resource_type, resource)
    if problems:
        return problems
    checks = [*TYPE_CHECKS[resource_type]]
    checks += [check for profile in profiles for check in PROFILE_CHECKS[profile]]
    return check_problems(checks, resource)


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
