"""What the Temporal dev server did and holds, read from outside the product: the RPCs its
frontend answered (its Prometheus ``/metrics``), the size of its SQLite database (read-only, by
table, with SQLite's ``dbstat``), and workflow counts from its visibility store."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.api.workflowservice.v1 import GetClusterInfoRequest
from temporalio.client import Client

_REQUESTS = re.compile(r"^service_requests\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


#: An RPC only this module makes (no namespace: counted under ``_unknown_``), the marker that
#: tells the counters are up to date.
MARKER = ("_unknown_", "GetClusterInfo")


async def _frontend_requests(metrics_url: str) -> Counter[tuple[str, str]]:
    """Every frontend RPC counter, by (namespace, operation)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(metrics_url)
    response.raise_for_status()
    counts: Counter[tuple[str, str]] = Counter()
    for found in _REQUESTS.finditer(response.text):
        labels = dict(_LABEL.findall(found.group("labels")))
        if labels.get("service_name") == "frontend":
            key = (labels.get("namespace", "?"), labels.get("operation", "?"))
            counts[key] += int(float(found.group("value")))
    return counts


class FrontendRequests:
    """RPCs the frontend has answered in the client's namespace, by operation (cumulative: take
    the difference of two readings; long polls count when they return).

    The server publishes its counters about a second late, so a reading first makes a marker
    RPC (``GetClusterInfo``, which nothing else calls) and reads until the marker shows: then
    every RPC made before the reading is in it."""

    def __init__(self, client: Client, metrics_url: str) -> None:
        self._client = client
        self._url = metrics_url
        self._markers_sent = 0
        self._markers_before: int | None = None

    async def read(self, within: float = 10.0) -> Counter[str]:
        if self._markers_before is None:
            self._markers_before = (await _frontend_requests(self._url))[MARKER]
        await self._client.workflow_service.get_cluster_info(GetClusterInfoRequest())
        self._markers_sent += 1
        deadline = time.monotonic() + within
        while True:
            counts = await _frontend_requests(self._url)
            if counts[MARKER] >= self._markers_before + self._markers_sent:
                namespace = self._client.namespace
                return Counter({op: n for (ns, op), n in counts.items() if ns == namespace})
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server's metrics did not show the marker in {within}s")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class DbFootprint:
    """The used part of the SQLite database (pages in use, WAL included), and rows of the tables
    that say how much is open."""

    used_bytes: int
    by_table: dict[str, int]  # bytes per table and index
    rows: dict[str, int]

    def growth(self, earlier: DbFootprint) -> dict[str, int]:
        """Bytes gained per table since ``earlier``, largest first (tables that grew only)."""
        grown = {
            name: size - earlier.by_table.get(name, 0)
            for name, size in self.by_table.items()
            if size > earlier.by_table.get(name, 0)
        }
        return dict(sorted(grown.items(), key=lambda item: -item[1]))


#: Rows per open workflow (mutable state, pending timers) next to the history every write keeps.
_COUNTED = ("executions", "current_executions", "timer_info_maps", "timer_tasks", "history_node")


def db_footprint(db: Path) -> DbFootprint:
    """Read the server's database read-only while it runs (WAL mode: the reader sees the last
    committed state, WAL frames included)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        by_table = {
            str(name): int(size)
            for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
        }
        rows = {
            table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in _COUNTED
        }
    return DbFootprint((pages - free) * page_size, by_table, rows)


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count
