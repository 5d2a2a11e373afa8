"""Our SMART Backend Services client against the sandbox's real token endpoint (acceptance 3):
it never produces a reused ``jti`` or an assertion living longer than 5 minutes, asks for the
least scope of each request, and refreshes a token before it expires, once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from support.sandbox_process import SandboxProcess

from activities.smart_auth import EXPIRY_MARGIN, SmartBackendAuth
from adapters.tenants import Tenant, TenantRegistry

SCOPES = {"v2": ["system/Observation.cruds"], "v1": ["system/Observation.*"]}


class Clock:
    """Our client's clock, set back a little: the sandbox checks assertion times against the
    real clock (5 s leeway), so the fake one may not run ahead of it."""

    def __init__(self, behind: float) -> None:
        self.now = time.time() - behind

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def token_requests(
    ehr: SandboxProcess,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, str]]]]:
    """An HTTP client that keeps the form of every token request it sends."""
    seen: list[dict[str, str]] = []

    async def keep(request: httpx.Request) -> None:
        if request.url.path.endswith("/auth/token"):
            seen.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})

    async with httpx.AsyncClient(event_hooks={"request": [keep]}, timeout=10) as http:
        yield http, seen


async def registered(
    ehr: SandboxProcess,
    tenants: TenantRegistry,
    smart_jwks: tuple[Path, dict[str, Any]],
    tenant_id: str,
    ttl: float = 300,
) -> Tenant:
    tenant = tenants.get(tenant_id)
    assert tenant is not None and tenant.auth.client_id
    client_id = tenant.auth.client_id
    async with httpx.AsyncClient(base_url=ehr.url) as admin:
        response = await admin.post(
            f"/_admin/tenants/{tenant_id}/auth",
            json={
                "enabled": True,
                "token_ttl_seconds": ttl,
                "clients": [
                    {
                        "client_id": client_id,
                        "jwks": {"keys": [smart_jwks[1][client_id]]},
                        "scopes": SCOPES[tenant.auth.scope_style],
                    }
                ],
            },
        )
    assert response.status_code == 200, response.text
    return tenant


@pytest.mark.parametrize("tenant_id", ["smart-rs", "smart-es"])
async def test_assertions_are_never_reused_and_live_at_most_five_minutes(
    ehr: SandboxProcess,
    tenants: TenantRegistry,
    smart_jwks: tuple[Path, dict[str, Any]],
    token_requests: tuple[httpx.AsyncClient, list[dict[str, str]]],
    tenant_id: str,
) -> None:
    tenant = await registered(ehr, tenants, smart_jwks, tenant_id)
    http, seen = token_requests
    auth = SmartBackendAuth(http)
    for _ in range(20):
        await auth.authorization(tenant, "POST", "Observation")
        auth.forget(tenant)  # as after a 401: the next request needs a new token

    assertions = [form["client_assertion"] for form in seen]
    assert len(assertions) == 20  # the sandbox accepted every one (else authorization raised)
    claims = [jwt.decode(a, options={"verify_signature": False}) for a in assertions]
    jtis = [c["jti"] for c in claims]
    assert len(set(jtis)) == len(jtis)
    assert all(len(jti) <= 151 for jti in jtis)
    assert all(0 < c["exp"] - c["iat"] <= 300 for c in claims)
    headers = [jwt.get_unverified_header(a) for a in assertions]
    assert {(h["alg"], h["kid"]) for h in headers} == {
        (tenant.auth.algorithm, f"{tenant.auth.client_id}-1")
    }


@pytest.mark.parametrize(
    ("tenant_id", "expected"),
    [
        (
            "smart-rs",
            [
                "system/Observation.c",
                "system/Observation.u",
                "system/Observation.r",
                "system/Observation.s",
            ],
        ),
        # v1 has one scope for create and update, one for read and search: a token each
        ("smart-es", ["system/Observation.write", "system/Observation.read"]),
    ],
)
async def test_each_request_asks_for_its_least_scope(
    ehr: SandboxProcess,
    tenants: TenantRegistry,
    smart_jwks: tuple[Path, dict[str, Any]],
    token_requests: tuple[httpx.AsyncClient, list[dict[str, str]]],
    tenant_id: str,
    expected: list[str],
) -> None:
    tenant = await registered(ehr, tenants, smart_jwks, tenant_id)
    http, seen = token_requests
    auth = SmartBackendAuth(http)
    requests = [
        ("POST", "Observation"),
        ("PUT", "Observation/1"),
        ("GET", "Observation/1"),
        ("GET", "Observation?identifier=x"),
    ]
    for method, path in requests:
        await auth.authorization(tenant, method, path)
    assert [form["scope"] for form in seen] == expected


async def test_a_token_is_refreshed_once_before_it_expires(
    ehr: SandboxProcess,
    tenants: TenantRegistry,
    smart_jwks: tuple[Path, dict[str, Any]],
    token_requests: tuple[httpx.AsyncClient, list[dict[str, str]]],
) -> None:
    ttl = 5
    refresh_after = ttl * (1 - EXPIRY_MARGIN)
    tenant = await registered(ehr, tenants, smart_jwks, "smart-rs", ttl=ttl)
    http, seen = token_requests
    clock = Clock(behind=refresh_after)
    auth = SmartBackendAuth(http, clock=clock)
    first = await auth.authorization(tenant, "POST", "Observation")
    clock.now += refresh_after - 0.1
    assert await auth.authorization(tenant, "POST", "Observation") == first  # still cached
    clock.now += 0.2  # within the margin before expiry
    renewed = [await auth.authorization(tenant, "POST", "Observation") for _ in range(3)]
    assert renewed[0] != first
    assert all(header == renewed[0] for header in renewed)  # refreshed once, then cached
    assert len(seen) == 2
