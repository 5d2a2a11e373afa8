"""What every FHIR request goes through before and after its interaction.

In order: count it (stats); refuse past the tenant's in-flight limit (429);
an outage window (status or connection reset); injected latency; a queued or
seeded-random fault (``connection_reset`` and ``status`` act here, before the
store is touched); the bearer token (tenants with auth); the vendor's required
query parameter; ``commit_late`` (the body is read, then the request waits
before the interaction runs, on the clock of its commit); then the interaction.
Afterwards ``commit_then_hang`` delays the answer and ``commit_then_drop`` closes
the connection instead of answering; vendor correlation headers are added. A
``combo`` fault does each of its parts at its place in that order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from sandbox.context import Env
from sandbox.faults import Fault
from sandbox.personalities import Personality
from sandbox.resources import model_class
from sandbox.responses import FhirError, error_response, fhir_response, parse_prefer
from sandbox.state import Sandbox

ABORT_KEY = "sandbox.abort"
FAULT_KEY = "sandbox.fault"
"""Where the request's scope keeps the label of the fault it met (for the request log)."""


@dataclass
class Call:
    request: Request
    sb: Sandbox
    env: Env
    rtype: str


Handler = Callable[[Call], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
TypeOf = Callable[[Request], str]
"""The resource type a request is about, for routes without ``{type}`` (faults match on it)."""


def drop_connection(request: Request, *, reset: bool) -> Response:
    """Close the client's connection without an HTTP answer (RST when ``reset``)."""
    abort: Any = request.scope.get("extensions", {}).get(ABORT_KEY)
    if abort is None:  # not served by sandbox.server: the best we can do
        return Response("connection drop unsupported by this server", status_code=500)
    abort(reset)
    return Response(status_code=500)  # never sent: the transport is gone


def _base(request: Request, tenant: str) -> str:
    host = request.headers.get("host") or "localhost"
    return f"{request.url.scheme}://{host}{request.scope.get('root_path', '')}/fhir/{tenant}"


def _practice_ok(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "")
    prefix = "Organization/a-1.Practice-"
    return value.startswith(prefix) and value[len(prefix) :].isdigit()


def fhir_route(
    sb: Sandbox, handler: Handler, *, public: bool = False, type_of: TypeOf | None = None
) -> Endpoint:
    """Wrap an interaction handler; ``public`` routes (metadata) need no token; ``type_of``
    names the resource type of a route without ``{type}`` (a ``_getpages`` page's search)."""

    async def endpoint(request: Request) -> Response:
        tenant: str = request.path_params["tenant"]
        method = request.method
        now = time.time()
        sb.stats.record(tenant, method, now)
        settings = sb.tenants.get(tenant)
        p = settings.p
        sb.in_flight[tenant] += 1
        try:
            limit = settings.in_flight_limit
            if limit is not None and sb.in_flight[tenant] > limit:
                err = FhirError(
                    429, "throttled", "Too many concurrent requests", headers={"Retry-After": "1"}
                )
                response = error_response(p, err)
            else:
                rtype = type_of(request) if type_of else request.path_params.get("type", "")
                response = await _serve(sb, handler, request, tenant, p, public, rtype)
        finally:
            sb.in_flight[tenant] -= 1
        sb.requests.record(
            tenant,
            method,
            request.url.path,
            response.status_code,
            request.headers.get("traceparent"),
            request.headers.get("x-request-id"),
            now,
            fault=request.scope.get(FAULT_KEY),
            seconds=time.time() - now,
        )
        if p.request_id_headers:
            rid = uuid.uuid4().hex
            for name in p.request_id_headers:
                response.headers[name] = rid
        return response

    return endpoint


async def _serve(
    sb: Sandbox,
    handler: Handler,
    request: Request,
    tenant: str,
    p: Personality,
    public: bool,
    rtype: str,
) -> Response:
    faults = sb.faults.get(tenant)
    if faults.outage is not None:
        mono = time.monotonic()
        if faults.outage.remaining(mono) > 0:
            sb.faults.note_outage(tenant)
            if faults.outage.mode == "reset":
                return drop_connection(request, reset=True)
            retry = str(faults.outage.retry_after(mono))
            err = FhirError(
                faults.outage.status, "transient", "Service outage", headers={"Retry-After": retry}
            )
            return error_response(p, err)
    if faults.latency_ms:
        await anyio.sleep(faults.latency_ms / 1000)
    if rtype and model_class(rtype) is None:
        return error_response(p, FhirError(404, "not-supported", "Unknown resource type"))
    fault = sb.faults.take(tenant, request.method, rtype or None)
    if fault is not None:
        request.scope[FAULT_KEY] = fault.label
        if fault.effect("connection_reset") is not None:
            return drop_connection(request, reset=True)
        if (status := fault.effect("status")) is not None:
            retry_after = status.retry_after
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            if status.outcome is not None:
                body = json.loads(status.outcome)
                return fhir_response(status.status, body, headers)
            return error_response(
                p, FhirError(status.status, "transient", "Injected fault", headers=headers)
            )
    try:
        env = _env(sb, request, tenant, p, fault, public)
        if fault is not None and (late := fault.effect("commit_late")) is not None:
            await _commit_late(request, env, late.seconds)
        response = await handler(Call(request, sb, env, rtype))
    except FhirError as err:
        response = error_response(p, err)
    if fault is not None and (hang := fault.effect("commit_then_hang")) is not None:
        await anyio.sleep(hang.seconds)
    if fault is not None and fault.effect("commit_then_drop") is not None:
        return drop_connection(request, reset=False)
    if fault is not None and fault.effect("garbled_answer") is not None:
        garbled = {"Content-Encoding": "gzip", "Content-Type": "application/fhir+json"}
        return Response(b"this is not gzip", response.status_code, headers=garbled)
    return response


async def _commit_late(request: Request, env: Env, seconds: float) -> None:
    """Hold the request ``seconds`` before it runs, then run it as of now. The body is read first
    (Starlette keeps it on the request): a client giving up meanwhile does not take it away. The
    wait is a sleep on the event loop, so every other request is served meanwhile."""
    await request.body()
    await anyio.sleep(seconds)
    env.now = time.time()


def _env(
    sb: Sandbox, request: Request, tenant: str, p: Personality, fault: Fault | None, public: bool
) -> Env:
    now = time.time()
    faults = sb.faults.get(tenant)
    settings = sb.tenants.get(tenant)
    env = Env(
        tenant=tenant,
        p=p,
        base=_base(request, tenant),
        now=now,
        stale=sb.stale,
        prefer=parse_prefer(request.headers.get("prefer")),
        drift=faults.drift,
        allowed_identifier_systems=settings.allowed_identifier_systems,
        drop_identifier=fault is not None and fault.effect("drop_identifier") is not None,
        index_delay=faults.index_delay_seconds,
        stale_seconds=faults.stale_read_seconds,
        rejects_duplicate_vitals=settings.rejects_duplicate_vitals,
        paging=settings.paging,
    )
    # a fault only makes things worse: never shorter than the tenant's own lag or staleness
    if fault is not None and (delayed := fault.effect("delayed_indexing")) is not None:
        env.index_delay = max(env.index_delay, delayed.seconds)
    if fault is not None and (stale := fault.effect("stale_reads")) is not None:
        env.stale_seconds = max(env.stale_seconds, stale.seconds)
    if public:
        return env
    if sb.auth.enabled(tenant):
        env.authorize = sb.auth.check(tenant, request.headers.get("authorization"), now).require
    if p.required_query_param and not _practice_ok(request, p.required_query_param):
        name = p.required_query_param
        raise FhirError(
            400, "required", f"The {name} parameter (Organization/a-1.Practice-{{id}}) is required"
        )
    return env
