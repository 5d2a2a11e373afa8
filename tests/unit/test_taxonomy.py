"""The error taxonomy and the HTTP reading that feeds it."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
import pytest

from activities.errors import ErrorClass, full_jitter_delay, step_failure
from activities.fhir_http import (
    error_class_for_status,
    etag_version,
    outcome_summary,
    parse_location,
    retry_after,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
        (429, ErrorClass.TRANSIENT),
        (400, ErrorClass.VALIDATION),
        (422, ErrorClass.VALIDATION),
        (401, ErrorClass.AUTHORIZATION),
        (403, ErrorClass.AUTHORIZATION),
        (409, ErrorClass.CONFLICT),
        (412, ErrorClass.CONFLICT),
        (404, ErrorClass.NOT_FOUND),
        (410, ErrorClass.NOT_FOUND),
        (405, ErrorClass.EHR_REJECTED),
    ],
)
def test_status_codes_map_to_classes(status: int, expected: ErrorClass) -> None:
    assert error_class_for_status(status) is expected


@pytest.mark.parametrize("cls", list(ErrorClass))
def test_only_transport_transient_and_ambiguous_retry(cls: ErrorClass) -> None:
    failure = step_failure(cls, "x")
    retryable = cls in {ErrorClass.TRANSPORT, ErrorClass.TRANSIENT, ErrorClass.AMBIGUOUS}
    assert failure.non_retryable is not retryable
    assert failure.type == cls.value
    assert (failure.next_retry_delay is not None) is retryable


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(300.0, 2 ** (attempt - 1))
        delays = [full_jitter_delay(attempt, rng=rng).total_seconds() for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.5  # actually spread, not a constant


def test_retry_after_is_a_floor_for_the_delay() -> None:
    rng = random.Random(1)
    for attempt in (1, 2, 3):
        assert full_jitter_delay(attempt, timedelta(seconds=30), rng) >= timedelta(seconds=30)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("Observation/abc", ("Observation", "abc", None)),  # Epic: relative
        ("https://ehr/fhir/r4/Observation/abc", ("Observation", "abc", None)),  # Cerner
        ("https://ehr/fhir/Observation/abc/_history/3", ("Observation", "abc", "3")),  # R4
        ("", None),
    ],
)
def test_location_shapes_of_every_vendor(location: str, expected: object) -> None:
    assert parse_location(location) == expected


@pytest.mark.parametrize(
    ("etag", "version"), [('W/"3"', "3"), ('"4"', "4"), (None, None), ("junk", None)]
)
def test_etag_version(etag: str | None, version: str | None) -> None:
    assert etag_version(etag) == version


def test_retry_after_seconds() -> None:
    response = httpx.Response(429, headers={"Retry-After": "12"})
    assert retry_after(response) == timedelta(seconds=12)


def test_outcome_summary_keeps_codes_and_paths_but_drops_diagnostics() -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Patient Jane Doe DOB 1970-01-01 rejected",
                "expression": ["Observation.subject"],
                "details": {"coding": [{"system": "urn:oid:1.2.840.114350", "code": "59012"}]},
            }
        ],
    }
    summary = outcome_summary(httpx.Response(422, json=body))
    assert summary == "HTTP 422 [invalid Observation.subject 59012]"
    assert "Jane" not in summary


def test_outcome_summary_of_an_empty_body() -> None:
    assert outcome_summary(httpx.Response(404)) == "HTTP 404"


def test_epic_empty_403_says_the_client_is_not_registered() -> None:
    """Epic answers 403 with an empty body when the client is not registered for the API
    (docs/vendors.md quirk 5): the reason says so, and the write is an authorization failure."""
    response = httpx.Response(403)
    assert outcome_summary(response).startswith("HTTP 403 [empty body")
    assert "not registered for this API" in outcome_summary(response)
    assert error_class_for_status(response.status_code) is ErrorClass.AUTHORIZATION
