"""Telling schema drift apart from ordinary EHR validation errors."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.schema_drift import drift_fields, dropped_extensions


def outcome(code: str, *paths: str) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code}
    if paths:
        issue["expression"] = list(paths)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def test_required_and_code_invalid_with_a_path_are_drift() -> None:
    assert drift_fields(422, outcome("required", "Observation.performer")) == [
        "Observation.performer"
    ]
    assert drift_fields(422, outcome("code-invalid", "Observation.code")) == ["Observation.code"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, outcome("business-rule", "Observation.status")),  # a vendor rule
        (422, outcome("invalid", "Observation.value")),  # structure
        (422, outcome("required")),  # no field named: nothing to act on
        (400, outcome("required", "practice")),  # a missing query parameter
        (422, None),
        (422, {"resourceType": "Observation"}),
    ],
)
def test_other_errors_are_not_drift(status: int, body: dict[str, Any] | None) -> None:
    assert drift_fields(status, body) == []


def test_only_lost_extensions_count_as_dropped() -> None:
    assert dropped_extensions(["extension"]) == ["extension"]
    assert dropped_extensions(["extension[1]", "valueQuantity.extension"]) == [
        "extension[1]",
        "valueQuantity.extension",
    ]
    assert dropped_extensions(["extension", "valueQuantity.value"]) == []
    assert dropped_extensions(["extensionNote"]) == []
    assert dropped_extensions([]) == []
