"""The soak benchmark's pure parts (bench/soak_stats.py): windows, window statistics and the
``met`` of its RSS-growth and p99 criteria."""

from __future__ import annotations

import math

import pytest

from bench.soak_stats import (
    Sample,
    Windows,
    Write,
    due_in,
    growth,
    mean_rss,
    p99_figure,
    rss_figure,
    settled_in,
    window_p99,
)

WINDOWS = Windows(duration=1800, warmup=60, window=300, rss_at=300, rss_span=60)


def _write(n: int, due: float, took: float | None, state: str = "verified") -> Write:
    settled = None if took is None else due + took
    return Write(n, "t", "r4", due=due, submitted=due, settled=settled, state=state)


def _sample(t: float, worker: int, server: int) -> Sample:
    return Sample(t, 5, 0, 0, 0.0, None, None, worker_rss=worker, server_rss=server)


def test_windows_are_exact() -> None:
    assert WINDOWS.first == (60, 360)
    assert WINDOWS.last == (1500, 1800)
    assert WINDOWS.rss_before == (240, 300)
    assert WINDOWS.rss_after == (1740, 1800)


def test_window_p99_counts_writes_by_due_time_and_only_verified_ones() -> None:
    writes = [_write(i, 60 + i, 1.0) for i in range(98)]
    # due inside, verified late: the whole wait counts (2 of 100: the nearest-rank p99)
    writes += [_write(98, 300, 9.0), _write(99, 359.9, 9.0)]
    writes.append(_write(100, 59.9, 50.0))  # due in the warm-up: left out
    writes.append(_write(101, 360, 50.0))  # due at the window's end (exclusive): left out
    writes.append(_write(102, 100, 70.0, state="rejected"))  # not verified: no latency
    writes.append(_write(103, 100, None))  # still out: no latency
    assert window_p99(writes, WINDOWS.first) == 9.0
    assert window_p99(writes[:98], WINDOWS.first) == 1.0
    assert window_p99(writes, (2000, 2100)) is None


def test_windows_select_writes_by_due_time_half_open() -> None:
    writes = [_write(0, 59.9, 1.0), _write(1, 60, 1.0), _write(2, 359.9, 1.0), _write(3, 360, 1)]
    assert [w.n for w in due_in(writes, WINDOWS.first)] == [1, 2]


def test_latency_is_due_to_verified_and_none_otherwise() -> None:
    late = Write(0, "t", "r4", due=10.0, submitted=14.0, settled=20.0, state="verified")
    assert late.latency == 10.0  # from when it was due, not from when it got submitted
    assert _write(1, 0, 5.0, state="rejected").latency is None
    assert _write(2, 0, None).latency is None


def test_writes_still_out_count_as_infinitely_late() -> None:
    verified = [_write(i, 100 + i, 1.0) for i in range(99)]
    out = _write(99, 200, None, state="unsettled (in_flight)")
    waiting = _write(100, 200, None, state="pending_confirmation")  # settled: no latency
    assert window_p99([*verified, out, waiting], WINDOWS.first) == 1.0  # 1 of 100: below p99
    late = [out, Write(101, "t", "r4", due=201.0, submitted=201.0)]  # no result, no state
    assert window_p99([*verified, *late], WINDOWS.first) == math.inf
    assert p99_figure(math.inf, math.inf, 1.2).met is False


def test_settled_in_is_half_open_on_the_left() -> None:
    writes = [_write(0, 0, 5.0), _write(1, 0, 10.0), _write(2, 0, None)]
    assert [w.n for w in settled_in(writes, 5, 10)] == [1]


def test_mean_rss_uses_the_span_and_skips_unreadable_samples() -> None:
    samples = [
        _sample(235, 999, 999),
        _sample(240, 100, 10),
        _sample(295, 200, 0),  # server unreadable at that moment
        _sample(300, 999, 999),
    ]
    assert mean_rss(samples, WINDOWS.rss_before, worker=True) == 150
    assert mean_rss(samples, WINDOWS.rss_before, worker=False) == 10
    assert mean_rss(samples, (0, 10), worker=True) is None


def test_growth() -> None:
    assert growth(100, 110) == pytest.approx(0.10)
    assert growth(100, 90) == pytest.approx(-0.10)
    assert growth(None, 100) is None
    assert growth(0, 100) is None


@pytest.mark.parametrize(
    ("before", "after", "met"),
    [(100.0, 109.0, True), (100.0, 110.0, False), (100.0, 50.0, True), (None, 100.0, False)],
)
def test_rss_criterion_is_growth_below_ten_percent(
    before: float | None, after: float, met: bool
) -> None:
    figure = rss_figure("worker RSS", before, after, 0.10)
    assert figure.met is met
    if before is not None:
        assert figure.ratio == pytest.approx(after / before)


def test_rss_growth_at_the_limit_is_not_met() -> None:
    assert rss_figure("server", 100.0, 125.0, 0.25).met is False  # 1.25 - 1 is exactly 0.25
    assert rss_figure("server", 100.0, 124.0, 0.25).met is True


@pytest.mark.parametrize(
    ("first", "last", "met"),
    [
        (1.0, 1.2, True),
        (1.0, 1.21, False),
        (2.0, 1.0, True),
        (None, 1.0, False),
        (1.0, None, False),
    ],
)
def test_p99_criterion_is_last_at_most_factor_times_first(
    first: float | None, last: float | None, met: bool
) -> None:
    figure = p99_figure(first, last, 1.2)
    assert figure.met is met
    if last is not None:
        assert figure.value == pytest.approx(last * 1000)
