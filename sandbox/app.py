"""Starlette application: FHIR R4 REST interactions per tenant, plus admin routes.

Routes::

    GET    /healthz
    GET    /fhir/{tenant}/metadata
    POST   /fhir/{tenant}/{type}                          create (+ If-None-Exist)
    GET    /fhir/{tenant}/{type}?identifier=&patient=&subject=   search
    GET    /fhir/{tenant}/{type}/{id}                     read
    PUT    /fhir/{tenant}/{type}/{id}                     update (If-Match)
    DELETE /fhir/{tenant}/{type}/{id}                     delete
    GET    /fhir/{tenant}/{type}/{id}/_history/{vid}      vread
    POST|GET|DELETE /_admin/faults/{tenant}               see sandbox.faults

SQLite work runs in worker threads (anyio.to_thread) so slow requests, such as
an injected ``commit_then_hang``, never block the event loop.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import FaultRegistry, parse_config
from sandbox.personalities import Personality, for_tenant
from sandbox.store import Criterion, Json, Store, Version

FHIR_JSON = "application/fhir+json"
SEARCH_PARAMS = ("identifier", "patient", "subject")
ADVERTISED_TYPES = (
    "AllergyIntolerance",
    "Condition",
    "DocumentReference",
    "Encounter",
    "MedicationRequest",
    "Observation",
    "Patient",
    "Procedure",
)
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d+)"?$')


@functools.lru_cache(maxsize=256)
def model_class(rtype: str) -> type[Any] | None:
    """The R4B pydantic model for a resource type name, or None if not a resource."""
    if not _TYPE_NAME.match(rtype) or rtype in ("Resource", "DomainResource"):
        return None
    try:
        cls: type[Any] = get_fhir_model_class(rtype)
    except (ValueError, ImportError, AttributeError):
        return None
    return cls if cls.__name__ == rtype and issubclass(cls, Resource) else None


class BadRequest(Exception):
    """Client error turned into an OperationOutcome response."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics


def http_date(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso), usegmt=True)


def prefer_return(request: Request) -> str:
    for pref in re.split(r"[,;]", request.headers.get("prefer", "")):
        key, _, value = pref.strip().partition("=")
        if key == "return":
            return value.strip('"')
    return "representation"


def parse_criteria(pairs: list[tuple[str, str]], strict: bool) -> list[Criterion]:
    """Search parameters -> AND-ed criteria; unknown params ignored unless strict."""
    criteria: list[Criterion] = []
    for name, raw in pairs:
        if name not in SEARCH_PARAMS:
            if strict and not name.startswith("_"):
                raise BadRequest(400, "not-supported", f"Unsupported search parameter: {name}")
            continue
        if not raw:
            raise BadRequest(400, "invalid", f"Empty value for search parameter {name}")
        if name == "identifier":
            if "|" in raw:
                system, _, value = raw.partition("|")
                criteria.append(Criterion("identifier", system, value or None))
            else:
                criteria.append(Criterion("identifier", None, raw))
        else:
            parts = raw.rstrip("/").split("/")
            ref = f"Patient/{raw}" if len(parts) == 1 else "/".join(parts[-2:])
            criteria.append(Criterion("patient", "", ref))
    return criteria


def operation_outcome(p: Personality, code: str, diagnostics: str, severity: str = "error") -> Json:
    issue: Json = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if p.error_coding_system:
        coding = {"system": p.error_coding_system, "code": p.error_code, "display": diagnostics}
        issue["details"] = {"coding": [coding], "text": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(
    status: int, body: Json | None, headers: Mapping[str, str] | None = None
) -> Response:
    if body is None:
        return Response(status_code=status, headers=dict(headers or {}))
    return Response(
        json.dumps(body), status_code=status, headers=dict(headers or {}), media_type=FHIR_JSON
    )


@dataclass
class Ctx:
    request: Request
    tenant: str
    p: Personality
    rtype: str
    base: str
    drop_identifier: bool = False

    def error(self, status: int, code: str, diagnostics: str) -> Response:
        return fhir_response(status, operation_outcome(self.p, code, diagnostics))

    def url(self, v: Version, history: bool = False) -> str:
        tail = f"/_history/{v.version}" if history else ""
        return f"{self.base}/{self.rtype}/{v.id}{tail}"


Handler = Callable[[Ctx], Awaitable[Response]]


class Sandbox:
    def __init__(self, db_path: str, personalities: Mapping[str, str]) -> None:
        self.store = Store(db_path)
        self.faults = FaultRegistry()
        self.personalities = dict(personalities)

    # -- plumbing ----------------------------------------------------------

    def fhir(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap an interaction with tenant lookup, fault injection and vendor headers."""

        async def endpoint(request: Request) -> Response:
            tenant = request.path_params["tenant"]
            p = for_tenant(self.personalities, tenant)
            rtype = request.path_params.get("type", "")
            base = f"{str(request.base_url).rstrip('/')}/fhir/{tenant}"
            ctx = Ctx(request, tenant, p, rtype, base)
            if latency := self.faults.latency_ms(tenant):
                await anyio.sleep(latency / 1000)
            if rtype and model_class(rtype) is None:
                response = ctx.error(404, "not-supported", "Unknown resource type")
            else:
                fault = self.faults.take(tenant, request.method, rtype or None)
                if fault is not None and fault.kind == "status":
                    response = ctx.error(fault.status, "transient", "Injected fault")
                    if fault.retry_after is not None:
                        response.headers["Retry-After"] = str(fault.retry_after)
                else:
                    ctx.drop_identifier = fault is not None and fault.kind == "drop_identifier"
                    try:
                        response = await handler(ctx)
                    except BadRequest as exc:
                        response = ctx.error(exc.status, exc.code, exc.diagnostics)
                    if fault is not None and fault.kind == "commit_then_hang":
                        await anyio.sleep(fault.seconds)
            if p.request_id_header:
                response.headers["X-Request-Id"] = uuid.uuid4().hex
            return response

        return endpoint

    async def parse_body(self, ctx: Ctx, rid: str | None) -> Json:
        """Validate the body as an R4 resource of ``ctx.rtype``; server owns id/meta."""
        try:
            data = json.loads(await ctx.request.body())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "structure", "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "structure", "Request body must be a JSON object")
        if data.get("resourceType") != ctx.rtype:
            raise BadRequest(400, "invalid", f"resourceType must be {ctx.rtype}")
        data.pop("meta", None)
        if rid is None:
            data.pop("id", None)
        elif data.get("id") != rid:
            raise BadRequest(400, "invalid", "Resource id must match the id in the URL")
        cls = model_class(ctx.rtype)
        assert cls is not None
        try:
            cls.model_validate(data)
        except ValidationError as exc:
            # Only paths and error types: field values may be PHI and are never echoed.
            paths = sorted({self._loc(e["loc"]) + f" ({e['type']})" for e in exc.errors()})
            raise BadRequest(
                422, "invalid", "Resource fails FHIR R4 validation at: " + "; ".join(paths)
            ) from None
        if ctx.drop_identifier:
            data.pop("identifier", None)
        return data

    @staticmethod
    def _loc(loc: tuple[int | str, ...]) -> str:
        out = ""
        for part in loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(root)"

    def write_response(self, ctx: Ctx, status: int, v: Version, with_location: bool) -> Response:
        p = ctx.p
        headers: dict[str, str] = {}
        if with_location:
            if p.location_style == "relative":
                headers["Location"] = f"{ctx.rtype}/{v.id}"
            else:
                headers["Location"] = ctx.url(v, history=p.location_style == "absolute_history")
        if p.etag:
            headers["ETag"] = f'W/"{v.version}"'
            headers["Last-Modified"] = http_date(v.last_updated)
        prefer = prefer_return(ctx.request)
        if p.create_body == "empty" or prefer == "minimal":
            return fhir_response(status, None, headers)
        if prefer == "OperationOutcome":
            oo = operation_outcome(p, "informational", f"{ctx.rtype}/{v.id} stored", "information")
            return fhir_response(status, oo, headers)
        return fhir_response(status, v.body, headers)

    def read_response(self, ctx: Ctx, v: Version | None) -> Response:
        if v is None:
            return ctx.error(404, "not-found", "Resource not found")
        if v.deleted:
            return ctx.error(410, "deleted", "Resource has been deleted")
        headers: dict[str, str] = {}
        if ctx.p.etag:
            headers = {"ETag": f'W/"{v.version}"', "Last-Modified": http_date(v.last_updated)}
        return fhir_response(200, v.body, headers)

    # -- interactions ------------------------------------------------------

    async def metadata(self, ctx: Ctx) -> Response:
        return fhir_response(200, capability_statement(ctx.p, ctx.base))

    async def create(self, ctx: Ctx) -> Response:
        p = ctx.p
        if p.writable_types is not None and ctx.rtype not in p.writable_types:
            return Response(status_code=403)  # Epic: empty body for unwritable types
        body = await self.parse_body(ctx, None)
        criteria = None
        header = ctx.request.headers.get("if-none-exist")
        if header is not None and p.honor_if_none_exist:
            criteria = parse_criteria(parse_qsl(header.lstrip("?"), keep_blank_values=True), True)
            if not criteria:
                raise BadRequest(400, "invalid", "If-None-Exist has no usable criteria")
        result = await anyio.to_thread.run_sync(
            self.store.create, ctx.tenant, ctx.rtype, body, criteria
        )
        if result.created is not None:
            return self.write_response(ctx, 201, result.created, with_location=True)
        if len(result.matches) > 1:
            return ctx.error(412, "duplicate", "If-None-Exist criteria matched multiple resources")
        return self.write_response(ctx, 200, result.matches[0], with_location=True)

    async def search(self, ctx: Ctx) -> Response:
        strict = "handling=strict" in ctx.request.headers.get("prefer", "")
        pairs = list(ctx.request.query_params.multi_items())
        criteria = parse_criteria(pairs, strict)
        found = await anyio.to_thread.run_sync(self.store.search, ctx.tenant, ctx.rtype, criteria)
        used = urlencode([(k, v) for k, v in pairs if k in SEARCH_PARAMS])
        bundle: Json = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": f"{ctx.base}/{ctx.rtype}?{used}".rstrip("?")}],
            "entry": [
                {"fullUrl": ctx.url(v), "resource": v.body, "search": {"mode": "match"}}
                for v in found
            ],
        }
        return fhir_response(200, bundle)

    async def read(self, ctx: Ctx) -> Response:
        rid = ctx.request.path_params["id"]
        v = await anyio.to_thread.run_sync(self.store.read, ctx.tenant, ctx.rtype, rid, None)
        return self.read_response(ctx, v)

    async def vread(self, ctx: Ctx) -> Response:
        if not ctx.p.vread_allowed:
            return ctx.error(405, "not-supported", "vread is not supported")
        rid, vid = ctx.request.path_params["id"], ctx.request.path_params["vid"]
        if not vid.isdigit():
            return ctx.error(404, "not-found", "Version not found")
        v = await anyio.to_thread.run_sync(self.store.read, ctx.tenant, ctx.rtype, rid, int(vid))
        return self.read_response(ctx, v)

    async def update(self, ctx: Ctx) -> Response:
        p = ctx.p
        if not p.update_allowed:
            return ctx.error(405, "not-supported", "update is not supported")
        if p.writable_types is not None and ctx.rtype not in p.writable_types:
            return Response(status_code=403)
        rid = ctx.request.path_params["id"]
        if_match = self.if_match(ctx)
        body = await self.parse_body(ctx, rid)
        status, v = await anyio.to_thread.run_sync(
            self.store.update, ctx.tenant, ctx.rtype, rid, body, if_match
        )
        if status == "not_found":
            return ctx.error(404, "not-found", "Resource not found (update-as-create unsupported)")
        if status == "conflict" or v is None:
            return ctx.error(p.stale_if_match_status, "conflict", "If-Match version is stale")
        return self.write_response(ctx, 200, v, with_location=False)

    async def delete(self, ctx: Ctx) -> Response:
        p = ctx.p
        if not p.update_allowed:
            return ctx.error(405, "not-supported", "delete is not supported")
        rid = ctx.request.path_params["id"]
        current = await anyio.to_thread.run_sync(self.store.read, ctx.tenant, ctx.rtype, rid, None)
        if current is None:
            return ctx.error(404, "not-found", "Resource not found")
        if not current.deleted:
            status, _ = await anyio.to_thread.run_sync(
                self.store.update, ctx.tenant, ctx.rtype, rid, None, self.if_match(ctx)
            )
            if status == "conflict":
                return ctx.error(p.stale_if_match_status, "conflict", "If-Match version is stale")
        return Response(status_code=204)

    @staticmethod
    def if_match(ctx: Ctx) -> int | None:
        header = ctx.request.headers.get("if-match")
        if header is None:
            return None
        m = _IF_MATCH.match(header.strip())
        if m is None:
            raise BadRequest(400, "invalid", 'If-Match must look like W/"<version>"')
        return int(m.group(1))

    # -- admin -------------------------------------------------------------

    async def admin_faults(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if request.method == "DELETE":
            self.faults.clear(tenant)
            return Response(status_code=204)
        if request.method == "POST":
            try:
                self.faults.set(tenant, parse_config(json.loads(await request.body())))
            except ValueError as exc:  # includes JSONDecodeError
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.describe(tenant))


def capability_statement(p: Personality, base: str) -> Json:
    """CapabilityStatement advertising what this personality really does."""
    resources = []
    for rtype in ADVERTISED_TYPES:
        writable = p.writable_types is None or rtype in p.writable_types
        codes = ["read", "search-type"]
        codes += ["vread"] if p.vread_allowed else []
        codes += ["create"] if writable else []
        codes += ["update", "delete"] if writable and p.update_allowed else []
        versioning = "no-version"
        if p.etag:
            versioning = "versioned-update" if p.update_allowed else "versioned"
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": c} for c in codes],
                "versioning": versioning,
                "readHistory": p.vread_allowed,
                "updateCreate": False,
                "conditionalCreate": writable and p.honor_if_none_exist,
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "searchParam": [
                    {"name": "identifier", "type": "token"},
                    {"name": "patient", "type": "reference"},
                    {"name": "subject", "type": "reference"},
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "software": {"name": f"writeback sandbox EHR ({p.name})"},
        "implementation": {"description": f"Sandbox tenant, personality {p.name}", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    }


def create_app(db_path: str, personalities: Mapping[str, str]) -> Starlette:
    """Build the sandbox ASGI app over the SQLite file at ``db_path``."""
    sb = Sandbox(db_path, personalities)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sb.store.close()

    prefix = "/fhir/{tenant}"
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_admin/faults/{tenant}", sb.admin_faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{prefix}/metadata", sb.fhir(sb.metadata), methods=["GET"]),
        Route(f"{prefix}/{{type}}", sb.fhir(sb.create), methods=["POST"]),
        Route(f"{prefix}/{{type}}", sb.fhir(sb.search), methods=["GET"]),
        Route(f"{prefix}/{{type}}/{{id}}", sb.fhir(sb.read), methods=["GET"]),
        Route(f"{prefix}/{{type}}/{{id}}", sb.fhir(sb.update), methods=["PUT"]),
        Route(f"{prefix}/{{type}}/{{id}}", sb.fhir(sb.delete), methods=["DELETE"]),
        Route(f"{prefix}/{{type}}/{{id}}/_history/{{vid}}", sb.fhir(sb.vread), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sb
    return app
