"""The EHR requests behind each write, from the sandbox's request log (each request carries the
X-Request-Id ``{workflow id}/{step}/{n}`` the product sends, and the log names the fault it met):
the evidence printed next to a duplicate. The log keeps the last 1000 requests per tenant, so it is
collected every few seconds while the run goes on."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from support.audit import Chart

COLLECT_EVERY = 3.0


class Trails:
    def __init__(self, ehr: httpx.AsyncClient, tenants: list[str]) -> None:
        self._ehr = ehr
        self._tenants = tenants
        self._seen: set[tuple[Any, ...]] = set()
        self.by_write: dict[str, list[dict[str, Any]]] = {}

    async def collect(self) -> None:
        for tenant in self._tenants:
            logged = (await self._ehr.get(f"/_admin/requests/{tenant}")).json()["requests"]
            for entry in logged:
                key = (entry["t"], entry["method"], entry["path"], entry["request_id"])
                if key in self._seen or not entry["request_id"]:
                    continue
                self._seen.add(key)
                write = str(entry["request_id"]).split("/", 1)[0]
                self.by_write.setdefault(write, []).append(entry)

    async def keep_collecting(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                await self.collect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), COLLECT_EVERY)

    def trail(self, workflow_id: str) -> str:
        """'POST Observation 500 [commit_then_drop] +0.0s; GET Observation 200 +3.1s; …'"""
        entries = sorted(self.by_write.get(workflow_id, []), key=lambda e: e["t"])
        if not entries:
            return "(no requests logged)"
        start = entries[0]["t"]
        parts = []
        for e in entries:
            path = e["path"].split("/")
            what = path[3] if path[1] == "fhir" and len(path) > 3 else path[-1]
            fault = f" [{e['fault']} answered after {e['seconds']:.1f}s]" if e["fault"] else ""
            parts.append(f"{e['method']} {what} {e['status']}{fault} +{e['t'] - start:.1f}s")
        return "; ".join(parts)


def copies_evidence(chart: Chart, copies: list[str]) -> str:
    """When each copy was stored and how long search did not show it."""
    parts = []
    for reference in copies:
        stored = (chart.bodies[reference].get("meta") or {}).get("lastUpdated", "?")
        lag = chart.searchable_after.get(reference)
        hidden = "held from search" if lag is None else f"searchable after {max(lag, 0):.1f}s"
        parts.append(f"{reference} stored {str(stored)[11:23]} {hidden}")
    return "; ".join(parts)
