"""Per-tenant fault injection for the sandbox EHR.

Configured over HTTP (see ``sandbox.app``)::

    POST   /_admin/faults/{tenant}   {"latency_ms": 0, "queue": [fault, ...]}  (replaces)
    GET    /_admin/faults/{tenant}   -> {"tenant": ..., "latency_ms": ..., "queue": [...]}
    DELETE /_admin/faults/{tenant}   -> 204, clears

A fault is ``{"kind": ..., "method"?: "POST", "type"?: "Observation", ...}``:

* ``{"kind": "status", "status": 503, "retry_after": 2}`` answer that status
  (OperationOutcome, optional Retry-After) without touching the store;
* ``{"kind": "commit_then_hang", "seconds": 30}`` perform and commit the
  request, then wait before answering (the client times out after the commit);
* ``{"kind": "drop_identifier"}`` store the resource without ``identifier``.

Each queued fault is consumed by the first FHIR request it matches; take() is
guarded by a lock so two concurrent requests can never consume the same fault.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

FaultKind = Literal["status", "commit_then_hang", "drop_identifier"]
KINDS: tuple[str, ...] = ("status", "commit_then_hang", "drop_identifier")


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    method: str | None = None
    type: str | None = None
    status: int = 503
    retry_after: int | None = None
    seconds: float = 30.0

    def matches(self, method: str, rtype: str | None) -> bool:
        return (self.method is None or self.method == method) and (
            self.type is None or self.type == rtype
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.kind != "status":
            data.pop("status")
            data.pop("retry_after")
        if self.kind != "commit_then_hang":
            data.pop("seconds")
        return {k: v for k, v in data.items() if v is not None}


@dataclass
class TenantFaults:
    latency_ms: int = 0
    queue: list[Fault] = field(default_factory=list)


def _opt(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"fault field {key!r} must be {kind.__name__}")
    return value


def parse_fault(raw: Any) -> Fault:
    """Validate one fault object from the admin API (raises ValueError)."""
    if not isinstance(raw, dict):
        raise ValueError("each fault must be a JSON object")
    unknown = set(raw) - {"kind", "method", "type", "status", "retry_after", "seconds"}
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {list(KINDS)}")
    method = _opt(raw, "method", str)
    status = _opt(raw, "status", int)
    if status is not None and not 400 <= status <= 599:
        raise ValueError("fault status must be 400..599")
    seconds = raw.get("seconds", 30.0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError("fault 'seconds' must be a non-negative number")
    return Fault(
        kind=cast(FaultKind, kind),
        method=method.upper() if method else None,
        type=_opt(raw, "type", str),
        status=503 if status is None else status,
        retry_after=_opt(raw, "retry_after", int),
        seconds=float(seconds),
    )


def parse_config(raw: Any) -> TenantFaults:
    if not isinstance(raw, dict):
        raise ValueError("body must be a JSON object")
    unknown = set(raw) - {"latency_ms", "queue"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    latency = raw.get("latency_ms", 0)
    if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
        raise ValueError("latency_ms must be a non-negative integer")
    queue = raw.get("queue", [])
    if not isinstance(queue, list):
        raise ValueError("queue must be a list")
    return TenantFaults(latency, [parse_fault(f) for f in queue])


class FaultRegistry:
    """Thread-safe tenant -> faults map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantFaults] = {}

    def set(self, tenant: str, faults: TenantFaults) -> None:
        with self._lock:
            self._tenants[tenant] = faults

    def clear(self, tenant: str) -> None:
        with self._lock:
            self._tenants.pop(tenant, None)

    def describe(self, tenant: str) -> dict[str, Any]:
        with self._lock:
            tf = self._tenants.get(tenant, TenantFaults())
            return {
                "tenant": tenant,
                "latency_ms": tf.latency_ms,
                "queue": [f.to_json() for f in tf.queue],
            }

    def latency_ms(self, tenant: str) -> int:
        with self._lock:
            tf = self._tenants.get(tenant)
            return tf.latency_ms if tf else 0

    def take(self, tenant: str, method: str, rtype: str | None) -> Fault | None:
        """Remove and return the first queued fault matching this request."""
        with self._lock:
            tf = self._tenants.get(tenant)
            if tf is None:
                return None
            for i, fault in enumerate(tf.queue):
                if fault.matches(method, rtype):
                    return tf.queue.pop(i)
            return None
