"""Clinical semantics: ranges, clinical time against the workflow's clock and the encounter,
encounter required by tenant policy. Each problem names the field, never the value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.clinical_semantics import (
    CLOCK_SKEW,
    ClinicalContext,
    EncounterPeriod,
    parse_fhir_time,
    semantic_problems,
)
from adapters.validation import ResourceInvalid, validate_resource
from workers import family_samples, samples

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AT_NOW = ClinicalContext(now=NOW)


def problems(resource: dict[str, Any], context: ClinicalContext = AT_NOW) -> list[str]:
    with pytest.raises(ResourceInvalid) as caught:
        validate_resource(resource, context)
    return [str(problem) for problem in caught.value.problems]


def test_a_plausible_vital_sign_taken_now_passes() -> None:
    assert validate_resource(samples.heart_rate("p1", 72, NOW), AT_NOW) == "Observation"
    assert validate_resource(samples.blood_pressure("p1", 120, 80, NOW), AT_NOW) == "Observation"


def test_future_effective_time_is_named() -> None:
    resource = samples.heart_rate("p1", 72, NOW + timedelta(hours=1))
    (problem,) = problems(resource)
    assert problem.startswith("effectiveDateTime: is in the future")
    assert "2026" not in problem


def test_clock_skew_is_allowed_and_bounded() -> None:
    assert semantic_problems(samples.heart_rate("p1", 72, NOW + CLOCK_SKEW), AT_NOW) == []
    late = NOW + CLOCK_SKEW + timedelta(seconds=1)
    assert semantic_problems(samples.heart_rate("p1", 72, late), AT_NOW) != []


def test_the_verdict_depends_only_on_the_time_passed_in() -> None:
    resource = samples.heart_rate("p1", 72, NOW + timedelta(hours=1))
    later = ClinicalContext(now=NOW + timedelta(hours=2))
    assert semantic_problems(resource, later) == []
    assert semantic_problems(resource, AT_NOW) == semantic_problems(resource, AT_NOW) != []


def test_future_period_end_is_named() -> None:
    resource = samples.heart_rate("p1", 72)
    del resource["effectiveDateTime"]
    resource["effectivePeriod"] = {"start": NOW.isoformat(), "end": "2030-01-01T00:00:00Z"}
    (problem,) = problems(resource)
    assert problem.startswith("effectivePeriod.end: is in the future")


@pytest.mark.parametrize(
    ("bpm", "field"), [(720, "valueQuantity.value"), (5, "valueQuantity.value")]
)
def test_implausible_heart_rate_is_named(bpm: int, field: str) -> None:
    (problem,) = problems(samples.heart_rate("p1", bpm, NOW))
    assert problem.startswith(f"{field}: outside the plausible range 20-300 /min for LOINC 8867-4")


def test_implausible_component_is_named_by_its_index() -> None:
    (problem,) = problems(samples.blood_pressure("p1", 420, 80, NOW))
    assert problem.startswith("component[0].valueQuantity.value: outside the plausible range")


def test_diastolic_above_systolic_is_rejected() -> None:
    assert problems(samples.blood_pressure("p1", 80, 120, NOW)) == [
        "component: diastolic must be lower than systolic"
    ]


def test_temperature_range_follows_the_unit() -> None:
    fahrenheit = samples.body_temperature("p1", 98.6, NOW)
    fahrenheit["valueQuantity"].update(code="[degF]", unit="[degF]")
    assert validate_resource(fahrenheit, AT_NOW) == "Observation"
    (problem,) = problems(samples.body_temperature("p1", 98.6, NOW))  # 98.6 Cel
    assert problem.startswith("valueQuantity.value: outside the plausible range 25-45 Cel")


def test_wrong_unit_is_named_before_ranges() -> None:
    resource = samples.heart_rate("p1", 72, NOW)
    resource["valueQuantity"]["code"] = "kg"
    (problem,) = problems(resource)
    assert problem.startswith("valueQuantity.code: unit not allowed for LOINC 8867-4")


def test_encounter_required_by_tenant_policy() -> None:
    strict = ClinicalContext(now=NOW, require_encounter=True)
    resource = samples.heart_rate("p1", 72, NOW)
    assert problems(resource, strict) == ["encounter: this tenant requires an encounter reference"]
    resource["encounter"] = {"reference": "Encounter/e1"}
    assert validate_resource(resource, strict) == "Observation"


def test_time_outside_the_encounter_is_named() -> None:
    visit = EncounterPeriod(start=NOW - timedelta(hours=2), end=NOW - timedelta(hours=1))
    context = ClinicalContext(now=NOW, encounter=visit)
    assert problems(samples.heart_rate("p1", 72, NOW), context) == [
        "effectiveDateTime: is after the encounter ended"
    ]
    early = samples.heart_rate("p1", 72, NOW - timedelta(hours=3))
    assert problems(early, context) == ["effectiveDateTime: is before the encounter started"]
    inside = samples.heart_rate("p1", 72, NOW - timedelta(minutes=90))
    assert validate_resource(inside, context) == "Observation"


def test_open_encounter_has_no_end() -> None:
    context = ClinicalContext(now=NOW, encounter=EncounterPeriod(start=NOW - timedelta(hours=1)))
    assert validate_resource(samples.heart_rate("p1", 72, NOW), context) == "Observation"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_fhir_times_parse(text: Any, expected: datetime | None) -> None:
    assert parse_fhir_time(text) == expected


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (family_samples.immunization, "occurrenceDateTime: is in the future"),
        (family_samples.procedure, "performedDateTime: is in the future"),
        (family_samples.medication_request, "authoredOn: is in the future"),
        (family_samples.lab_result, "effectiveDateTime: is in the future"),
        (family_samples.problem, "recordedDate: is in the future"),
    ],
)
def test_every_family_clinical_time_may_not_be_in_the_future(
    make: Callable[..., dict[str, Any]], expected: str
) -> None:
    assert validate_resource(make("p1", when=NOW), AT_NOW)
    found = problems(make("p1", when=NOW + timedelta(days=400)))
    assert any(problem.startswith(expected) for problem in found), found


def test_a_goal_may_start_in_the_future() -> None:
    """A goal's start is planned, not a clinical time."""
    goal = family_samples.goal("p1", when=NOW + timedelta(days=30))
    assert validate_resource(goal, AT_NOW) == "Goal"


def test_tenant_encounter_policy_holds_only_for_types_that_have_an_encounter() -> None:
    strict = ClinicalContext(now=NOW, require_encounter=True)
    assert validate_resource(family_samples.goal("p1", when=NOW), strict) == "Goal"
    assert problems(family_samples.procedure("p1", when=NOW), strict) == [
        "encounter: this tenant requires an encounter reference"
    ]
    statement = family_samples.medication_statement("p1", when=NOW)
    assert problems(statement, strict) == ["context: this tenant requires an encounter reference"]
