"""Content fingerprints on normalised values: what an EHR rewrites in a stored copy (number
spelling, time zone, display texts, unit text, whitespace) does not hide that it is our copy."""

from __future__ import annotations

import base64
import copy
from decimal import Decimal
from typing import Any

import pytest

from adapters.fhir_r4 import prepare_create
from adapters.fingerprint import fingerprint, normal_instant, normal_number
from adapters.tenants import Capabilities, Tenant, Vendor
from workers import samples

UCUM = "http://unitsofmeasure.org"


def reading() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-01T10:00:00+02:00",
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
    }


@pytest.mark.parametrize(
    ("a", "b"),
    [(72, 72.0), (72, Decimal("72.00")), (0.1, "0.10"), (100, 1e2), (0, -0.0), (98.96, "98.960")],
)
def test_numbers_are_equal_as_decimals(a: Any, b: Any) -> None:
    assert normal_number(a) == normal_number(b)


def test_numbers_keep_their_value() -> None:
    assert normal_number(72) == "72" and normal_number(0.000001) == "0.000001"
    assert normal_number(72) != normal_number(72.5)


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2026-01-01T10:00:00+02:00", "2026-01-01T08:00:00Z"),
        ("2026-01-01T08:00:00Z", "2026-01-01T08:00:00Z"),
        ("2026-01-01T08:00:00.000+00:00", "2026-01-01T08:00:00Z"),
        ("2026-01-01T01:30:00.120+02:00", "2025-12-31T23:30:00.12Z"),
        ("2025-12-31T20:00:00-05:00", "2026-01-01T01:00:00Z"),
    ],
)
def test_times_with_a_zone_convert_to_utc(raw: str, utc: str) -> None:
    assert normal_instant(raw) == utc


@pytest.mark.parametrize("partial", ["2026", "2026-01", "2026-01-01"])
def test_partial_dates_keep_their_precision(partial: str) -> None:
    """A date is not the midnight of that date (datatypes.html#dateTime): it stays as it is."""
    assert normal_instant(partial) == partial
    assert normal_instant(partial) != normal_instant("2026-01-01T00:00:00Z")


def test_a_copy_the_ehr_rewrote_has_our_fingerprint() -> None:
    stored = reading()
    stored |= {"id": "9", "meta": {"versionId": "3"}, "identifier": [{"value": "theirs"}]}
    stored["subject"] = {"reference": "https://ehr.test/fhir/Patient/p1", "display": "Pat"}
    stored["effectiveDateTime"] = "2026-01-01T08:00:00.000Z"
    stored["code"] = {
        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
        "text": "Pulse",
    }
    stored["valueQuantity"] = {
        "value": 72.0,
        "unit": "beats/minute",
        "system": UCUM,
        "code": "/min",
    }
    assert fingerprint(stored) == fingerprint(reading())


def test_a_different_reading_has_another_fingerprint() -> None:
    ours = fingerprint(reading())
    for path, value in [
        (("valueQuantity", "value"), 72.5),
        (("valueQuantity", "code"), "{beats}/min"),
        (("effectiveDateTime",), "2026-01-01T10:00:00Z"),  # same wall clock, another instant
        (("effectiveDateTime",), "2026-01-01"),
        (("subject", "reference"), "Patient/p2"),
    ]:
        other = copy.deepcopy(reading())
        target = other
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert fingerprint(other) != ours, path


def test_a_quantity_without_a_coded_unit_compares_its_unit_text() -> None:
    plain = reading() | {"valueQuantity": {"value": 72, "unit": "/min"}}
    assert fingerprint(plain | {"valueQuantity": {"value": 72.0, "unit": " /min "}}) == fingerprint(
        plain
    )
    assert fingerprint(plain | {"valueQuantity": {"value": 72, "unit": "bpm"}}) != fingerprint(
        plain
    )


def test_codings_compare_as_a_set_of_system_and_code() -> None:
    two = reading()
    two["code"]["coding"].append({"system": "urn:local", "code": "HR"})
    swapped = copy.deepcopy(two)
    swapped["code"]["coding"].reverse()
    swapped["code"]["coding"][0]["userSelected"] = True
    assert fingerprint(swapped) == fingerprint(two)
    assert fingerprint(two) != fingerprint(reading())


def test_components_compare_in_any_order_with_normalised_values() -> None:
    ours = samples.blood_pressure("p1", 128, 82)
    stored = copy.deepcopy(ours)
    stored["component"].reverse()
    stored["component"][0]["valueQuantity"]["value"] = 82.0
    stored["effectiveDateTime"] = normal_instant(ours["effectiveDateTime"])
    assert fingerprint(stored) == fingerprint(ours)
    stored["component"][1]["valueQuantity"]["value"] = 129
    assert fingerprint(stored) != fingerprint(ours)


def test_string_and_period_values_are_normalised() -> None:
    spoken = reading() | {"valueString": "  irregular\n rhythm "}
    del spoken["valueQuantity"]
    assert fingerprint(spoken | {"valueString": "irregular rhythm"}) == fingerprint(spoken)
    period = {"start": "2026-01-01T10:00:00+02:00", "end": "2026-01-01T11:00:00+02:00"}
    timed = {k: v for k, v in reading().items() if k != "effectiveDateTime"}
    utc = {"start": "2026-01-01T08:00:00Z", "end": "2026-01-01T09:00:00Z"}
    assert fingerprint(timed | {"effectivePeriod": period}) == fingerprint(
        timed | {"effectivePeriod": utc}
    )


def test_a_note_the_ehr_reencoded_has_our_fingerprint() -> None:
    ours = samples.clinical_note("p1", "Seen today.  Plan: recheck.", "enc-1")
    stored = copy.deepcopy(ours)
    text = "<div>Seen today.\n Plan: <b>recheck.</b></div>"
    data = base64.b64encode(text.encode()).decode()
    stored["content"] = [{"attachment": {"contentType": "text/html", "data": data}}]
    stored["type"]["coding"][0]["display"] = "Progress note (EHR)"
    stored["context"]["encounter"] = [{"reference": "https://ehr.test/fhir/Encounter/enc-1"}]
    assert fingerprint(stored) == fingerprint(ours)


def test_fingerprints_are_deterministic_and_ignore_key_order() -> None:
    forward = reading()
    backward = dict(reversed(list(forward.items())))
    assert fingerprint(forward) == fingerprint(backward)
    # pinned: a change to the normalisation is a deliberate one (CreateRequest.fingerprint)
    assert fingerprint(forward) == (
        "f2b69aed9250c52b77b4fd82452203ceabc5a08e89447cd3b39eeb0620a578dd"
    )


def test_a_request_recorded_with_an_older_fingerprint_still_recognises_its_copy() -> None:
    """``CreateRequest.fingerprint`` travels in workflow history: a write started before this
    normalisation and retried after it must still find its copy (it is recomputed, not compared)."""
    r4 = Tenant(
        id="t1",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        capabilities=Capabilities(drops_identifiers=True),
    )
    request = prepare_create(r4, reading(), "t1:k")
    recorded = request.model_copy(update={"fingerprint": "0" * 64})  # an older algorithm's hash
    stored = reading() | {"id": "1", "valueQuantity": {**reading()["valueQuantity"], "value": 72.0}}
    assert recorded.is_ours(stored)
    assert not recorded.is_ours(stored | {"valueQuantity": {"value": 73, "unit": "/min"}})
