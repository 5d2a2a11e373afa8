"""The HTTP API's door (workers/api/auth.py, rate_limit.py): SMART scopes, the client's tenants,
bearer tokens against the configured issuer, audience and JWKS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.api_process import write_api_config

from workers.api.auth import (
    OPERATOR_SCOPE,
    Principal,
    TokenVerifier,
    grants,
    parse_scope_claim,
    scope_grants,
)
from workers.api.config import ApiConfig, ApiConfigError, ClientConfig, load_api_config
from workers.api.dev_setup import mint_token
from workers.api.outcomes import ApiError
from workers.api.rate_limit import RateLimiter

CLIENTS = """
[[client]]
id = "app"
tenants = ["t1", "t2"]
scopes = ["system/*.cu"]
"""


@pytest.mark.parametrize(
    ("scope", "resource_type", "letter", "granted"),
    [
        ("system/Observation.c", "Observation", "c", True),
        ("system/Observation.c", "Observation", "u", False),
        ("system/Observation.c", "Task", "c", False),
        ("system/Observation.cu", "Observation", "u", True),
        ("system/*.cu", "Task", "c", True),
        ("system/*.cruds", "Task", "d", True),
        ("system/Observation.write", "Observation", "u", True),  # SMART v1
        ("system/Observation.read", "Observation", "c", False),
        ("system/Observation.*", "Observation", "c", True),
        ("user/Observation.c", "Observation", "c", False),  # not a client-credentials context
        ("patient/*.cu", "Observation", "c", False),
        ("system/Observation.c?category=vital-signs", "Observation", "c", False),  # not checkable
        ("system/Observation.uc", "Observation", "c", True),
        ("system/observation.c", "Observation", "c", False),
        (OPERATOR_SCOPE, "Observation", "c", False),
        ("", "Observation", "c", False),
    ],
)
def test_smart_scopes(scope: str, resource_type: str, letter: str, granted: bool) -> None:
    assert scope_grants(scope, resource_type, letter) is granted


def test_the_scope_claim_is_a_space_separated_string_or_a_list() -> None:
    assert parse_scope_claim({"scope": "a b  c"}) == {"a", "b", "c"}
    assert parse_scope_claim({"scp": ["a", "b"]}) == {"a", "b"}
    assert parse_scope_claim({"scope": 7}) == frozenset()
    assert grants(frozenset({"x", "system/Task.c"}), "Task", "c")


def principal(
    scopes: set[str], tenants: frozenset[str] = frozenset({"*"}), cap: list[str] | None = None
) -> Principal:
    client = ClientConfig(id="app", tenants=["t1", "t2"], scopes=cap or ["system/*.cu"])
    return Principal(client=client, user=None, scopes=frozenset(scopes), tenants=frozenset(tenants))


def test_a_principal_gets_what_its_token_grants_and_its_entry_allows() -> None:
    p = principal({"system/*.cruds", OPERATOR_SCOPE})
    assert p.may("Observation", "c") and p.may("Task", "u")
    assert not p.may("Observation", "d")  # the entry caps at cu
    assert not p.operator  # the entry does not allow the operator scope
    assert principal({OPERATOR_SCOPE}, cap=[OPERATOR_SCOPE]).operator
    with pytest.raises(ApiError) as refused:
        principal({"system/Observation.u"}).require("Observation", "c")
    assert refused.value.status == 403
    assert 'scope="system/Observation.c"' in refused.value.headers["WWW-Authenticate"]


def test_a_principals_tenants_are_its_entrys_narrowed_by_its_token() -> None:
    assert principal({"x"}).serves("t1") and not principal({"x"}).serves("t3")
    narrowed = principal({"x"}, tenants=frozenset({"t2", "t3"}))
    assert narrowed.serves("t2") and not narrowed.serves("t1") and not narrowed.serves("t3")
    assert narrowed.tenant_filter() == ["t2"]
    with pytest.raises(ApiError) as refused:
        narrowed.require_tenant("t1")
    assert refused.value.status == 403


@pytest.fixture
def config(tmp_path: Path) -> ApiConfig:
    return write_api_config(tmp_path, CLIENTS)


def verify(config: ApiConfig, token: str) -> Principal:
    return asyncio.run(TokenVerifier(config).principal(token))


def refusal(config: ApiConfig, token: str) -> ApiError:
    with pytest.raises(ApiError) as refused:
        verify(config, token)
    return refused.value


def test_a_token_from_the_issuer_makes_a_principal(config: ApiConfig, tmp_path: Path) -> None:
    token = mint_token(
        tmp_path / "issuer.pem", config, "app", ["system/Observation.c"], ["t1"], "Practitioner/9"
    )
    p = verify(config, token)
    assert (p.client_id, p.user, p.scopes, p.tenants) == (
        "app",
        "Practitioner/9",
        {"system/Observation.c"},
        {"t1"},
    )


def test_tokens_that_do_not_prove_are_401(config: ApiConfig, tmp_path: Path) -> None:
    issuer = tmp_path / "issuer.pem"
    expired = mint_token(issuer, config, "app", ["x"], now=time.time() - 3600, ttl_seconds=60)
    answer = refusal(config, expired)
    assert (answer.status, answer.issues[0].code) == (401, "expired")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    other_key = ec.generate_private_key(ec.SECP256R1())
    claims = {
        "iss": config.issuer,
        "aud": config.audience,
        "sub": "app",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    kid = jwt.get_unverified_header(mint_token(issuer, config, "app", ["x"]))["kid"]
    forged = jwt.encode(claims, other_key, algorithm="ES256", headers={"kid": kid})
    assert refusal(config, forged).issues[0].code == "security"
    for name, value in (("aud", "another-api"), ("iss", "https://elsewhere")):
        token = jwt.encode(
            {**claims, name: value}, other_key, algorithm="ES256", headers={"kid": kid}
        )
        assert refusal(config, token).status == 401
    hmac = jwt.encode(claims, "a shared secret long enough for HS256!", algorithm="HS256")
    assert refusal(config, hmac).status == 401
    assert refusal(config, "not.a.token").status == 401


def test_a_client_the_api_does_not_serve_is_403(config: ApiConfig, tmp_path: Path) -> None:
    token = mint_token(tmp_path / "issuer.pem", config, "stranger", ["system/*.cu"])
    assert refusal(config, token).status == 403


def test_the_config_file_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "api.toml"
    path.write_text('issuer = "x"\naudience = "y"\ncaller_key_file = "k.pem"\n')
    with pytest.raises(ApiConfigError, match="jwks_file, jwks_url"):
        load_api_config(path)
    path.write_text(
        'issuer = "x"\naudience = "y"\ncaller_key_file = "k.pem"\n'
        'jwks_url = "https://i/certs"\nalgorithms = ["HS256"]\n'
    )
    with pytest.raises(ApiConfigError, match="algorithms"):
        load_api_config(path)


def test_the_rate_limit_is_a_token_bucket_per_client() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    slow = ClientConfig(id="slow", tenants=["*"], scopes=["*"], requests_per_second=0.5, burst=2)
    other = ClientConfig(id="other", tenants=["*"], scopes=["*"], burst=1)
    assert limiter.take(slow) is None and limiter.take(slow) is None
    assert limiter.take(slow) == pytest.approx(2.0)
    assert limiter.take(other) is None  # buckets are per client
    with pytest.raises(ApiError) as refused:
        limiter.check(slow)
    assert (refused.value.status, refused.value.headers["Retry-After"]) == (429, "2")
    now[0] = 2.0
    assert limiter.take(slow) is None
