"""examples/ holds one sample of every family written alone (examples/<family>.json) and the
lab-panel and care-plan sagas, each what workers/family_samples.py produces (times aside: the
files carry fixed ones), so the README's samples are the ones the tests and the demo write."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapters.families import Family
from workers.family_samples import SINGLE_WRITES, care_plan_saga, lab_panel
from workflows.saga_contract import SagaStep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PATIENT = "example-pt-1"
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$")


def without_times(value: Any) -> Any:
    """``value`` with every FHIR date or dateTime replaced by a placeholder."""
    if isinstance(value, dict):
        return {key: without_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_times(item) for item in value]
    return "<time>" if isinstance(value, str) and _TIME.match(value) else value


def example(name: str) -> Any:
    return without_times(json.loads((EXAMPLES / f"{name}.json").read_text()))


@pytest.mark.parametrize("family", list(SINGLE_WRITES), ids=str)
def test_each_family_example_is_its_sample(family: Family) -> None:
    assert example(str(family)) == without_times(SINGLE_WRITES[family](PATIENT))


@pytest.mark.parametrize(
    ("name", "kind", "steps"),
    [
        ("saga-lab-panel", "lab-panel", lab_panel(PATIENT)),
        ("saga-care-plan", "care-plan", care_plan_saga(PATIENT)),
    ],
)
def test_each_saga_example_is_its_sample(name: str, kind: str, steps: list[SagaStep]) -> None:
    expected = {"kind": kind, "steps": [step.model_dump(exclude_defaults=True) for step in steps]}
    assert example(name) == without_times(expected)
