"""The last requests each tenant received, with the correlation headers a client sent: W3C
``traceparent`` and ``X-Request-Id``. Lets a test (or a person) tie an EHR request to the trace
and the write that caused it.

``GET /_admin/requests/{tenant}`` ->
``{"tenant", "requests": [{"t", "method", "path", "status", "traceparent", "request_id", "fault",
"seconds"}, ...]}`` (oldest first; the last ``KEEP`` per tenant; the path without its query
string; ``t`` when it arrived, ``seconds`` until it was answered or dropped, ``fault`` the label of
the injected fault it met, e.g. ``commit_late+delayed_indexing``, or null; a dropped connection
shows status 500, which nobody received).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

KEEP = 1000


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, deque[dict[str, Any]]] = {}

    def record(
        self,
        tenant: str,
        method: str,
        path: str,
        status: int,
        traceparent: str | None,
        request_id: str | None,
        now: float,
        fault: str | None = None,
        seconds: float = 0.0,
    ) -> None:
        entry = {
            "t": now,
            "method": method,
            "path": path,
            "status": status,
            "traceparent": traceparent,
            "request_id": request_id,
            "fault": fault,
            "seconds": round(seconds, 3),
        }
        with self._lock:
            self._tenants.setdefault(tenant, deque(maxlen=KEEP)).append(entry)

    def describe(self, tenant: str) -> dict[str, Any]:
        with self._lock:
            return {"tenant": tenant, "requests": list(self._tenants.get(tenant, ()))}

    def reset(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._tenants.clear()
            else:
                self._tenants.pop(tenant, None)
