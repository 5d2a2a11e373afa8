"""The valid sample of every clinical family (workers/family_samples.py, workers/samples.py) as
the validate step sees it: a saga's ``saga:<step>`` references resolved to the earlier step's
resource and a Provenance completed with its agent (workflows/clinical_saga.py)."""

from __future__ import annotations

from typing import Any

from adapters.families import Family, family_of
from workers import family_samples, samples
from workflows.saga_contract import SagaStep, resolve_step_references


def resolved(steps: list[SagaStep]) -> list[dict[str, Any]]:
    assigned = {step.name: f"{step.resource['resourceType']}/{step.name}" for step in steps}
    resources: list[dict[str, Any]] = [
        resolve_step_references(step.resource, assigned) for step in steps
    ]
    for resource in resources:
        if resource["resourceType"] == "Provenance":
            resource["agent"] = [{"who": {"reference": "Practitioner/pr-demo-1"}}]
    return resources


def every_sample(patient: str = "p1") -> list[dict[str, Any]]:
    """Each single write's sample, then every step of the lab panel, the care plan, the referral
    and the note with its provenance."""
    singles = [make(patient) for make in family_samples.SINGLE_WRITES.values()]
    sagas = [
        family_samples.lab_panel(patient),
        family_samples.care_plan_saga(patient),
        samples.referral(patient),
        samples.note_with_provenance(patient, "Synthetic note."),
    ]
    return singles + [resource for saga in sagas for resource in resolved(saga)]


def sample(family: Family) -> dict[str, Any]:
    """The first sample of ``family``."""
    return next(resource for resource in every_sample() if family_of(resource) is family)
