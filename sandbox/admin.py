"""Admin API (not FHIR): faults, tenant settings, auth, review, stats, reset.

::

    GET|POST|DELETE /_admin/faults/{tenant}              see sandbox.faults
    GET|POST        /_admin/tenants/{tenant}             see sandbox.tenants (POST merges)
    GET|POST        /_admin/tenants/{tenant}/auth        see sandbox.auth (POST replaces)
    POST            /_admin/tenants/{tenant}/revoke-tokens   {"client_id"?} -> {"revoked": n}
    POST            /_admin/review/{tenant}/{type}/{id}  release a held resource to search
    GET             /_admin/stats/{tenant}               see sandbox.stats
    GET             /_admin/requests/{tenant}            see sandbox.request_log
    GET             /_admin/in-flight                    {tenant: requests being served now}
    POST            /_admin/reset                        every tenant back to the start state
    POST            /_admin/reset/{tenant}               one tenant

Errors answer 400/404 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.auth import parse_auth
from sandbox.faults import parse_config
from sandbox.state import Sandbox
from sandbox.tenants import parse_settings


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def routes(sb: Sandbox) -> list[Route]:
    async def faults(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if request.method == "DELETE":
            sb.faults.clear(tenant)
            return Response(status_code=204)
        if request.method == "POST":
            try:
                sb.faults.set(tenant, parse_config(json.loads(await request.body())))
            except ValueError as exc:  # includes JSONDecodeError
                return _error(str(exc))
        return JSONResponse(sb.faults.describe(tenant))

    async def tenant_settings(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if request.method == "POST":
            try:
                sb.tenants.set(tenant, parse_settings(await _body(request), sb.tenants.get(tenant)))
            except ValueError as exc:
                return _error(str(exc))
        return JSONResponse({"tenant": tenant, **sb.tenants.get(tenant).to_json()})

    async def tenant_auth(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if request.method == "POST":
            try:
                sb.auth.configure(tenant, parse_auth(await _body(request)))
            except ValueError as exc:
                return _error(str(exc))
        return JSONResponse({"tenant": tenant, **sb.auth.config(tenant).to_json()})

    async def revoke(request: Request) -> Response:
        try:
            body = await _body(request)
        except ValueError as exc:
            return _error(str(exc))
        client_id = body.get("client_id") if isinstance(body, dict) else None
        count = sb.auth.revoke(request.path_params["tenant"], client_id)
        return JSONResponse({"revoked": count})

    async def review(request: Request) -> Response:
        tenant, rtype, rid = (request.path_params[k] for k in ("tenant", "type", "id"))
        with sb.store.tx(tenant) as tx:
            found = tx.review(rtype, rid, time.time())
        if not found:
            return _error("no such resource", 404)
        return JSONResponse({"tenant": tenant, "type": rtype, "id": rid, "reviewed": True})

    async def stats(request: Request) -> Response:
        return JSONResponse(sb.stats.describe(request.path_params["tenant"]))

    async def requests(request: Request) -> Response:
        return JSONResponse(sb.requests.describe(request.path_params["tenant"]))

    async def in_flight(request: Request) -> Response:
        """Requests being served now, per tenant (a late commit counts until it has answered):
        an audit waits for 0 before it reads the file."""
        return JSONResponse({tenant: n for tenant, n in sb.in_flight.items() if n})

    async def reset(request: Request) -> Response:
        tenant = request.path_params.get("tenant")
        sb.reset(tenant)
        return JSONResponse({"reset": tenant or "all"})

    return [
        Route("/_admin/faults/{tenant}", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_admin/tenants/{tenant}", tenant_settings, methods=["GET", "POST"]),
        Route("/_admin/tenants/{tenant}/auth", tenant_auth, methods=["GET", "POST"]),
        Route("/_admin/tenants/{tenant}/revoke-tokens", revoke, methods=["POST"]),
        Route("/_admin/review/{tenant}/{type}/{id}", review, methods=["POST"]),
        Route("/_admin/stats/{tenant}", stats, methods=["GET"]),
        Route("/_admin/requests/{tenant}", requests, methods=["GET"]),
        Route("/_admin/in-flight", in_flight, methods=["GET"]),
        Route("/_admin/reset", reset, methods=["POST"]),
        Route("/_admin/reset/{tenant}", reset, methods=["POST"]),
    ]
