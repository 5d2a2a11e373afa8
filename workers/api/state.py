"""What every route shares, made once per process: the config, the tenants, the payload keys
(for the keyed digests of idempotency.py), the Temporal client (signing with the API's caller
key), the token verifier and the rate limiter; and ``authorized``, the dependency each route
takes to know who is asking (authenticated, then rate-limited)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from adapters.tenants import Tenant, TenantRegistry
from workers.api.auth import Principal, TokenVerifier, bearer_token
from workers.api.config import ApiConfig
from workers.api.outcomes import not_found
from workers.api.rate_limit import RateLimiter
from workers.client import WritebackClient
from workers.keys import KeyProvider


@dataclass
class ApiState:
    config: ApiConfig
    tenants: TenantRegistry
    keys: KeyProvider
    verifier: TokenVerifier
    client: WritebackClient | None = None  # connected in the app's lifespan
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def writeback(self) -> WritebackClient:
        assert self.client is not None, "the API's Temporal client is not connected yet"
        return self.client

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise not_found(f"no tenant '{tenant_id}'")
        return tenant


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def authorized(request: Request) -> Principal:
    """The FastAPI dependency of every route that needs a caller: 401 without a valid token,
    403 for a client this API does not serve, 429 over the client's rate."""
    state = api_state(request)
    principal = await state.verifier.principal(bearer_token(request))
    state.limiter.check(principal.client)
    return principal


#: a route's parameter for who is asking (``authorized``)
Caller = Annotated[Principal, Depends(authorized)]
