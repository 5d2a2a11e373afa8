"""The FHIR RESTful writes: ``POST /fhir/{tenant}/{Type}`` (create) and
``PUT /fhir/{tenant}/{Type}/{id}`` with ``If-Match: W/"n"`` (an update of the version the user
saw: a newer version in the EHR is merged, or ends the write in ``conflict`` for a person, as the
workflow does for every update)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from adapters.validation import SUPPORTED_RESOURCE_TYPES
from workers.api.auth import Principal
from workers.api.fhir_body import if_match_version, prefer_wait, read_json_body
from workers.api.idempotency import header_key, request_digest
from workers.api.outcomes import FHIR_JSON, ApiError, OperationOutcome, invalid
from workers.api.state import ApiState, Caller, api_state
from workers.api.submission import answer, build_command, start_write

router = APIRouter(tags=["FHIR writes"])

_OUTCOME = {"model": OperationOutcome, "content": {FHIR_JSON: {}}}
#: the answers every write may give (the OpenAPI document lists them)
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {**_OUTCOME, "description": what}
    for status, what in {
        200: "updated and verified (Prefer: wait)",
        201: "created and verified (Prefer: wait): Location and ETag are the EHR's",
        202: "accepted: durable; follow Content-Location (/writes/{id})",
        400: "invalid request or resource (nothing started)",
        401: "no valid bearer token",
        403: "scope or tenant not allowed",
        404: "unknown tenant or resource type",
        413: "body too large",
        415: "not application/fhir+json",
        422: "Idempotency-Key reused with another request",
        428: "update without If-Match",
        429: "rate limit (Retry-After)",
    }.items()
}
RESOURCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "description": "one FHIR R4 resource"}}
            for media in (FHIR_JSON, "application/json")
        },
    },
    "parameters": [
        {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
        for header in ("Idempotency-Key", "Prefer")
    ],
}
TenantId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
TypeName = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{0,63}$")]
ResourceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


async def _resource(
    request: Request, state: ApiState, principal: Principal, tenant: str, rtype: str, letter: str
) -> dict[str, Any]:
    """The checks in order: who (401/403), which tenant and type (403/404), then the body."""
    principal.require_tenant(tenant)
    principal.require(rtype, letter)
    state.tenant(tenant)
    if rtype not in SUPPORTED_RESOURCE_TYPES:
        raise ApiError(404, "not-supported", f"resource type {rtype} is not written here")
    resource = await read_json_body(request, state.config.max_body_bytes, rtype)
    if resource.get("resourceType") != rtype:
        raise invalid(f"resourceType must be {rtype}", [f"{rtype}.resourceType"])
    return resource


async def _write(
    request: Request,
    state: ApiState,
    principal: Principal,
    tenant: str,
    resource: dict[str, Any],
    target: str | None = None,
    base_version: str | None = None,
) -> Response:
    key = header_key(request)
    command = build_command(principal, tenant, key or "derived", resource, target, base_version)
    if key is None:
        command = command.model_copy(
            update={"idempotency_key": request_digest(state.keys, command)}
        )
    workflow_id = await start_write(state, command)
    return await answer(state, workflow_id, prefer_wait(request, state.config.max_wait_seconds))


@router.post(
    "/fhir/{tenant}/{resource_type}",
    status_code=202,
    responses=RESPONSES,
    openapi_extra=RESOURCE_BODY,
    summary="Write a resource (create)",
)
async def create(
    request: Request, tenant: TenantId, resource_type: TypeName, principal: Caller
) -> Response:
    state = api_state(request)
    resource = await _resource(request, state, principal, tenant, resource_type, "c")
    return await _write(request, state, principal, tenant, resource)


@router.put(
    "/fhir/{tenant}/{resource_type}/{resource_id}",
    status_code=202,
    responses=RESPONSES,
    openapi_extra={
        **RESOURCE_BODY,
        "parameters": [
            *RESOURCE_BODY["parameters"],
            {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}},
        ],
    },
    summary='Update a resource from the version the user saw (If-Match: W/"n")',
)
async def update(
    request: Request,
    tenant: TenantId,
    resource_type: TypeName,
    resource_id: ResourceId,
    principal: Caller,
) -> Response:
    state = api_state(request)
    resource = await _resource(request, state, principal, tenant, resource_type, "u")
    base_version = if_match_version(request)
    if base_version is None:
        raise ApiError(428, "required", 'an update needs If-Match: W/"n", the version the user saw')
    if resource.get("id") != resource_id:
        raise invalid("the resource's id must be the id in the URL", [f"{resource_type}.id"])
    target = f"{resource_type}/{resource_id}"
    return await _write(request, state, principal, tenant, resource, target, base_version)
