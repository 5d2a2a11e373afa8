"""Resources put into the sandbox's chart behind writeback's back, as an EHR user or a late
commit would, and read back from it."""

from __future__ import annotations

from typing import Any

import httpx

from support.sandbox_process import SandboxProcess


async def stored(ehr: SandboxProcess, tenant: str, reference: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{tenant}") as fhir:
        answer = await fhir.get(reference)
        assert answer.status_code == 200, reference
        resource: dict[str, Any] = answer.json()
        return resource


async def planted_copy(ehr: SandboxProcess, tenant: str, reference: str) -> str:
    """A second copy of a written resource, identifier and all (as a late commit leaves)."""
    original = await stored(ehr, tenant, reference)
    body = {k: v for k, v in original.items() if k not in ("id", "meta")}
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{tenant}") as fhir:
        answer = await fhir.post(f"/{original['resourceType']}", json=body)
        assert answer.status_code == 201
        return f"{original['resourceType']}/{answer.json()['id']}"
