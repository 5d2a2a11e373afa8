"""Several worker processes serving one tenant: their pacers together keep to the tenant's limit in
every wall-clock second, and none of them starves (activities/pacer.py, ``Pacer.share``)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from activities.pacer import Pacer
from workers.rate_share import ehr_activity_slots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def greedy_run(
    pacers: list[Pacer],
    clock: Clock,
    seconds: int,
    delivery_delay: float = 0.0,
    demand: Callable[[int], bool] = lambda tick: True,
) -> list[list[int]]:
    """Every pacer sends whenever it may and ``demand`` has a request ready, on a 10 ms grid;
    requests per (second of arrival at the EHR, ``delivery_delay`` after being let go; pacer)."""
    sent = [[0] * len(pacers) for _ in range(seconds + 1)]
    for tick in range(seconds * 100):
        clock.now = 1000.0 + tick / 100
        for index, pacer in enumerate(pacers):
            if demand(tick) and pacer.try_acquire() == 0:
                sent[int(tick / 100 + delivery_delay)][index] += 1
    return sent[:seconds] if not delivery_delay else sent


@pytest.mark.parametrize(("rate", "workers"), [(5, 3), (2, 3), (20, 3), (7.5, 2), (10, 1)])
def test_shared_pacers_never_exceed_the_tenant_limit_in_any_second(
    rate: float, workers: int
) -> None:
    clock = Clock()
    pacers = [Pacer(rate, clock=clock) for _ in range(workers)]
    for rank, pacer in enumerate(pacers):
        pacer.share(workers, rank)
    sent = greedy_run(pacers, clock, seconds=12)
    assert max(sum(second) for second in sent) <= rate
    assert all(sum(second[i] for second in sent) > 0 for i in range(workers))


@pytest.mark.parametrize(("rate", "workers"), [(5, 3), (2, 3), (7.5, 2)])
@pytest.mark.parametrize("readiness", [0.5, 0.2])
def test_requests_delayed_on_their_way_still_arrive_within_the_limit(
    rate: float, workers: int, readiness: float
) -> None:
    """A request let go late in one second and delivered in the next must not push that second
    over the limit (a loaded worker or EHR delays delivery by tens of milliseconds). Requests
    become ready at uneven times (each 10 ms tick with probability ``readiness``)."""
    clock = Clock()
    pacers = [Pacer(rate, clock=clock) for _ in range(workers)]
    for rank, pacer in enumerate(pacers):
        pacer.share(workers, rank)
    ready = random.Random(7)
    sent = greedy_run(
        pacers, clock, seconds=60, delivery_delay=0.15, demand=lambda _: ready.random() < readiness
    )
    assert max(sum(second) for second in sent) <= rate


def test_unshared_pacers_would_exceed_it() -> None:
    """Why sharing is needed: three processes each pacing at the full rate send 3R."""
    clock = Clock()
    pacers = [Pacer(5, clock=clock) for _ in range(3)]
    sent = greedy_run(pacers, clock, seconds=5)
    assert max(sum(second) for second in sent) > 5


def test_out_of_range_shares_are_clamped() -> None:
    clock = Clock()
    pacer = Pacer(4, clock=clock)
    pacer.share(0, 7)  # treated as the only process
    assert greedy_run([pacer], clock, seconds=3) == [[4], [4], [4]]


@pytest.mark.parametrize(
    ("rate", "slots"), [(None, 100), (5, 25), (0.1, 1), (20, 100), (1000, 100)]
)
def test_a_process_takes_on_a_few_seconds_of_a_tenants_requests(
    rate: float | None, slots: int
) -> None:
    assert ehr_activity_slots(rate) == slots
