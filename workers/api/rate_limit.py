"""Per-client rate limits: a token bucket per client id (``requests_per_second``, ``burst`` in
its config entry), in this process. Several API processes each keep their own buckets: a client
gets at most N times its rate across N processes (put the limit at the load balancer too where
that matters). Over the limit: 429 with ``Retry-After`` (whole seconds)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from workers.api.config import ClientConfig
from workers.api.outcomes import throttled


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client id -> (tokens, at)

    def take(self, client: ClientConfig) -> float | None:
        """Take one request's token; None when allowed, else the seconds until one is there."""
        now = self._clock()
        tokens, at = self._buckets.get(client.id, (float(client.burst), now))
        tokens = min(float(client.burst), tokens + (now - at) * client.requests_per_second)
        if tokens >= 1.0:
            self._buckets[client.id] = (tokens - 1.0, now)
            return None
        self._buckets[client.id] = (tokens, now)
        return (1.0 - tokens) / client.requests_per_second

    def check(self, client: ClientConfig) -> None:
        wait = self.take(client)
        if wait is not None:
            raise throttled(max(1, math.ceil(wait)))
