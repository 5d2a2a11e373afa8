"""Per-tenant fault injection: deterministic, scriptable, and seeded where random.

Configured over HTTP (``/_admin/faults/{tenant}``) or in the config file::

    {"latency_ms": 0,                      # added to every FHIR request
     "queue": [fault, ...],                # each consumed by the first matching request
     "random": {"seed": 7, "rate": 0.2, "kinds": [fault, ...]},
     "outage": {"seconds": 30, "status": 503, "mode": "status" | "reset"},
     "drift": {...},                       # see sandbox.drift
     "index_delay_seconds": 0,             # new versions invisible to search for N s
     "stale_read_seconds": 0}              # reads return the previous version N s after an update

POST replaces the whole configuration, GET shows it (plus ``injected``: the
faults that happened, by kind), DELETE clears it.

A fault is ``{"kind": ..., "method"?: "POST", "type"?: "Observation", ...}``:

* ``status`` (``status``, ``retry_after``): answer that status with an
  OperationOutcome (and Retry-After) without touching the store;
* ``connection_reset``: close the TCP connection (RST) before doing anything;
* ``commit_then_drop``: perform and commit the request, then close the
  connection without an answer;
* ``commit_then_hang`` (``seconds``): perform and commit, answer after a delay;
* ``drop_identifier``: store the resource without ``identifier``;
* ``delayed_indexing`` (``seconds``): the written version is invisible to search
  for that long;
* ``stale_reads`` (``seconds``): after this update, reads return the previous
  version for that long;
* ``lenient_search``: this search is answered like a server that does not know
  ``identifier`` or ``_tag`` and ignores ``Prefer: handling=strict`` (R4's
  lenient default): both are dropped from the criteria and from the ``self``
  link, the rest of the query is answered (see :func:`fault_for_this_request`).

Queued faults are taken first. Otherwise, when ``random`` is set, every request
matched by one of its ``kinds`` draws two numbers from ``random.Random(seed)``:
the first decides (``< rate``) whether a fault happens, the second picks which
matching kind. The same sequence of requests therefore gets the same faults on
every run.
"""

from __future__ import annotations

import math
import random
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sandbox.drift import Drift, parse_drift

FaultKind = Literal[
    "status",
    "commit_then_hang",
    "drop_identifier",
    "connection_reset",
    "commit_then_drop",
    "delayed_indexing",
    "stale_reads",
    "lenient_search",
]
KINDS: tuple[str, ...] = (
    "status",
    "commit_then_hang",
    "drop_identifier",
    "connection_reset",
    "commit_then_drop",
    "delayed_indexing",
    "stale_reads",
    "lenient_search",
)
TIMED_KINDS = ("commit_then_hang", "delayed_indexing", "stale_reads")


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
        data: dict[str, Any] = {"kind": self.kind}
        if self.kind == "status":
            data["status"] = self.status
            if self.retry_after is not None:
                data["retry_after"] = self.retry_after
        if self.kind in TIMED_KINDS:
            data["seconds"] = self.seconds
        if self.method is not None:
            data["method"] = self.method
        if self.type is not None:
            data["type"] = self.type
        return data


@dataclass
class RandomFaults:
    seed: int
    rate: float
    kinds: list[Fault]
    rng: random.Random = field(init=False)
    draws: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self, method: str, rtype: str | None) -> Fault | None:
        matching = [f for f in self.kinds if f.matches(method, rtype)]
        if not matching:
            return None
        self.draws += 1
        hit, pick = self.rng.random(), self.rng.randrange(len(matching))
        if hit >= self.rate:
            return None
        self.injected += 1
        return matching[pick]

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rate": self.rate,
            "kinds": [f.to_json() for f in self.kinds],
            "draws": self.draws,
            "injected": self.injected,
        }


@dataclass(frozen=True)
class Outage:
    seconds: float
    status: int
    mode: Literal["status", "reset"]
    until: float
    """time.monotonic() at which the outage ends."""

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.remaining(now)))

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "status": self.status,
            "mode": self.mode,
            "remaining_seconds": round(self.remaining(now), 3),
        }


@dataclass
class TenantFaults:
    latency_ms: int = 0
    queue: list[Fault] = field(default_factory=list)
    random: RandomFaults | None = None
    outage: Outage | None = None
    drift: Drift = field(default_factory=Drift)
    index_delay_seconds: float = 0.0
    stale_read_seconds: float = 0.0
    injected: dict[str, int] = field(default_factory=dict)
    """Faults that happened, by kind (queued, random and outage), since configured."""

    def to_json(self, tenant: str, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tenant": tenant,
            "latency_ms": self.latency_ms,
            "queue": [f.to_json() for f in self.queue],
        }
        if self.random is not None:
            out["random"] = self.random.to_json()
        if self.outage is not None and self.outage.remaining(now) > 0:
            out["outage"] = self.outage.to_json(now)
        if self.drift:
            out["drift"] = self.drift.to_json()
        if self.index_delay_seconds:
            out["index_delay_seconds"] = self.index_delay_seconds
        if self.stale_read_seconds:
            out["stale_read_seconds"] = self.stale_read_seconds
        if self.injected:
            out["injected"] = dict(self.injected)
        return out


def _opt(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"fault field {key!r} must be {kind.__name__}")
    return value


def _seconds(raw: Any, name: str, default: float = 0.0) -> float:
    value = default if raw is None else raw
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


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
    return Fault(
        kind=cast(FaultKind, kind),
        method=method.upper() if method else None,
        type=_opt(raw, "type", str),
        status=503 if status is None else status,
        retry_after=_opt(raw, "retry_after", int),
        seconds=_seconds(raw.get("seconds"), "fault 'seconds'", 30.0),
    )


def parse_random(raw: Any) -> RandomFaults:
    if not isinstance(raw, dict) or set(raw) - {"seed", "rate", "kinds"}:
        raise ValueError("random must be {'seed': int, 'rate': 0..1, 'kinds': [fault, ...]}")
    seed, rate, kinds = raw.get("seed", 0), raw.get("rate"), raw.get("kinds")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError("random.seed must be an integer")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise ValueError("random.rate must be a number in 0..1")
    if not isinstance(kinds, list) or not kinds:
        raise ValueError("random.kinds must be a non-empty list of faults")
    return RandomFaults(seed, float(rate), [parse_fault(k) for k in kinds])


def parse_outage(raw: Any, now: float) -> Outage:
    if not isinstance(raw, dict) or set(raw) - {"seconds", "status", "mode"}:
        raise ValueError("outage must be {'seconds': n, 'status'?: 503, 'mode'?: 'status'|'reset'}")
    seconds = _seconds(raw.get("seconds"), "outage.seconds")
    status = raw.get("status", 503)
    mode = raw.get("mode", "status")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise ValueError("outage.status must be 400..599")
    if mode not in ("status", "reset"):
        raise ValueError("outage.mode must be 'status' or 'reset'")
    return Outage(seconds, status, mode, now + seconds)


def parse_config(raw: Any, now: float | None = None) -> TenantFaults:
    if not isinstance(raw, dict):
        raise ValueError("body must be a JSON object")
    known = {
        "latency_ms",
        "queue",
        "random",
        "outage",
        "drift",
        "index_delay_seconds",
        "stale_read_seconds",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    latency = raw.get("latency_ms", 0)
    if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
        raise ValueError("latency_ms must be a non-negative integer")
    queue = raw.get("queue", [])
    if not isinstance(queue, list):
        raise ValueError("queue must be a list")
    mono = time.monotonic() if now is None else now
    return TenantFaults(
        latency_ms=latency,
        queue=[parse_fault(f) for f in queue],
        random=None if raw.get("random") is None else parse_random(raw["random"]),
        outage=None if raw.get("outage") is None else parse_outage(raw["outage"], mono),
        drift=parse_drift(raw.get("drift")),
        index_delay_seconds=_seconds(raw.get("index_delay_seconds"), "index_delay_seconds"),
        stale_read_seconds=_seconds(raw.get("stale_read_seconds"), "stale_read_seconds"),
    )


_NONE = TenantFaults()

#: The fault :meth:`FaultRegistry.take` handed to the request being served (None: none). Set on
#: every take, which runs once per FHIR request before its interaction, in the request's task, so
#: an interaction can see its fault without the pipeline passing it along (``lenient_search``).
_TAKEN: ContextVar[Fault | None] = ContextVar("sandbox_fault_taken", default=None)


def fault_for_this_request() -> Fault | None:
    """The fault taken for the FHIR request being served, if any."""
    return _TAKEN.get()


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

    def take(self, tenant: str, method: str, rtype: str | None) -> Fault | None:
        """The first queued fault matching this request (removed), else a random draw."""
        _TAKEN.set(None)
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
                tf.injected[taken.kind] = tf.injected.get(taken.kind, 0) + 1
            _TAKEN.set(taken)
            return taken

    def note_outage(self, tenant: str) -> None:
        with self._lock:
            tf = self._tenants.get(tenant)
            if tf is not None:
                tf.injected["outage"] = tf.injected.get("outage", 0) + 1
