"""SMART Backend Services client: access tokens for EHR calls, one per tenant and scope.

Each request asks for the narrowest scope it needs (a create needs ``system/Observation.c``, a
search ``.s``, a read ``.r``, an update ``.u``; SMART v1 tenants get ``.write``/``.read``), signed
with the tenant's own key: a command can never borrow another tenant's credentials. Tokens are
cached until shortly before they expire, and dropped when the EHR answers 401: the request is sent
once more with a fresh one (``SmartAuth``, an ``httpx.Auth`` flow).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from activities.errors import ErrorClass, step_failure
from adapters.tenants import AuthSettings, Tenant

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Assertions live at most 5 minutes (Epic's limit; SMART recommends no more).
ASSERTION_LIFETIME = 300
#: Refresh this long before expiry, so a token never expires in flight.
EXPIRY_MARGIN = 0.2

#: (v2 letter, v1 access) per HTTP method and whether it targets a search.
_V1 = {"c": "write", "u": "write", "d": "write", "r": "read", "s": "read"}


def scope_for(resource_type: str, letter: str, style: str) -> str:
    """The narrowest scope for one interaction (SMART v2 letters ``c r u d s``)."""
    return f"system/{resource_type}.{letter if style == 'v2' else _V1[letter]}"


def interaction_letter(method: str, path: str) -> str:
    if method == "POST":
        return "c"
    if method in ("PUT", "PATCH"):
        return "u"
    if method == "DELETE":
        return "d"
    return "s" if "?" in path or "/" not in path.strip("/") else "r"


@dataclass
class _Token:
    value: str
    refresh_at: float


class SmartAuth(httpx.Auth):
    """The bearer token of one request; after a 401 (a token expired or revoked early) the
    tenant's cached tokens are dropped and the request goes once more with a fresh one. A second
    401 is the answer (an authorization failure)."""

    def __init__(
        self, smart: SmartBackendAuth, tenant: Tenant, method: str, path: str, header: str
    ) -> None:
        self._smart = smart
        self._tenant = tenant
        self._interaction = (method, path)
        self._header = header

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = self._header
        response = yield request
        if response.status_code == 401:
            self._smart.forget(self._tenant)
            fresh = await self._smart.authorization(self._tenant, *self._interaction)
            request.headers["Authorization"] = fresh["Authorization"]
            yield request


class SmartBackendAuth:
    def __init__(self, http: httpx.AsyncClient, clock: Any = time.time) -> None:
        self._http = http
        self._clock = clock
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._token_urls: dict[str, str] = {}

    async def authorization(self, tenant: Tenant, method: str, path: str) -> dict[str, str]:
        """The Authorization header for one request (empty when the tenant needs none)."""
        if tenant.auth.kind == "none":
            return {}
        resource_type = path.strip("/").split("/")[0].split("?")[0]
        scope = scope_for(resource_type, interaction_letter(method, path), tenant.auth.scope_style)
        return {"Authorization": f"Bearer {await self._token(tenant, scope)}"}

    async def for_request(self, tenant: Tenant, method: str, path: str) -> SmartAuth | None:
        """The auth of one request, its token already at hand (None when the tenant needs none):
        the token is fetched before the request waits for its turn to be sent, never after."""
        header = await self.authorization(tenant, method, path)
        if not header:
            return None
        return SmartAuth(self, tenant, method, path, header["Authorization"])

    def forget(self, tenant: Tenant) -> None:
        """Drop the tenant's cached tokens (after a 401: expired or revoked early)."""
        for key in [key for key in self._tokens if key[0] == tenant.id]:
            del self._tokens[key]

    async def _token(self, tenant: Tenant, scope: str) -> str:
        key = (tenant.id, scope)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached and self._clock() < cached.refresh_at:
                return cached.value
            token = await self._fetch(tenant, scope)
            self._tokens[key] = token
            return token.value

    async def _token_url(self, tenant: Tenant) -> str:
        if tenant.auth.token_url:
            return tenant.auth.token_url
        if tenant.id not in self._token_urls:
            url = f"{tenant.base_url()}/.well-known/smart-configuration"
            what = f"SMART configuration of tenant '{tenant.id}'"
            try:
                response = await self._http.get(url, timeout=tenant.timeout_seconds)
            except httpx.HTTPError as exc:  # a read: nothing was written, safe to retry
                raise step_failure(ErrorClass.TRANSPORT, f"{what}: {type(exc).__name__}") from None
            if response.status_code >= 500 or response.status_code == 429:
                raise step_failure(ErrorClass.TRANSIENT, f"{what}: HTTP {response.status_code}")
            if response.status_code != 200:
                raise step_failure(ErrorClass.AUTHORIZATION, f"{what}: HTTP {response.status_code}")
            endpoint = _json_field(response, "token_endpoint")
            if endpoint is None:  # e.g. a proxy's error page with status 200
                raise step_failure(ErrorClass.TRANSIENT, f"{what}: no token_endpoint in the answer")
            if not (endpoint.lower().startswith("https://") or tenant.allow_insecure_http):
                raise step_failure(ErrorClass.AUTHORIZATION, f"{what}: token_endpoint not https")
            self._token_urls[tenant.id] = endpoint
        return self._token_urls[tenant.id]

    def _assertion(self, auth: AuthSettings, token_url: str) -> str:
        now = int(self._clock())
        assert auth.client_id is not None
        claims = {
            "iss": auth.client_id,
            "sub": auth.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,  # unique, far below the 151-character limit
        }
        headers = {"kid": auth.key_id} if auth.key_id else None
        return jwt.encode(claims, _private_key(auth), algorithm=auth.algorithm, headers=headers)

    async def _fetch(self, tenant: Tenant, scope: str) -> _Token:
        token_url = await self._token_url(tenant)
        try:
            response = await self._http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": self._assertion(tenant.auth, token_url),
                },
                timeout=tenant.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise step_failure(
                ErrorClass.TRANSPORT, f"token endpoint: {type(exc).__name__}"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise step_failure(ErrorClass.TRANSIENT, f"token endpoint: HTTP {response.status_code}")
        if response.status_code != 200:
            error = _oauth_error(response)
            raise step_failure(
                ErrorClass.AUTHORIZATION,
                f"tenant '{tenant.id}' refused a token for {scope}: {error}",
            )
        token = _json_field(response, "access_token")
        if token is None:
            raise step_failure(
                ErrorClass.TRANSIENT, "token endpoint: no access_token in the answer"
            )
        lifetime = float(_json_field(response, "expires_in") or 300)
        return _Token(
            value=token,
            refresh_at=self._clock() + lifetime * (1 - EXPIRY_MARGIN),
        )


def _json_field(response: httpx.Response, name: str) -> str | None:
    """A string or number field of a JSON object answer (None: absent, or not JSON at all)."""
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return str(value) if isinstance(value, str | int | float) and value != "" else None


def _oauth_error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", f"HTTP {response.status_code}"))
    except ValueError:
        return f"HTTP {response.status_code}"


def _private_key(auth: AuthSettings) -> Any:
    if auth.private_key_file:
        pem = Path(auth.private_key_file).read_bytes()
    else:
        assert auth.private_key_env is not None
        value = os.environ.get(auth.private_key_env)
        if not value:
            raise step_failure(
                ErrorClass.AUTHORIZATION, f"environment variable {auth.private_key_env} is empty"
            )
        pem = value.encode()
    return load_pem_private_key(pem, password=None)
