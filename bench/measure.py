"""Timing helpers: percentiles, and a closed loop that keeps N operations in flight."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


@dataclass
class LoopResult:
    concurrency: int
    warmup_seconds: float
    window_seconds: float
    completed: int
    """Operations that finished inside the measurement window."""
    failed: int
    latencies: list[float]
    """Seconds from start to finish of the operations that finished inside the window."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each process spent during the window."""

    @property
    def per_second(self) -> float:
        return self.completed / self.window_seconds if self.window_seconds else 0.0


def merge(loops: list[LoopResult]) -> LoopResult:
    """Several windows at the same concurrency as one: completions, latencies and CPU summed."""
    cpu: dict[str, float] = {}
    for loop in loops:
        for name, seconds in loop.cpu.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    return LoopResult(
        concurrency=loops[0].concurrency,
        warmup_seconds=sum(loop.warmup_seconds for loop in loops),
        window_seconds=sum(loop.window_seconds for loop in loops),
        completed=sum(loop.completed for loop in loops),
        failed=sum(loop.failed for loop in loops),
        latencies=[x for loop in loops for x in loop.latencies],
        cpu=cpu,
    )


async def closed_loop(
    operation: Callable[[int], Awaitable[bool]],
    concurrency: int,
    window_seconds: float,
    cpu: Callable[[], dict[str, float]],
    max_warmup_seconds: float = 60.0,
) -> LoopResult:
    """Keep ``concurrency`` operations in flight; each returns True if it succeeded.

    Measuring starts once as many operations have finished as there are in flight (every slot has
    cycled once, so the start-up burst is over) or after ``max_warmup_seconds``, and lasts
    ``window_seconds``. Then no new operation starts and the loop waits for those in flight, so
    that the next measurement starts on an idle system."""
    counter = itertools.count()
    finished: list[tuple[float, float, bool]] = []  # (started, ended, ok)
    warmed = asyncio.Event()
    stop = False

    async def slot() -> None:
        while not stop:
            began = time.monotonic()
            try:
                ok = await operation(next(counter))
            except Exception:  # a failed operation is counted, not fatal to the loop
                ok = False
            finished.append((began, time.monotonic(), ok))
            if len(finished) >= concurrency:
                warmed.set()

    loop_started = time.monotonic()
    slots = [asyncio.create_task(slot()) for _ in range(concurrency)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(warmed.wait(), max_warmup_seconds)
    cpu_before, window_start = cpu(), time.monotonic()
    await asyncio.sleep(window_seconds)
    cpu_after, window_end = cpu(), time.monotonic()
    stop = True
    await asyncio.gather(*slots)
    inside = [(b, e, ok) for b, e, ok in finished if window_start <= e < window_end]
    return LoopResult(
        concurrency=concurrency,
        warmup_seconds=window_start - loop_started,
        window_seconds=window_end - window_start,
        completed=sum(1 for *_, ok in inside if ok),
        failed=sum(1 for *_, ok in inside if not ok),
        latencies=[e - b for b, e, ok in inside if ok],
        cpu={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    )


async def run_many(
    operation: Callable[[int], Awaitable[T]], count: int, concurrency: int
) -> list[T]:
    """Run ``operation(0..count-1)`` with at most ``concurrency`` at a time; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with gate:
            return await operation(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))
