"""SMART Backend Services against the sandbox's token endpoint: signed assertions (RS384 and
ES384), least scope per request (v2 and v1 syntax), one refresh on 401, and a refused scope
rejected without retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end

from workers.client import WritebackClient
from workflows.contract import WriteState

ALL_OBSERVATION = {"v2": ["system/Observation.cruds"], "v1": ["system/Observation.*"]}


async def register(
    admin: httpx.AsyncClient,
    tenant: str,
    client_id: str,
    jwk: dict[str, Any],
    scopes: list[str],
    ttl: float = 300,
) -> None:
    response = await admin.post(
        f"/_admin/tenants/{tenant}/auth",
        json={
            "enabled": True,
            "token_ttl_seconds": ttl,
            "clients": [{"client_id": client_id, "jwks": {"keys": [jwk]}, "scopes": scopes}],
        },
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def admin(ehr: SandboxProcess) -> Any:
    async with httpx.AsyncClient(base_url=ehr.url, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("tenant", "client_id", "style"),
    [
        ("smart-rs", "wb-rs", "v2"),
        ("smart-es", "wb-es", "v1"),
    ],
)
async def test_writes_with_signed_assertions_and_scoped_tokens(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    admin: httpx.AsyncClient,
    smart_jwks: tuple[Path, dict[str, Any]],
    tenant: str,
    client_id: str,
    style: str,
    key: str,
) -> None:
    await register(admin, tenant, client_id, smart_jwks[1][client_id], ALL_OBSERVATION[style])
    cmd = command(tenant, key)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1
    unauthenticated = await admin.get(f"/fhir/{tenant}/{status.resource}")
    assert unauthenticated.status_code == 401  # the EHR really required the tokens


async def test_a_revoked_token_is_refreshed_once_and_the_write_succeeds(
    writeback: WritebackClient,
    admin: httpx.AsyncClient,
    smart_jwks: tuple[Path, dict[str, Any]],
    key: str,
) -> None:
    await register(admin, "smart-rs", "wb-rs", smart_jwks[1]["wb-rs"], ALL_OBSERVATION["v2"])
    first = await run_to_end(writeback, command("smart-rs", f"{key}-a"))
    assert first.state is WriteState.VERIFIED
    revoked = await admin.post("/_admin/tenants/smart-rs/revoke-tokens", json={})
    assert revoked.json()["revoked"] >= 1  # our cached tokens are now dead: the EHR answers 401

    second = await run_to_end(writeback, command("smart-rs", f"{key}-b"))
    assert second.state is WriteState.VERIFIED
    assert second.attempts == 1  # refreshed inside the attempt, not by a retry


async def test_a_scope_the_ehr_will_not_grant_is_rejected_without_retry(
    writeback: WritebackClient,
    admin: httpx.AsyncClient,
    smart_jwks: tuple[Path, dict[str, Any]],
    key: str,
) -> None:
    # registered to read and search only: a create needs system/Observation.c
    await register(
        admin, "smart-narrow", "wb-nc", smart_jwks[1]["wb-nc"], ["system/Observation.rs"]
    )
    status = await run_to_end(writeback, command("smart-narrow", key))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "authorization"
    assert status.attempts == 1
    assert "system/Observation.c" in (status.reason or "")


async def test_an_unregistered_key_is_refused(
    writeback: WritebackClient,
    admin: httpx.AsyncClient,
    smart_jwks: tuple[Path, dict[str, Any]],
    key: str,
) -> None:
    # the EHR knows wb-rs by the ES key of another client: our RS384 assertion cannot verify
    await register(admin, "smart-rs", "wb-rs", smart_jwks[1]["wb-es"], ALL_OBSERVATION["v2"])
    status = await run_to_end(writeback, command("smart-rs", key))
    assert status.state is WriteState.REJECTED
    assert status.error_class == "authorization"
    assert "invalid_client" in (status.reason or "")


async def test_an_unavailable_smart_discovery_is_retried_not_a_rejection(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    admin: httpx.AsyncClient,
    faults: httpx.AsyncClient,
    smart_jwks: tuple[Path, dict[str, Any]],
    key: str,
) -> None:
    """The EHR's .well-known/smart-configuration answers 503 once: the server said "not now",
    which is transient (retried), not an authorization failure that rejects the write."""
    await register(admin, "smart-rs", "wb-rs", smart_jwks[1]["wb-rs"], ALL_OBSERVATION["v2"])
    unavailable = {"kind": "status", "status": 503, "type": "smart-configuration"}
    await faults.post("/_admin/faults/smart-rs", json={"queue": [unavailable]})
    cmd = command("smart-rs", key)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.ehr_log[0].outcome.startswith("transient: SMART configuration")
    assert resources_for_command(ehr.db, "smart-rs", cmd.command_identifier) == 1
