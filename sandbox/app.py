"""The sandbox ASGI app: routing only (see the modules named next to each route).

::

    GET    /healthz
    GET    /fhir/{tenant}/metadata                          capability (CapabilityStatement)
    GET    /fhir/{tenant}/.well-known/smart-configuration   capability
    POST   /fhir/{tenant}/auth/token                        auth (SMART Backend Services)
    POST   /fhir/{tenant}                                   bundles (batch / transaction)
    GET    /fhir/{tenant}[/]?_getpages=...                  a page of a search (HAPI-style)
    POST   /fhir/{tenant}/{type}                            create (+ If-None-Exist)
    GET    /fhir/{tenant}/{type}?...                        search
    PUT    /fhir/{tenant}/{type}?...                        conditional update
    GET    /fhir/{tenant}/{type}/{id}                       read
    PUT    /fhir/{tenant}/{type}/{id}                       update (If-Match)
    PATCH  /fhir/{tenant}/{type}/{id}                       JSON Patch (If-Match)
    DELETE /fhir/{tenant}/{type}/{id}                       delete
    GET    /fhir/{tenant}/{type}/{id}/_history              history
    GET    /fhir/{tenant}/{type}/{id}/_history/{vid}        vread
    /_admin/...                                             admin (faults, tenants, auth, ...)
    POST   /athena/{tenant}/v1/{practiceid}/...             proprietary (athenaOne chart API)
    POST   /unity/{tenant}/json/{GetToken|MagicJson}        proprietary (Veradigm Unity)

Store calls run on the event loop: each is a short SQLite statement or
transaction, and skipping a thread hop per request is most of the speed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import admin, handlers, paging, vendor_routes
from sandbox.auth import OAuthError
from sandbox.capability import smart_configuration
from sandbox.config import SandboxConfig
from sandbox.personalities import REGISTRY
from sandbox.pipeline import fhir_route
from sandbox.responses import FhirError, error_response
from sandbox.state import Sandbox
from sandbox.tenants import TenantSettings


def _token_url(request: Request) -> str:
    host = request.headers.get("host") or "localhost"
    return f"{request.url.scheme}://{host}/fhir/{request.path_params['tenant']}/auth/token"


def _pages_type(request: Request) -> str:
    return paging.token_type(request.query_params.get(paging.PAGES_PARAM, ""))


def create_app(
    db_path: str, personalities: Mapping[str, str], config: SandboxConfig | None = None
) -> Starlette:
    """Build the sandbox over the SQLite file at ``db_path``.

    ``personalities`` (tenant -> name, from the CLI) apply on top of ``config``.
    """
    cfg = config or SandboxConfig()
    for tenant, name in personalities.items():
        if name not in REGISTRY:
            raise ValueError(f"unknown personality {name!r}")
        base = cfg.tenants.get(tenant, TenantSettings())
        cfg.tenants[tenant] = replace(base, personality=name)
    sb = Sandbox(db_path, cfg)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def smart_config(request: Request) -> Response:
        fault = sb.faults.take_named(request.path_params["tenant"], "GET", "smart-configuration")
        if fault is not None and (status := fault.effect("status")) is not None:
            err = FhirError(status.status, "transient", "Injected fault")
            return error_response(REGISTRY["r4"], err)
        base = _token_url(request).removesuffix("/auth/token")
        return JSONResponse(smart_configuration(base))

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            body = sb.auth.issue(
                request.path_params["tenant"], _token_url(request), form, time.time()
            )
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        return JSONResponse(body, headers=headers)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        err = FhirError(status, "not-supported" if status == 405 else "not-found", "No such route")
        return error_response(REGISTRY["r4"], err)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sb.store.close()

    fhir = "/fhir/{tenant}"
    bundle = fhir_route(sb, handlers.bundle)
    pages = fhir_route(sb, handlers.get_pages, type_of=_pages_type)
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *admin.routes(sb),
        *vendor_routes.routes(sb),
        Route(f"{fhir}/metadata", fhir_route(sb, handlers.metadata, public=True), methods=["GET"]),
        Route(f"{fhir}/.well-known/smart-configuration", smart_config, methods=["GET"]),
        Route(f"{fhir}/auth/token", token, methods=["POST"]),
        Route(fhir, bundle, methods=["POST"]),
        Route(fhir, pages, methods=["GET"]),
        # with a GET route on "{fhir}/", Starlette would answer POST there 405, not redirect
        Route(f"{fhir}/", bundle, methods=["POST"]),
        Route(f"{fhir}/", pages, methods=["GET"]),
        Route(f"{fhir}/{{type}}", fhir_route(sb, handlers.create), methods=["POST"]),
        Route(f"{fhir}/{{type}}", fhir_route(sb, handlers.search), methods=["GET"]),
        Route(f"{fhir}/{{type}}", fhir_route(sb, handlers.conditional_update), methods=["PUT"]),
        Route(f"{fhir}/{{type}}/{{id}}", fhir_route(sb, handlers.read), methods=["GET"]),
        Route(f"{fhir}/{{type}}/{{id}}", fhir_route(sb, handlers.update), methods=["PUT"]),
        Route(f"{fhir}/{{type}}/{{id}}", fhir_route(sb, handlers.patch), methods=["PATCH"]),
        Route(f"{fhir}/{{type}}/{{id}}", fhir_route(sb, handlers.delete), methods=["DELETE"]),
        Route(
            f"{fhir}/{{type}}/{{id}}/_history", fhir_route(sb, handlers.history), methods=["GET"]
        ),
        Route(
            f"{fhir}/{{type}}/{{id}}/_history/{{vid}}",
            fhir_route(sb, handlers.vread),
            methods=["GET"],
        ),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.sandbox = sb
    return app
