"""A per-tenant circuit breaker: after repeated transient failures, stop sending to that EHR for a
cooldown instead of letting every waiting write spend an attempt on an outage.

It lives in each worker process (K workers probe K times per cooldown); the hard cap on what the
EHR sees is the per-tenant task-queue rate limit, which Temporal enforces across all workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    cooldown_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _open_until: float = field(default=0.0, init=False)

    def remaining_open(self) -> float:
        """Seconds until a request may be sent (0 = send now). After a cooldown the first caller
        probes and re-arms the window, so the others wait for the probe's answer."""
        now = self.clock()
        if self._failures < self.failure_threshold:
            return 0.0
        if now < self._open_until:
            return self._open_until - now
        self._open_until = now + self.cooldown_seconds
        return 0.0

    def record_success(self) -> None:
        self._failures = 0

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open_until = self.clock() + self.cooldown_seconds
