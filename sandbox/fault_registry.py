"""The per-tenant fault registry: what each tenant's requests meet (see :mod:`sandbox.faults`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sandbox.faults import Fault, TenantFaults, note_taken, parse_config

_NONE = TenantFaults()


class FaultRegistry:
    """Thread-safe tenant -> faults map; ``initial`` (raw JSON) is what a reset restores."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = dict(initial or {})
        self._tenants: dict[str, TenantFaults] = {}
        self.reset()

    def set(self, tenant: str, faults: TenantFaults) -> None:
        with self._lock:
            self._tenants[tenant] = faults

    def clear(self, tenant: str) -> None:
        with self._lock:
            self._tenants.pop(tenant, None)

    def reset(self, tenant: str | None = None) -> None:
        """Back to the configured faults (outage windows start again now)."""
        with self._lock:
            for name in [t for t in self._tenants if tenant in (None, t)]:
                del self._tenants[name]
            for name, raw in self._initial.items():
                if tenant in (None, name):
                    self._tenants[name] = parse_config(raw)

    def get(self, tenant: str) -> TenantFaults:
        return self._tenants.get(tenant, _NONE)

    def describe(self, tenant: str) -> dict[str, Any]:
        with self._lock:
            return self.get(tenant).to_json(tenant, time.monotonic())

    def latency_ms(self, tenant: str) -> int:
        return self.get(tenant).latency_ms

    def take_named(self, tenant: str, method: str, name: str) -> Fault | None:
        """The first queued fault naming ``name`` as its type (removed): for endpoints outside
        FHIR's interactions (e.g. ``smart-configuration``), which no general fault reaches."""
        with self._lock:
            tf = self._tenants.get(tenant)
            for i, fault in enumerate(tf.queue if tf else []):
                if fault.type == name and fault.matches(method, name):
                    assert tf is not None
                    taken = tf.queue.pop(i)
                    tf.injected[taken.label] = tf.injected.get(taken.label, 0) + 1
                    return taken
            return None

    def take(self, tenant: str, method: str, rtype: str | None) -> Fault | None:
        """The first queued fault matching this request (removed), else a random draw."""
        note_taken(None)
        with self._lock:
            tf = self._tenants.get(tenant)
            if tf is None:
                return None
            taken: Fault | None = None
            for i, fault in enumerate(tf.queue):
                if fault.matches(method, rtype):
                    taken = tf.queue.pop(i)
                    break
            if taken is None and tf.random is not None:
                taken = tf.random.draw(method, rtype)
            if taken is not None:
                tf.injected[taken.label] = tf.injected.get(taken.label, 0) + 1
            note_taken(taken)
            return taken

    def note_outage(self, tenant: str) -> None:
        with self._lock:
            tf = self._tenants.get(tenant)
            if tf is not None:
                tf.injected["outage"] = tf.injected.get("outage", 0) + 1
