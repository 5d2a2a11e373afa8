"""What the sandbox EHR saw: its admin API (faults, per-second request stats) and, for counting
resources, its SQLite file read directly (like tests/support/audit.py), not through the product."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM


@dataclass(frozen=True)
class RequestStats:
    """FHIR requests one tenant received, bucketed by the epoch second they arrived in."""

    total: int
    by_method: dict[str, int]
    per_second: list[tuple[int, int]]  # (epoch second, requests), oldest first, gaps omitted

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RequestStats:
        return cls(
            total=int(raw["total"]),
            by_method={str(k): int(v) for k, v in raw["by_method"].items()},
            per_second=[(int(b["t"]), int(b["total"])) for b in raw["per_second"]],
        )

    def since(self, epoch: float) -> RequestStats:
        """Only the seconds from ``epoch`` on (by_method is then unknown and left empty)."""
        kept = [(t, n) for t, n in self.per_second if t >= int(epoch)]
        return RequestStats(sum(n for _, n in kept), {}, kept)

    @property
    def peak(self) -> int:
        return max((n for _, n in self.per_second), default=0)

    def above(self, limit: float) -> tuple[int, int]:
        """(seconds with more than ``limit`` requests, requests beyond ``limit`` in those)."""
        over = [n - limit for _, n in self.per_second if n > limit]
        return len(over), int(sum(over))

    def steady_rate(self) -> float:
        """Mean requests/s over the whole seconds strictly between the first and the last busy
        second (those two are partial), counting idle seconds in between as 0."""
        if len(self.per_second) < 3:
            span = max(1, len(self.per_second))
            return self.total / span
        first, last = self.per_second[0][0], self.per_second[-1][0]
        inner = sum(n for t, n in self.per_second if first < t < last)
        return inner / (last - first - 1)

    def series(self, limit: int = 40) -> str:
        """Requests per second from the first busy second on, idle seconds as 0: ``14 8 12…``."""
        if not self.per_second:
            return "(none)"
        counts = dict(self.per_second)
        first = self.per_second[0][0]
        values = [counts.get(first + i, 0) for i in range(self.busy_span())]
        shown = " ".join(str(v) for v in values[:limit])
        return shown + (" …" if len(values) > limit else "")

    def busy_span(self) -> int:
        """Seconds from the first to the last second with requests, both included."""
        if not self.per_second:
            return 0
        return self.per_second[-1][0] - self.per_second[0][0] + 1


class SandboxAdmin:
    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def reset(self, tenant: str) -> None:
        """The tenant's data, faults and stats back to the start state."""
        (await self._http.post(f"/_admin/reset/{tenant}")).raise_for_status()

    async def set_faults(self, tenant: str, config: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(f"/_admin/faults/{tenant}", json=config)
        if response.status_code != 200:
            raise RuntimeError(f"sandbox refused faults {config}: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    async def clear_faults(self, tenant: str) -> None:
        (await self._http.delete(f"/_admin/faults/{tenant}")).raise_for_status()

    async def injected(self, tenant: str) -> dict[str, int]:
        """Faults the sandbox has injected for the tenant so far, by kind."""
        response = await self._http.get(f"/_admin/faults/{tenant}")
        response.raise_for_status()
        return {str(k): int(v) for k, v in response.json().get("injected", {}).items()}

    async def in_flight(self) -> dict[str, int]:
        """Requests being served now, by tenant (tenants with none are left out)."""
        response = await self._http.get("/_admin/in-flight")
        response.raise_for_status()
        return {str(k): int(v) for k, v in response.json().items()}

    async def stats(self, tenant: str) -> RequestStats:
        response = await self._http.get(f"/_admin/stats/{tenant}")
        if response.status_code == 404:
            raise RuntimeError("this sandbox has no GET /_admin/stats/{tenant}")
        response.raise_for_status()
        return RequestStats.from_json(response.json())


def resources_per_command(db: Path, tenant: str, key_prefix: str) -> Counter[str]:
    """Distinct resources per command identifier ``{tenant}:{key_prefix}...`` in the sandbox's
    SQLite file (see sandbox/store.py: ``resource_tokens``)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT value, COUNT(DISTINCT id) FROM resource_tokens "
            "WHERE tenant = ? AND param = 'identifier' AND system = ? AND value LIKE ? "
            "GROUP BY value",
            (tenant, COMMAND_IDENTIFIER_SYSTEM, f"{tenant}:{key_prefix}%"),
        ).fetchall()
    return Counter({str(value): int(count) for value, count in rows})
