"""Who is asking, and what it may do: OAuth 2.0 bearer tokens (JWT, as a client-credentials flow
issues them), checked against the configured issuer, audience and JWKS; SMART v2 scopes; the
client's tenants.

Scopes (SMART App Launch v2, ``system/`` context): ``system/Observation.c`` lets a client create
Observations, ``.u`` update them, ``system/*.cu`` both for every type; a v1 ``.write`` or ``.*``
counts as ``cud``. Scopes with a query (``?category=…``) are not honoured: the door cannot check
them. ``writeback/operator`` lets a client read the review queue and decide (``$resolve``).

The token's client (``client_id``, else ``azp``, else ``sub``) becomes the command's
``requested_by``; its user claim (``user_claim``, default ``fhirUser``, e.g.
``Practitioner/123``) the command's ``on_behalf_of``. Nothing in a request body can change either.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request

from workers.api.config import ApiConfig, ClientConfig
from workers.api.outcomes import forbidden, unauthenticated

OPERATOR_SCOPE = "writeback/operator"
ANY = "*"
_SCOPE = re.compile(
    r"^system/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<letters>[cruds]+|write|read|\*)$"
)
_V1 = {"write": "cud", "read": "rs", ANY: "cruds"}
#: the longest token looked at (a JWT with a few scopes is well under 2 KB)
MAX_TOKEN_CHARS = 8192


def scope_grants(scope: str, resource_type: str, letter: str) -> bool:
    """Whether one scope string grants ``letter`` (c, r, u, d, s) on ``resource_type``."""
    match = _SCOPE.match(scope)
    if match is None:
        return scope == ANY  # a config cap of "*": anything its tokens grant
    letters = _V1.get(match["letters"], match["letters"])
    return match["type"] in (ANY, resource_type) and letter in letters


def grants(scopes: frozenset[str], resource_type: str, letter: str) -> bool:
    return any(scope_grants(scope, resource_type, letter) for scope in scopes)


def parse_scope_claim(claims: dict[str, Any]) -> frozenset[str]:
    """``scope`` (space-separated, RFC 8693/9068) or ``scp`` (a list, some IdPs)."""
    value = claims.get("scope", claims.get("scp", ""))
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(str(item) for item in value)
    return frozenset()


@dataclass(frozen=True)
class Principal:
    """The authenticated client, what its token grants and its entry allows."""

    client: ClientConfig
    user: str | None
    scopes: frozenset[str]
    tenants: frozenset[str]  # the token's claim narrowing the entry's (ANY: not narrowed)

    @property
    def client_id(self) -> str:
        return self.client.id

    def may(self, resource_type: str, letter: str) -> bool:
        return grants(self.scopes, resource_type, letter) and grants(
            frozenset(self.client.scopes), resource_type, letter
        )

    @property
    def operator(self) -> bool:
        cap = set(self.client.scopes)
        return OPERATOR_SCOPE in self.scopes and (OPERATOR_SCOPE in cap or ANY in cap)

    def serves(self, tenant: str) -> bool:
        entry = ANY in self.client.tenants or tenant in self.client.tenants
        return entry and (ANY in self.tenants or tenant in self.tenants)

    def tenant_filter(self) -> list[str] | None:
        """The tenants this client may see (None: all)."""
        if ANY in self.client.tenants and ANY in self.tenants:
            return None
        if ANY in self.client.tenants:
            return sorted(self.tenants)
        return sorted(t for t in self.client.tenants if ANY in self.tenants or t in self.tenants)

    # --- the checks routes make --------------------------------------------------------------

    def require_tenant(self, tenant: str) -> None:
        if not self.serves(tenant):
            raise forbidden(f"client '{self.client_id}' is not allowed tenant '{tenant}'")

    def require(self, resource_type: str, letter: str) -> None:
        if not self.may(resource_type, letter):
            scope = f"system/{resource_type}.{letter}"
            raise forbidden(f"client '{self.client_id}' lacks scope {scope}", scope=scope)

    def require_operator(self) -> None:
        if not self.operator:
            raise forbidden(
                f"client '{self.client_id}' lacks scope {OPERATOR_SCOPE}", scope=OPERATOR_SCOPE
            )


class TokenVerifier:
    """Verifies bearer tokens against the configured issuer, audience and keys (a JWKS file, read
    once; or a JWKS URL, through PyJWKClient's cache)."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._jwks: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if config.jwks_file is not None:
            try:
                self._jwks = jwt.PyJWKSet.from_dict(json.loads(config.jwks_file.read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ValueError(f"cannot read the JWKS {config.jwks_file}: {exc}") from None
        else:
            assert config.jwks_url is not None
            self._client = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300)

    async def _key(self, token: str, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if self._jwks is not None:
            keys = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
            if len(keys) != 1:
                raise unauthenticated("token signed by an unknown key", "security")
            return keys[0]
        assert self._client is not None
        try:
            return await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientError:
            raise unauthenticated("token signed by an unknown key", "security") from None

    async def claims(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthenticated("token too long", "security")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("token malformed", "security") from None
        if header.get("alg") not in self.config.algorithms:
            raise unauthenticated("token algorithm not accepted", "security")
        key = await self._key(token, header)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self.config.algorithms,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("token expired", "expired") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("token is for another audience", "security") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("token from another issuer", "security") from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("token signature invalid", "security") from None
        except jwt.PyJWTError:
            raise unauthenticated("token invalid or incomplete", "security") from None

    async def principal(self, token: str) -> Principal:
        claims = await self.claims(token)
        client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        client = self.config.client(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise forbidden("client not registered at this API")
        user = claims.get(self.config.user_claim)
        tenants = claims.get(self.config.tenants_claim, ANY)
        if isinstance(tenants, str):
            tenants = tenants.split()
        if not isinstance(tenants, list):
            raise unauthenticated(f"token claim {self.config.tenants_claim} malformed", "security")
        return Principal(
            client=client,
            user=user if isinstance(user, str) and user else None,
            scopes=parse_scope_claim(claims),
            tenants=frozenset(str(t) for t in tenants),
        )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthenticated("no bearer token", error=None)
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("authorization is not a bearer token", "security", "invalid_request")
    return token.strip()
