"""Narrow-delta merge, content fingerprints and the circuit breaker."""

from __future__ import annotations

from activities.circuit_breaker import CircuitBreaker
from activities.pacer import Pacer
from adapters.fhir_r4 import fingerprint
from adapters.merge import json_patch, three_way_merge
from workers import samples

BASE = {
    "resourceType": "Observation",
    "id": "1",
    "meta": {"versionId": "1"},
    "status": "final",
    "valueQuantity": {"value": 70},
}


def test_disjoint_changes_merge_onto_the_latest_version() -> None:
    ours = {**BASE, "valueQuantity": {"value": 75}}
    theirs = {**BASE, "meta": {"versionId": "2"}, "note": [{"text": "recheck"}]}
    result = three_way_merge(BASE, ours, theirs)
    assert result.merged == {**theirs, "valueQuantity": {"value": 75}}
    assert result.ours == {"valueQuantity"} and result.theirs == {"note"}


def test_overlapping_changes_do_not_merge() -> None:
    ours = {**BASE, "valueQuantity": {"value": 75}}
    theirs = {**BASE, "valueQuantity": {"value": 99}}
    result = three_way_merge(BASE, ours, theirs)
    assert result.merged is None
    assert result.overlapping == {"valueQuantity"}


def test_the_same_change_on_both_sides_is_not_a_conflict() -> None:
    both = {**BASE, "status": "amended"}
    assert three_way_merge(BASE, both, both).merged == both


def test_an_element_we_removed_stays_removed() -> None:
    base = {**BASE, "note": [{"text": "x"}]}
    ours = {k: v for k, v in base.items() if k != "note"}
    theirs = {**base, "status": "amended"}
    assert three_way_merge(base, ours, theirs).merged == {**BASE, "status": "amended"}


def test_server_managed_elements_never_count_as_changes() -> None:
    theirs = {**BASE, "meta": {"versionId": "7"}, "text": {"div": "x"}}
    assert three_way_merge(BASE, BASE, theirs).theirs == frozenset()


def test_fingerprint_ignores_identifiers_and_server_fields() -> None:
    reading = samples.heart_rate("p1", 72)
    stored = {**reading, "id": "9", "meta": {"versionId": "1"}, "identifier": []}
    assert fingerprint(stored) == fingerprint(reading)


def test_fingerprint_differs_by_patient_value_and_time() -> None:
    reading = samples.heart_rate("p1", 72)
    assert fingerprint(reading) != fingerprint(samples.heart_rate("p2", 72))
    assert fingerprint(reading) != fingerprint({**reading, "valueQuantity": {"value": 73}})
    assert fingerprint(reading) != fingerprint({**reading, "effectiveDateTime": "2020-01-01"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.remaining_open() == 0  # still closed
    breaker.record_failure()
    assert breaker.remaining_open() == 10
    clock.now = 4
    assert breaker.remaining_open() == 6
    clock.now = 10
    assert breaker.remaining_open() == 0  # the probe goes through
    assert breaker.remaining_open() == 10  # the others wait for its answer
    breaker.record_success()
    assert breaker.remaining_open() == 0


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.remaining_open() == 0


def test_a_failed_probe_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now = 5
    assert breaker.remaining_open() == 0
    breaker.record_failure()
    assert breaker.remaining_open() == 5


def test_json_patch_carries_only_the_changed_elements() -> None:
    current = {**BASE, "note": [{"text": "x"}], "interpretation": [{"text": "N"}]}
    desired = {**BASE, "valueQuantity": {"value": 75}, "note": [{"text": "x"}]}
    assert json_patch(current, desired) == [
        {"op": "remove", "path": "/interpretation"},
        {"op": "add", "path": "/valueQuantity", "value": {"value": 75}},
    ]


def test_pacer_spaces_requests_by_the_rate_whatever_the_arrival() -> None:
    clock = FakeClock()
    pacer = Pacer(rate_per_second=10, clock=clock)
    assert pacer.try_acquire() == 0  # the first goes at once
    wait = pacer.try_acquire()
    assert 0.1 <= wait <= 0.11  # the next one waits a full interval (with the safety margin)
    clock.now = 5.0  # waiters woke late, all at once: only one of them may go
    assert pacer.try_acquire() == 0
    assert pacer.try_acquire() > 0
