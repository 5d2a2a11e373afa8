"""SMART Backend Services: the token endpoint's assertion checks, bearer tokens, scopes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from support.sandbox_process import SigningKey, observation, poll_until, token_form


@dataclass
class AuthTenant:
    name: str
    token_url: str
    rsa: SigningKey
    ec: SigningKey


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return SigningKey("RS384"), SigningKey("ES384")


@pytest.fixture
def auth_tenant(
    client: httpx.Client, tenant: str, keys: tuple[SigningKey, SigningKey]
) -> Iterator[AuthTenant]:
    rsa, ec = keys
    config = {
        "enabled": True,
        "token_ttl_seconds": 300,
        "clients": [
            {
                "client_id": "wb-rsa",
                "jwks": {"keys": [rsa.public_jwk()]},
                "scopes": ["system/Observation.crus", "system/Patient.read"],
            },
            {
                "client_id": "wb-ec",
                "jwks": {"keys": [ec.public_jwk()]},
                "scopes": ["system/Observation.c"],
            },
        ],
    }
    r = client.post(f"/_admin/tenants/{tenant}/auth", json=config)
    assert r.status_code == 200, r.text
    assert [c["client_id"] for c in r.json()["clients"]] == ["wb-rsa", "wb-ec"]
    token_url = f"{str(client.base_url).rstrip('/')}/fhir/{tenant}/auth/token"
    yield AuthTenant(tenant, token_url, rsa, ec)


def _token(
    client: httpx.Client, t: AuthTenant, scope: str, key: SigningKey | None = None, **kw: object
) -> httpx.Response:
    key = key or t.rsa
    client_id = "wb-rsa" if key is t.rsa else "wb-ec"
    assertion = key.assertion(client_id, t.token_url, **kw)  # type: ignore[arg-type]
    return client.post(f"/fhir/{t.name}/auth/token", data=token_form(assertion, scope))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_smart_configuration(client: httpx.Client, auth_tenant: AuthTenant) -> None:
    cfg = client.get(f"/fhir/{auth_tenant.name}/.well-known/smart-configuration").json()
    assert cfg["token_endpoint"] == auth_tenant.token_url
    assert cfg["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(cfg["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "system/Observation.cruds" in cfg["scopes_supported"]
    meta = client.get(f"/fhir/{auth_tenant.name}/metadata")
    assert meta.status_code == 200  # discovery needs no token
    assert meta.json()["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"] == (
        auth_tenant.token_url
    )


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_rs384_and_es384_assertions_get_tokens(
    client: httpx.Client, auth_tenant: AuthTenant, alg: str
) -> None:
    key = auth_tenant.rsa if alg == "RS384" else auth_tenant.ec
    r = _token(client, auth_tenant, "system/Observation.c", key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/Observation.c"
    assert r.headers["cache-control"] == "no-store"
    created = client.post(
        f"/fhir/{auth_tenant.name}/Observation",
        json=observation(),
        headers=_bearer(body["access_token"]),
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong aud", {"aud": "https://elsewhere.example/token"}),
        ("exp too far", {"lifetime": 600}),
        ("expired", {"lifetime": -60}),
        ("sub differs", {"sub": "someone-else"}),
        ("jti too long", {"jti": "x" * 152}),
        ("unknown kid", {"headers": {"kid": "not-registered"}}),
        ("HS/RS256 alg", {"alg": "RS256"}),
    ],
)
def test_bad_assertions_are_invalid_client(
    client: httpx.Client, auth_tenant: AuthTenant, case: str, kwargs: dict[str, object]
) -> None:
    aud = str(kwargs.pop("aud", auth_tenant.token_url))
    assertion = auth_tenant.rsa.assertion("wb-rsa", aud, **kwargs)  # type: ignore[arg-type]
    r = client.post(
        f"/fhir/{auth_tenant.name}/auth/token",
        data=token_form(assertion, "system/Observation.c"),
    )
    assert r.status_code == 401, case
    assert r.json()["error"] == "invalid_client"


def test_bad_signature_unknown_client_and_replayed_jti(
    client: httpx.Client, auth_tenant: AuthTenant
) -> None:
    intruder = SigningKey("RS384", kid=auth_tenant.rsa.kid)  # same kid, other key
    forged = intruder.assertion("wb-rsa", auth_tenant.token_url)
    url = f"/fhir/{auth_tenant.name}/auth/token"
    r = client.post(url, data=token_form(forged, "system/Observation.c"))
    assert r.status_code == 401 and "signature" in r.json()["error_description"]
    stranger = auth_tenant.rsa.assertion("nobody", auth_tenant.token_url)
    assert client.post(url, data=token_form(stranger, "system/Observation.c")).status_code == 401

    assertion = auth_tenant.rsa.assertion("wb-rsa", auth_tenant.token_url, jti="once-only")
    assert client.post(url, data=token_form(assertion, "system/Observation.c")).status_code == 200
    replay = client.post(url, data=token_form(assertion, "system/Observation.c"))
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]


def test_token_request_shape_errors(client: httpx.Client, auth_tenant: AuthTenant) -> None:
    url = f"/fhir/{auth_tenant.name}/auth/token"
    good = token_form(auth_tenant.rsa.assertion("wb-rsa", auth_tenant.token_url), "system/x.c")
    assert client.post(url, data={**good, "grant_type": "password"}).json()["error"] == (
        "unsupported_grant_type"
    )
    assert client.post(url, data={**good, "client_assertion_type": "x"}).status_code == 400
    no_scope = {k: v for k, v in good.items() if k != "scope"}
    assert client.post(url, data=no_scope).json()["error"] == "invalid_request"
    junk = client.post(url, data={**good, "client_assertion": "not-a-jwt"})
    assert junk.status_code == 401


def test_granted_scopes_are_requested_intersect_allowed(
    client: httpx.Client, auth_tenant: AuthTenant
) -> None:
    r = _token(client, auth_tenant, "system/Observation.cr system/Observation.d launch")
    assert r.json()["scope"] == "system/Observation.cr"
    none = _token(client, auth_tenant, "system/Condition.c system/Observation.uc")
    assert none.status_code == 400 and none.json()["error"] == "invalid_scope"
    v1 = _token(client, auth_tenant, "system/Patient.read")
    assert v1.json()["scope"] == "system/Patient.read"
    ec_only_c = _token(client, auth_tenant, "system/Observation.read", auth_tenant.ec)
    assert ec_only_c.status_code == 400


def test_scopes_are_enforced_v1_and_v2(client: httpx.Client, auth_tenant: AuthTenant) -> None:
    base = f"/fhir/{auth_tenant.name}"
    create_only = _token(client, auth_tenant, "system/Observation.c").json()["access_token"]
    created = client.post(f"{base}/Observation", json=observation(), headers=_bearer(create_only))
    rid = created.json()["id"]
    denied = client.get(f"{base}/Observation/{rid}", headers=_bearer(create_only))
    assert denied.status_code == 403
    assert denied.json()["resourceType"] == "OperationOutcome"
    assert "insufficient_scope" in denied.headers["www-authenticate"]
    assert client.get(f"{base}/Observation", headers=_bearer(create_only)).status_code == 403

    rs = _token(client, auth_tenant, "system/Observation.rs").json()["access_token"]
    assert client.get(f"{base}/Observation/{rid}", headers=_bearer(rs)).status_code == 200
    assert client.get(f"{base}/Observation", headers=_bearer(rs)).status_code == 200
    assert (
        client.post(f"{base}/Observation", json=observation(), headers=_bearer(rs)).status_code
        == 403
    )
    body = created.json()
    assert (
        client.put(f"{base}/Observation/{rid}", json=body, headers=_bearer(rs)).status_code == 403
    )

    v1 = _token(client, auth_tenant, "system/Patient.read").json()["access_token"]
    assert client.get(f"{base}/Patient", headers=_bearer(v1)).status_code == 200
    patient = client.post(f"{base}/Patient", json={"resourceType": "Patient"}, headers=_bearer(v1))
    assert patient.status_code == 403
    assert client.get(f"{base}/Observation", headers=_bearer(v1)).status_code == 403

    # transaction entries are checked one by one: all or nothing
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    crus = _token(client, auth_tenant, "system/Observation.crus").json()["access_token"]
    assert client.post(base, json=bundle, headers=_bearer(crus)).status_code == 403


def test_missing_unknown_revoked_and_expired_tokens_are_401(
    client: httpx.Client, auth_tenant: AuthTenant
) -> None:
    url = f"/fhir/{auth_tenant.name}/Observation"
    missing = client.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["resourceType"] == "OperationOutcome"
    unknown = client.get(url, headers=_bearer("nope"))
    assert (
        unknown.status_code == 401
        and 'error="invalid_token"' in unknown.headers["www-authenticate"]
    )

    token = _token(client, auth_tenant, "system/Observation.rs").json()["access_token"]
    assert client.get(url, headers=_bearer(token)).status_code == 200
    revoked = client.post(f"/_admin/tenants/{auth_tenant.name}/revoke-tokens")
    assert revoked.json()["revoked"] >= 1
    assert client.get(url, headers=_bearer(token)).status_code == 401

    cfg = client.get(f"/_admin/tenants/{auth_tenant.name}/auth").json()
    assert cfg["enabled"] is True
    short = {
        "enabled": True,
        "token_ttl_seconds": 1,
        "clients": [
            {
                "client_id": "wb-rsa",
                "jwks": {"keys": [auth_tenant.rsa.public_jwk()]},
                "scopes": ["system/*.rs"],
            }
        ],
    }
    client.post(f"/_admin/tenants/{auth_tenant.name}/auth", json=short)
    issued = _token(client, auth_tenant, "system/Observation.rs")
    assert issued.json()["expires_in"] == 1
    token = issued.json()["access_token"]
    assert client.get(url, headers=_bearer(token)).status_code == 200
    started = time.monotonic()
    expired = poll_until(
        lambda: (r := client.get(url, headers=_bearer(token))).status_code == 401 and r, timeout=5
    )
    assert time.monotonic() - started < 3
    assert "expired" in expired.headers["www-authenticate"]


def test_auth_is_off_unless_configured(client: httpx.Client) -> None:
    assert client.get("/fhir/demo-r4/Observation").status_code == 200
    assert client.get("/_admin/tenants/demo-r4/auth").json()["enabled"] is False


def test_admin_auth_rejects_private_and_malformed_keys(
    client: httpx.Client, tenant: str, keys: tuple[SigningKey, SigningKey]
) -> None:
    from jwt.algorithms import RSAAlgorithm

    private = RSAAlgorithm.to_jwk(keys[0].private, as_dict=True)
    bad_configs = [
        {"clients": [{"client_id": "a", "jwks": {"keys": [private]}}]},
        {"clients": [{"client_id": "a", "jwks": {"keys": [{"kty": "RSA"}]}}]},
        {"clients": [{"client_id": "a"}]},
        {
            "clients": [
                {"client_id": "a", "jwks": {"keys": [keys[0].public_jwk()]}, "scopes": ["x"]}
            ]
        },
        {"token_ttl_seconds": 0},
    ]
    for cfg in bad_configs:
        assert client.post(f"/_admin/tenants/{tenant}/auth", json=cfg).status_code == 400
