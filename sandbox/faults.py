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

* ``status`` (``status``, ``retry_after``, ``outcome``): answer that status with an
  OperationOutcome (and Retry-After) without touching the store; ``outcome`` is the
  OperationOutcome to answer with, as given (an EHR that echoes what it was sent, or
  anything else, in its issues), instead of the personality's;
* ``connection_reset``: close the TCP connection (RST) before doing anything;
* ``commit_then_drop``: perform and commit the request, then close the
  connection without an answer;
* ``commit_then_hang`` (``seconds``): perform and commit, answer after a delay;
* ``garbled_answer``: perform and commit, then answer with a body that claims a
  ``Content-Encoding`` it does not have: the client cannot decode the answer
  to a request that did commit;
* ``commit_late`` (``seconds``): receive the request (body included), wait, THEN
  perform and commit it, then answer (a client with a shorter timeout has given
  up by then). Everything the interaction decides is decided at commit time:
  If-None-Exist is evaluated then (a late conditional create finds a copy made
  meanwhile and makes no second one), If-Match too, and search visibility starts
  then. The token and the vendor's required parameters are checked on arrival.
  The wait is asynchronous: other requests are served meanwhile;
* ``drop_identifier``: store the resource without ``identifier``;
* ``delayed_indexing`` (``seconds``): the written version is invisible to search
  for that long (reads by id see it at once), or for the tenant's
  ``index_delay_seconds`` when that is longer;
* ``stale_reads`` (``seconds``): after this update, reads return the previous
  version for that long (or the tenant's ``stale_read_seconds`` when longer);
* ``combo`` (``faults``): several of the kinds above on the same request, e.g.
  commit-then-drop whose resource also stays out of search::

      {"kind": "combo", "method": "POST", "faults": [
          {"kind": "commit_then_drop"}, {"kind": "delayed_indexing", "seconds": 6}]}

  ``faults`` holds two or more different kinds among ``commit_late``,
  ``drop_identifier``, ``delayed_indexing``, ``stale_reads`` and at most one of
  ``commit_then_drop`` / ``commit_then_hang`` (``status`` and
  ``connection_reset`` touch nothing, so there is nothing to combine them
  with); matchers (``method``, ``type``) belong to the combo, not to its parts.
  A combo is one fault: one queue entry, one random pick, counted in
  ``injected`` under its parts' kinds joined by ``+`` (e.g.
  ``commit_then_drop+delayed_indexing``).
* ``lenient_search``: this search is answered like a server that does not know
  ``identifier`` or ``_tag`` and ignores ``Prefer: handling=strict`` (R4's
  lenient default): both are dropped from the criteria and from the ``self``
  link, the rest of the query is answered (see :func:`fault_for_this_request`);

Queued faults are taken first. Otherwise, when ``random`` is set, every request
matched by one of its ``kinds`` draws two numbers from ``random.Random(seed)``:
the first decides (``< rate``) whether a fault happens, the second picks which
matching kind. The same sequence of requests therefore gets the same faults on
every run.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sandbox.drift import Drift, parse_drift

FaultKind = Literal[
    "status",
    "commit_then_hang",
    "garbled_answer",
    "drop_identifier",
    "connection_reset",
    "commit_then_drop",
    "delayed_indexing",
    "stale_reads",
    "lenient_search",
    "commit_late",
    "combo",
]
KINDS: tuple[str, ...] = (
    "status",
    "commit_then_hang",
    "garbled_answer",
    "drop_identifier",
    "connection_reset",
    "commit_then_drop",
    "delayed_indexing",
    "stale_reads",
    "lenient_search",
    "commit_late",
    "combo",
)
TIMED_KINDS = ("commit_then_hang", "delayed_indexing", "stale_reads", "commit_late")
#: A mix of passing faults for seeded random injection (``random.kinds``): the EHR refuses, drops
#: the connection, commits then drops the answer, or indexes a write late. The chaos run draws
#: from these and harder ones (late commits, combos); the soak from these alone.
TRANSIENT_MIX: tuple[dict[str, Any], ...] = (
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 429, "retry_after": 1},
    {"kind": "connection_reset"},
    {"kind": "commit_then_drop", "method": "POST"},
    {"kind": "delayed_indexing", "seconds": 2, "method": "POST"},
)
#: Kinds that answer before the store is touched: nothing happens that another kind could change.
BEFORE_STORE_KINDS = frozenset({"status", "connection_reset"})
#: Kinds that decide how the answer to a committed request goes out: at most one per combo.
ANSWER_KINDS = frozenset({"commit_then_drop", "commit_then_hang", "garbled_answer"})


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    method: str | None = None
    type: str | None = None
    status: int = 503
    retry_after: int | None = None
    seconds: float = 30.0
    parts: tuple[Fault, ...] = ()
    """A ``combo``'s faults (each without matchers); empty for every other kind."""
    outcome: str | None = None
    """A ``status`` fault's own OperationOutcome (JSON text), answered as given."""

    @property
    def effects(self) -> tuple[Fault, ...]:
        """What happens to the request: a combo's parts, else the fault itself."""
        return self.parts if self.kind == "combo" else (self,)

    def effect(self, kind: str) -> Fault | None:
        """The part of this fault of that kind (the fault itself for a plain one), if any."""
        return next((f for f in self.effects if f.kind == kind), None)

    @property
    def label(self) -> str:
        """How ``injected`` counts it: the kind, or a combo's kinds joined by '+'."""
        return "+".join(f.kind for f in self.parts) if self.kind == "combo" else self.kind

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
            if self.outcome is not None:
                data["outcome"] = json.loads(self.outcome)
        if self.kind in TIMED_KINDS:
            data["seconds"] = self.seconds
        if self.kind == "combo":
            data["faults"] = [f.to_json() for f in self.parts]
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
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {list(KINDS)}")
    if kind == "combo":
        return _parse_combo(raw)
    unknown = set(raw) - {"kind", "method", "type", "status", "retry_after", "seconds", "outcome"}
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    method = _opt(raw, "method", str)
    status = _opt(raw, "status", int)
    if status is not None and not 400 <= status <= 599:
        raise ValueError("fault status must be 400..599")
    outcome = raw.get("outcome")
    if outcome is not None and (
        kind != "status"
        or not isinstance(outcome, dict)
        or outcome.get("resourceType") != "OperationOutcome"
    ):
        raise ValueError("fault outcome is an OperationOutcome, for a status fault")
    return Fault(
        kind=cast(FaultKind, kind),
        method=method.upper() if method else None,
        type=_opt(raw, "type", str),
        status=503 if status is None else status,
        retry_after=_opt(raw, "retry_after", int),
        seconds=_seconds(raw.get("seconds"), "fault 'seconds'", 30.0),
        outcome=None if outcome is None else json.dumps(outcome),
    )


def _parse_combo(raw: dict[str, Any]) -> Fault:
    unknown = set(raw) - {"kind", "method", "type", "faults"}
    if unknown:
        raise ValueError(f"unknown combo fields: {sorted(unknown)}")
    items = raw.get("faults")
    if not isinstance(items, list) or len(items) < 2:
        raise ValueError("combo.faults must be a list of two or more faults")
    parts = tuple(parse_fault(item) for item in items)
    kinds = [part.kind for part in parts]
    if any(part.method is not None or part.type is not None for part in parts):
        raise ValueError("a combo's faults take no method or type (the combo's do)")
    if "combo" in kinds or BEFORE_STORE_KINDS & set(kinds):
        raise ValueError("a combo cannot hold combo, status or connection_reset")
    if len(set(kinds)) != len(kinds) or len(ANSWER_KINDS & set(kinds)) > 1:
        raise ValueError("a combo's kinds differ, with one of commit_then_drop/commit_then_hang")
    method = _opt(raw, "method", str)
    return Fault(
        kind="combo",
        method=method.upper() if method else None,
        type=_opt(raw, "type", str),
        parts=parts,
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


#: The fault the registry handed to the request being served (None: none). Set on every take,
#: which runs once per FHIR request before its interaction, in the request's task, so an
#: interaction can see its fault without the pipeline passing it along (``lenient_search``).
_TAKEN: ContextVar[Fault | None] = ContextVar("sandbox_fault_taken", default=None)


def fault_for_this_request() -> Fault | None:
    """The fault taken for the FHIR request being served, if any."""
    return _TAKEN.get()


def note_taken(fault: Fault | None) -> None:
    _TAKEN.set(fault)
