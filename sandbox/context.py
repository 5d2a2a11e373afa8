"""What one FHIR interaction needs to know about its tenant and the faults in effect."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sandbox.drift import Drift
from sandbox.paging import PagingStyle
from sandbox.personalities import Personality


class StaleReads:
    """After an update, reads of that resource return the previous version for a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[float, int]] = {}

    def note(self, key: tuple[str, str, str], previous: int, until: float) -> None:
        with self._lock:
            self._entries[key] = (until, previous)

    def version(self, key: tuple[str, str, str], now: float) -> int | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry[0]:
                del self._entries[key]
                return None
            return entry[1]

    def clear(self, tenant: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if tenant is None or k[0] == tenant]:
                del self._entries[key]


def _allow_all(rtype: str, letter: str) -> None:
    return None


@dataclass
class Env:
    tenant: str
    p: Personality
    base: str
    """``http://host:port/fhir/{tenant}``"""
    now: float
    """Epoch seconds at the start of the request."""
    stale: StaleReads
    prefer: dict[str, str] = field(default_factory=dict)
    drift: Drift = field(default_factory=Drift)
    allowed_identifier_systems: Collection[str] | None = None
    drop_identifier: bool = False
    index_delay: float = 0.0
    stale_seconds: float = 0.0
    rejects_duplicate_vitals: bool = False
    paging: PagingStyle = "offset"
    """How searchset ``next``/``previous`` links look (tenant setting, :mod:`sandbox.paging`)."""
    authorize: Callable[[str, str], None] = _allow_all
    """``authorize(rtype, letter)`` raises a 403 FhirError when the token's scopes lack it."""

    @property
    def strict(self) -> bool:
        return self.prefer.get("handling") == "strict"
