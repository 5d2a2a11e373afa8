"""The soak's arithmetic, kept pure (tests/unit/test_soak_criteria.py): what one write and one
sample record, the statistics of a time window, and the criteria with their ``met``.

Times are seconds since the first arrival was due (``t = 0``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.measure import percentile
from bench.report import Figure
from workflows.contract import WriteState

#: Final states that say what happened: in the chart, refused, or waiting for a person.
SETTLED_STATES = frozenset(s.value for s in WriteState if s.is_settled)


@dataclass
class Write:
    """One write of the soak, as the load generator saw it."""

    n: int
    tenant: str
    personality: str
    due: float
    """When the open-loop schedule wanted it submitted (n / rate)."""
    submitted: float | None = None
    """When ``submit`` returned (None: it never did)."""
    settled: float | None = None
    """When the workflow's result came back (None: not within the run and its drain)."""
    workflow_id: str = ""
    state: str | None = None
    """Its final state (``verified``, ``rejected``, a waiting state…), or why it has none."""

    @property
    def latency(self) -> float | None:
        """Due → verified: an open-loop latency, so a client that falls behind its schedule
        shows up here instead of being hidden (coordinated omission)."""
        if self.settled is None or self.state != "verified":
            return None
        return self.settled - self.due

    @property
    def out(self) -> bool:
        """No result and no settled state: still moving at the end (or never submitted)."""
        return self.settled is None and self.state not in SETTLED_STATES


@dataclass
class Sample:
    """What the sampler saw at ``t`` about the ``every`` seconds before it."""

    t: float
    every: float
    submitted: int
    """Writes submitted so far (in all)."""
    settled: int
    """Writes settled so far (in all)."""
    completions_per_s: float
    p50: float | None
    p99: float | None
    """Latency (s) of the writes verified in this sample's window."""
    worker_rss: int
    """Bytes: every product worker process alive (two for a moment during a restart)."""
    server_rss: int

    @property
    def backlog(self) -> int:
        return self.submitted - self.settled


@dataclass(frozen=True)
class Windows:
    """The exact windows the criteria compare (seconds since t = 0)."""

    duration: float
    warmup: float
    window: float
    rss_at: float
    rss_span: float

    @property
    def first(self) -> tuple[float, float]:
        """Arrivals due in [warmup, warmup + window)."""
        return self.warmup, self.warmup + self.window

    @property
    def last(self) -> tuple[float, float]:
        """Arrivals due in [duration - window, duration)."""
        return self.duration - self.window, self.duration

    @property
    def rss_before(self) -> tuple[float, float]:
        """RSS samples in [rss_at - rss_span, rss_at)."""
        return self.rss_at - self.rss_span, self.rss_at

    @property
    def rss_after(self) -> tuple[float, float]:
        """RSS samples in [duration - rss_span, duration)."""
        return self.duration - self.rss_span, self.duration


def due_in(writes: list[Write], span: tuple[float, float]) -> list[Write]:
    start, end = span
    return [w for w in writes if start <= w.due < end]


def latencies(writes: list[Write]) -> list[float]:
    return [x for w in writes if (x := w.latency) is not None]


def settled_in(writes: list[Write], start: float, end: float) -> list[Write]:
    """Writes whose result came back in (start, end]."""
    return [w for w in writes if w.settled is not None and start < w.settled <= end]


def window_p99(writes: list[Write], span: tuple[float, float]) -> float | None:
    """p99 latency of the writes due in ``span`` that were verified, however late (a write due
    in the window and verified in the drain counts with its whole wait); a write still out at the
    end counts as infinitely late, so that writes that never came back cannot make a window look
    faster (more than 1% of them out: the p99 is infinite)."""
    due = due_in(writes, span)
    return percentile(latencies(due) + [math.inf for w in due if w.out], 99)


def mean_rss(samples: list[Sample], span: tuple[float, float], worker: bool) -> float | None:
    start, end = span
    values = [s.worker_rss if worker else s.server_rss for s in samples if start <= s.t < end]
    values = [v for v in values if v > 0]
    return sum(values) / len(values) if values else None


def growth(before: float | None, after: float | None) -> float | None:
    """Relative growth (0.1 = +10%); None when either end is unknown."""
    if before is None or after is None or before <= 0:
        return None
    return after / before - 1


def rss_figure(name: str, before: float | None, after: float | None, limit: float) -> Figure:
    """Mean RSS after (MiB) against before, with ``met`` = growth < ``limit`` (0.1: the table's
    ratio below x1.10); an unknown end is not met."""
    rise = growth(before, after)
    return Figure(
        name,
        None if after is None else after / 2**20,
        "MiB",
        None if before is None else before / 2**20,
        "before",
        target=f"growth < {limit * 100:g}%",
        met=rise is not None and rise < limit,
    )


def p99_figure(first: float | None, last: float | None, factor: float) -> Figure:
    """p99 of the last window against the first: ``met`` when last ≤ factor x first."""
    met = first is not None and last is not None and math.isfinite(last) and last <= factor * first
    return Figure(
        "p99 latency, last window",
        None if last is None else last * 1000,
        "ms",
        None if first is None else first * 1000,
        "first window",
        target=f"≤ {factor:g}x first",
        met=met,
    )
