"""Spacing of a tenant's EHR requests inside one worker process, and its share of the tenant's
limit when several worker processes serve the tenant.

The task-queue rate limit (enforced by the Temporal server across all workers) caps how many EHR
activities start per second on average, but the server's token bucket allows bursts and an
activity may make more than one request (search, then create). The pacer spaces this process's
requests at least ``workers/rate`` apart, so the EHR sees a steady stream instead of bursts.

With ``workers`` processes sharing a tenant (``share``), each process also keeps to a quota per
wall-clock second: process ``rank`` may send ``floor((R + (rank + second) mod workers) / workers)``
requests in that second. Over the ranks these quotas add up to exactly R (Hermite's identity), so
the tenant never sees more than R requests in one second whatever the processes do, and the
rotation by second gives every process a turn even when there are more processes than R.

The EHR counts a request in the second it *arrives*, not the second it was let go: a request let
go at 0.99 s that arrives at 1.02 s lands in the next second on top of that second's full quota.
So a shared process lets requests go only in the first ``1 - BOUNDARY_GUARD`` of each second,
which absorbs delivery delays (a loaded event loop, the network) shorter than the guard.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

#: Requests are spaced a little wider than 1/rate, so jitter in delivery cannot push two of them
#: into the same slot as seen by the EHR.
SAFETY = 1.05
#: The last part of each wall-clock second in which a shared process lets no request go.
BOUNDARY_GUARD = 0.2


class Pacer:
    def __init__(self, rate_per_second: float, clock: Callable[[], float] = time.time) -> None:
        self._rate = rate_per_second
        self._clock = clock
        self._next_slot = 0.0
        self._workers, self._rank = 1, 0
        self._interval = SAFETY / rate_per_second
        self._second, self._sent_this_second = -1, 0

    def share(self, workers: int, rank: int) -> None:
        """This process is number ``rank`` (0-based) of ``workers`` serving the tenant."""
        self._workers = max(1, workers)
        self._rank = min(max(0, rank), self._workers - 1)
        self._interval = SAFETY * self._workers / self._rate

    def _quota(self, second: int) -> int:
        turn = (self._rank + second) % self._workers
        return math.floor((self._rate + turn) / self._workers)

    def try_acquire(self) -> float:
        """0 when a request may go now (and the slot is taken), else seconds to wait first."""
        now = self._clock()
        second = math.floor(now)
        if second != self._second:
            self._second, self._sent_this_second = second, 0
        late_in_second = self._workers > 1 and now - second >= 1 - BOUNDARY_GUARD
        if late_in_second or self._sent_this_second >= self._quota(second):
            return max(second + 1 - now, self._next_slot - now, 0.001)
        if now >= self._next_slot:
            self._next_slot = now + self._interval
            self._sent_this_second += 1
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
