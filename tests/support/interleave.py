"""A real race between our read and our write: the worker's EHR client runs another user's edit
just before our PUT or PATCH leaves, and keeps every write as it was sent (method, If-Match,
body), so that a test can say what the product sent and what the EHR made of it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Edit = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SentWrite:
    method: str
    path: str
    if_match: str | None
    body: Any


@dataclass
class Interleave:
    writes: list[SentWrite] = field(default_factory=list)
    _edits: list[Edit] = field(default_factory=list)

    def before_writes(self, edit: Edit, times: int = 1) -> None:
        """Run ``edit`` (committed at the EHR) before each of our next ``times`` writes."""
        self._edits = [edit] * times

    async def hook(self, request: httpx.Request) -> None:
        if request.method not in ("PUT", "PATCH"):
            return
        self.writes.append(
            SentWrite(
                request.method,
                request.url.path,
                request.headers.get("If-Match"),
                json.loads(request.content) if request.content else None,
            )
        )
        if self._edits:
            await self._edits.pop(0)()

    def client(self) -> httpx.AsyncClient:
        """An EHR client for a worker (or an EhrClient) that interleaves."""
        return httpx.AsyncClient(event_hooks={"request": [self.hook]}, follow_redirects=False)


async def edit_now(
    http: httpx.AsyncClient, tenant: str, reference: str, change: Callable[[dict[str, Any]], None]
) -> int:
    """Another user (a clinician's app, with If-Match as a careful client sends it) changes the
    current version of ``reference``; returns the version that made."""
    current = (await http.get(f"/fhir/{tenant}/{reference}")).json()
    change(current)
    response = await http.put(
        f"/fhir/{tenant}/{reference}",
        json=current,
        headers={"If-Match": f'W/"{current["meta"]["versionId"]}"'},
    )
    assert response.status_code == 200, response.text
    return int(response.headers["ETag"].removeprefix('W/"').rstrip('"'))  # Cerner: no body


async def our_write_answers(http: httpx.AsyncClient, tenant: str, reference: str) -> list[int]:
    """The statuses the EHR answered to our writes of ``reference``, oldest first (the sandbox's
    request log: the PUTs and PATCHes carrying our X-Request-Id)."""
    logged = (await http.get(f"/_admin/requests/{tenant}")).json()["requests"]
    return [
        int(r["status"])
        for r in logged
        if r["method"] in ("PUT", "PATCH")
        and r["path"].endswith(f"/{reference}")
        and r["request_id"]
    ]
