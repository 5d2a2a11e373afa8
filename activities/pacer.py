"""Spacing of a tenant's EHR requests inside one worker process.

The task-queue rate limit (enforced by the Temporal server across all workers) caps how many EHR
activities start per second on average, but the server's token bucket allows bursts and an
activity may make more than one request (search, then create). The pacer spaces this process's
requests at least ``1/rate`` apart, so the EHR sees a steady stream instead of bursts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Requests are spaced a little wider than 1/rate, so jitter in delivery cannot push two of them
#: into the same slot as seen by the EHR.
SAFETY = 1.05


class Pacer:
    def __init__(self, rate_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = SAFETY / rate_per_second
        self._clock = clock
        self._next_slot = 0.0

    def try_acquire(self) -> float:
        """0 when a request may go now (and the slot is taken), else seconds to wait first."""
        now = self._clock()
        if now >= self._next_slot:
            self._next_slot = now + self._interval
            return 0.0
        return self._next_slot - now

    async def wait(self) -> None:
        """Wait for a free slot. The slot is taken when the request really goes, not when it
        queued: a busy event loop that wakes several waiters late cannot release them together."""
        while True:
            delay = self.try_acquire()
            if not delay:
                return
            await asyncio.sleep(delay)
