"""Per-tenant request counts per second, by method: the evidence that retries do not storm.

``GET /_admin/stats/{tenant}`` ->
``{"tenant", "total", "by_method": {"POST": n}, "max_per_second",
   "per_second": [{"t": <epoch second>, "total": n, "by_method": {...}}, ...]}``
(oldest first; the last hour is kept).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from typing import Any

KEEP_SECONDS = 3600


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, OrderedDict[int, Counter[str]]] = {}

    def record(self, tenant: str, method: str, now: float) -> None:
        second = int(now)
        with self._lock:
            seconds = self._tenants.setdefault(tenant, OrderedDict())
            bucket = seconds.get(second)
            if bucket is None:
                bucket = seconds[second] = Counter()
                while seconds and next(iter(seconds)) < second - KEEP_SECONDS:
                    seconds.popitem(last=False)
            bucket[method] += 1

    def describe(self, tenant: str) -> dict[str, Any]:
        with self._lock:
            seconds = self._tenants.get(tenant, OrderedDict())
            per_second = [
                {"t": t, "total": sum(c.values()), "by_method": dict(c)}
                for t, c in sorted(seconds.items())
            ]
            by_method: Counter[str] = Counter()
            for c in seconds.values():
                by_method.update(c)
        return {
            "tenant": tenant,
            "total": sum(by_method.values()),
            "by_method": dict(by_method),
            "max_per_second": max((sum(c.values()) for c in seconds.values()), default=0),
            "per_second": per_second,
        }

    def reset(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._tenants.clear()
            else:
                self._tenants.pop(tenant, None)
