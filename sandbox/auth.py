"""SMART Backend Services (hl7.org/fhir/smart-app-launch/backend-services.html) per tenant.

``POST /fhir/{tenant}/auth/token`` (form): ``grant_type=client_credentials``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``,
``client_assertion=<JWT>``, ``scope=...``. The assertion must be signed RS384 or
ES384 by a key registered for the client (matching ``kid`` when the keys have
kids), with ``iss == sub == client_id``, ``aud`` = the token endpoint URL, ``exp``
at most 5 minutes ahead, and a ``jti`` of at most 151 characters never used
before. Tokens are opaque; ``expires_in`` is the tenant's ``token_ttl_seconds``.

Errors follow RFC 6749 section 5.2: ``invalid_client`` (401) for every assertion
problem, ``invalid_request``/``unsupported_grant_type``/``invalid_scope`` (400).
"""

from __future__ import annotations

import json
import math
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sandbox.responses import FhirError, Json
from sandbox.scopes import Scope, grant, parse_scope, permits

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_LIFETIME = 300
MAX_JTI = 151
LEEWAY = 5
DEFAULT_TTL = 300.0


@dataclass(frozen=True)
class RegisteredKey:
    kid: str | None
    key: Any

    def fits(self, alg: str) -> bool:
        kind = RSAPublicKey if alg.startswith("RS") else EllipticCurvePublicKey
        return isinstance(self.key, kind)


@dataclass(frozen=True)
class Client:
    client_id: str
    keys: tuple[RegisteredKey, ...]
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = False
    token_ttl_seconds: float = DEFAULT_TTL
    clients: Mapping[str, Client] | None = None

    def to_json(self) -> Json:
        return {
            "enabled": self.enabled,
            "token_ttl_seconds": self.token_ttl_seconds,
            "clients": [
                {
                    "client_id": c.client_id,
                    "kids": [k.kid for k in c.keys],
                    "scopes": list(c.scopes),
                }
                for c in (self.clients or {}).values()
            ],
        }


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> Json:
        return {"error": self.error, "error_description": self.description}


def _jwk_key(jwk: Any) -> RegisteredKey:
    if not isinstance(jwk, dict):
        raise ValueError("each JWK must be an object")
    if "d" in jwk:
        raise ValueError("register public keys only (the JWK has a private part)")
    try:
        parsed = jwt.PyJWK(jwk)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError) as exc:
        raise ValueError(f"unusable JWK: {exc}") from None
    kid = jwk.get("kid")
    return RegisteredKey(kid if isinstance(kid, str) else None, parsed.key)


def _pem_key(text: str, kid: Any) -> RegisteredKey:
    try:
        key = load_pem_public_key(text.encode())
    except ValueError:
        raise ValueError("public_key_pem is not a PEM public key") from None
    return RegisteredKey(kid if isinstance(kid, str) else None, key)


def parse_client(raw: Any, base_dir: Path | None) -> Client:
    if not isinstance(raw, dict) or not isinstance(raw.get("client_id"), str):
        raise ValueError("each client needs a client_id")
    keys: list[RegisteredKey] = []
    jwks = raw.get("jwks")
    if "jwks_file" in raw:
        jwks = json.loads(_resolve(raw["jwks_file"], base_dir).read_text())
    if jwks is not None:
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError("jwks must be {'keys': [...]}")
        keys += [_jwk_key(k) for k in jwks["keys"]]
    pem = raw.get("public_key_pem")
    if pem is not None:
        if not isinstance(pem, str):
            raise ValueError("public_key_pem must be a PEM text or a file path")
        text = pem if pem.lstrip().startswith("-----BEGIN") else _resolve(pem, base_dir).read_text()
        keys.append(_pem_key(text, raw.get("kid")))
    if not keys:
        raise ValueError(f"client {raw['client_id']!r} has no public key")
    scopes = raw.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("client scopes must be a list of strings")
    bad = [s for s in scopes if parse_scope(s) is None]
    if bad:
        raise ValueError(f"malformed scopes: {bad}")
    return Client(raw["client_id"], tuple(keys), tuple(scopes))


def _resolve(path: Any, base_dir: Path | None) -> Path:
    if not isinstance(path, str):
        raise ValueError("key file paths must be strings")
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else base_dir / p


def parse_auth(raw: Any, base_dir: Path | None = None) -> AuthConfig:
    """``{"enabled", "token_ttl_seconds", "clients": [...]}`` (raises ValueError)."""
    if not isinstance(raw, dict):
        raise ValueError("auth must be an object")
    unknown = set(raw) - {"enabled", "token_ttl_seconds", "clients"}
    if unknown:
        raise ValueError(f"unknown auth fields: {sorted(unknown)}")
    enabled = raw.get("enabled", True)
    ttl = raw.get("token_ttl_seconds", DEFAULT_TTL)
    if not isinstance(enabled, bool):
        raise ValueError("auth.enabled must be a boolean")
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        raise ValueError("auth.token_ttl_seconds must be a positive number")
    clients = raw.get("clients", [])
    if not isinstance(clients, list):
        raise ValueError("auth.clients must be a list")
    parsed = {c.client_id: c for c in (parse_client(c, base_dir) for c in clients)}
    return AuthConfig(enabled, float(ttl), parsed)


@dataclass(frozen=True)
class Token:
    tenant: str
    client_id: str
    scopes: tuple[Scope, ...]
    expires_at: float


@dataclass(frozen=True)
class Grants:
    """The scopes of the bearer token of one request."""

    scopes: tuple[Scope, ...]

    def require(self, rtype: str, letter: str) -> None:
        if not permits(self.scopes, rtype, letter):
            raise FhirError(
                403,
                "forbidden",
                f"Token scopes do not allow this interaction (needs system/{rtype}.{letter})",
                headers={"WWW-Authenticate": 'Bearer realm="sandbox", error="insufficient_scope"'},
            )


def _unauthorized(description: str, error: str | None = "invalid_token") -> FhirError:
    challenge = 'Bearer realm="sandbox"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    return FhirError(401, "login", description, headers={"WWW-Authenticate": challenge})


class AuthService:
    """Per-tenant client registrations, issued tokens and used assertion ids."""

    def __init__(self, initial: Mapping[str, AuthConfig] | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = dict(initial or {})
        self._configs = dict(self._initial)
        self._tokens: dict[str, Token] = {}
        self._jtis: set[tuple[str, str, str]] = set()

    def config(self, tenant: str) -> AuthConfig:
        return self._configs.get(tenant) or AuthConfig()

    def enabled(self, tenant: str) -> bool:
        cfg = self._configs.get(tenant)
        return cfg is not None and cfg.enabled

    def configure(self, tenant: str, cfg: AuthConfig) -> None:
        with self._lock:
            self._configs[tenant] = cfg

    def revoke(self, tenant: str, client_id: str | None = None) -> int:
        with self._lock:
            doomed = [
                t
                for t, tok in self._tokens.items()
                if tok.tenant == tenant and client_id in (None, tok.client_id)
            ]
            for t in doomed:
                del self._tokens[t]
            return len(doomed)

    def reset(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._configs = dict(self._initial)
                self._tokens.clear()
                self._jtis.clear()
                return
            self._configs.pop(tenant, None)
            if tenant in self._initial:
                self._configs[tenant] = self._initial[tenant]
            self._tokens = {t: v for t, v in self._tokens.items() if v.tenant != tenant}
            self._jtis = {j for j in self._jtis if j[0] != tenant}

    # -- token endpoint ----------------------------------------------------

    def issue(self, tenant: str, token_url: str, form: Mapping[str, str], now: float) -> Json:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(
                400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
            )
        assertion, scope = form.get("client_assertion"), form.get("scope")
        if not assertion:
            raise OAuthError(400, "invalid_request", "client_assertion is required")
        if not scope:
            raise OAuthError(400, "invalid_request", "scope is required")
        cfg = self.config(tenant)
        client = self._verify(cfg, tenant, token_url, assertion, form.get("client_id"), now)
        granted = grant(scope.split(), client.scopes)
        if not granted:
            raise OAuthError(400, "invalid_scope", "none of the requested scopes is allowed")
        token = secrets.token_urlsafe(32)
        scopes = tuple(s for s in (parse_scope(g) for g in granted) if s is not None)
        with self._lock:
            self._tokens[token] = Token(
                tenant, client.client_id, scopes, now + cfg.token_ttl_seconds
            )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": math.ceil(cfg.token_ttl_seconds),
            "scope": " ".join(granted),
        }

    def _verify(
        self,
        cfg: AuthConfig,
        tenant: str,
        token_url: str,
        assertion: str,
        form_client_id: str | None,
        now: float,
    ) -> Client:
        def reject(why: str) -> OAuthError:
            return OAuthError(401, "invalid_client", why)

        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise reject("client_assertion is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise reject("client_assertion must be signed with RS384 or ES384")
        client_id = unverified.get("iss")
        if not isinstance(client_id, str):
            raise reject("iss must be the client_id")
        client = (cfg.clients or {}).get(client_id)
        if client is None or form_client_id not in (None, client_id):
            raise reject("unknown client")
        keys = [k for k in client.keys if k.fits(alg)]
        if any(k.kid for k in client.keys):
            keys = [k for k in keys if k.kid is not None and k.kid == header.get("kid")]
        if not keys:
            raise reject("no registered key matches the assertion's kid and alg")
        claims: Json | None = None
        failure = "signature verification failed"
        for key in keys:
            try:
                claims = jwt.decode(
                    assertion,
                    key.key,
                    algorithms=[alg],
                    audience=token_url,
                    leeway=LEEWAY,
                    options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                raise reject("aud must be the token endpoint URL") from None
            except jwt.ExpiredSignatureError:
                raise reject("client_assertion has expired") from None
            except jwt.PyJWTError as exc:
                failure = f"client_assertion rejected: {type(exc).__name__}"
        if claims is None:
            raise reject(failure)
        if claims.get("sub") != client_id:
            raise reject("iss and sub must both be the client_id")
        exp = claims["exp"]
        iat = claims.get("iat")
        if exp > now + MAX_LIFETIME + LEEWAY or (
            isinstance(iat, int | float) and exp - iat > MAX_LIFETIME
        ):
            raise reject("exp must be at most 5 minutes in the future")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
            raise reject("jti must be a string of at most 151 characters")
        key_id = (tenant, client_id, jti)
        with self._lock:
            if key_id in self._jtis:
                raise reject("jti has been used before")
            self._jtis.add(key_id)
        return client

    # -- resource server ---------------------------------------------------

    def check(self, tenant: str, authorization: str | None, now: float) -> Grants:
        """Grants of the request's bearer token; raises a 401 FhirError otherwise."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("A bearer token is required", error=None)
        with self._lock:
            token = self._tokens.get(value.strip())
            if token is not None and token.expires_at <= now:
                del self._tokens[value.strip()]
                raise _unauthorized("The access token has expired")
        if token is None or token.tenant != tenant:
            raise _unauthorized("The access token is not valid")
        return Grants(token.scopes)
