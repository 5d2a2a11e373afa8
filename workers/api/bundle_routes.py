"""``POST /fhir/{tenant}``: a FHIR ``transaction`` Bundle as one saga, a ``batch`` Bundle as
independent writes (workers/api/bundles.py translates them), and
``GET /writes/{id}/transaction-response``: a transaction's answer, settled or not.

The same door as a single write (fhir_routes.py): who (401/403), the tenant, the body (413, 415,
400), then the Bundle (400 naming the element: ``Bundle.entry[2].request.method``, never a value).
Each entry needs the client's scope for its type: ``c`` to create, ``u`` to update (403 names the
scope). ``Idempotency-Key`` keys the Bundle (without one, a keyed digest of the Bundle, caller and
user, as for a write): the same Bundle again is the same saga (the same writes); the same key
with another Bundle is 422. The saga is signed for the token's client with the API's caller key
(``WritebackClient.submit_saga``), as a write is.

The answer is 202 with ``Content-Location: /writes/{saga id}`` (a batch: an issue per entry
naming its write) unless ``Prefer: wait=N``: then, once settled within N s, 200 with the
``transaction-response`` (``batch-response``) Bundle; else 202 with where things are."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from adapters.callers import SAGA_FIELDS, signed_content
from adapters.ids import SAGA_PREFIX, content_key
from workers.api.auth import Principal
from workers.api.bundle_problem import BundleProblem
from workers.api.bundle_responses import batch_response, transaction_response
from workers.api.bundles import bundle_kind, saga_of_transaction, writes_of_batch
from workers.api.fhir_body import prefer_wait, read_json_body
from workers.api.fhir_routes import RESPONSES, TenantId
from workers.api.idempotency import MEMO_FIELD, check_same_request, header_key
from workers.api.outcomes import FHIR_JSON, ApiError, issue, not_found, outcome_response
from workers.api.state import ApiState, Caller, api_state
from workers.api.submission import answer, check_at_the_door, start_write
from workers.api.write_routes import tenant_of
from workflows.contract import WriteCommand
from workflows.saga_contract import SagaCommand

router = APIRouter(tags=["FHIR Bundles"])

BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "description": "a transaction or batch Bundle"}}
            for media in (FHIR_JSON, "application/json")
        },
    },
    "parameters": [
        {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
        for header in ("Idempotency-Key", "Prefer")
    ],
}
_SAGA_REQUEST = tuple(name for name in SAGA_FIELDS if name != "idempotency_key")


def _refused(problem: BundleProblem) -> ApiError:
    return ApiError(400, problem.code, str(problem), [problem.expression])


@router.post(
    "/fhir/{tenant}",
    status_code=202,
    responses={**RESPONSES, 200: {"description": "settled (Prefer: wait): the response Bundle"}},
    openapi_extra=BUNDLE_BODY,
    summary="Write a transaction Bundle (one saga) or a batch Bundle (independent writes)",
)
async def post_bundle(request: Request, tenant: TenantId, principal: Caller) -> Response:
    state = api_state(request)
    principal.require_tenant(tenant)
    crosswalk = state.tenant(tenant).crosswalk
    bundle = await read_json_body(request, state.config.max_body_bytes, "Bundle")
    key = header_key(request) or content_key(
        state.keys.id_secret(tenant),
        tenant,
        {"bundle": bundle, "by": principal.client_id, "user": principal.user},
    )
    who: dict[str, Any] = {"requested_by": principal.client_id, "on_behalf_of": principal.user}
    wait = prefer_wait(request, state.config.max_wait_seconds)
    try:
        if bundle_kind(bundle) == "transaction":
            saga = saga_of_transaction(tenant, bundle, key, crosswalk=crosswalk, **who)
        else:
            writes = writes_of_batch(tenant, bundle, key, crosswalk=crosswalk, **who)
            return await _batch(state, principal, writes, wait)
    except BundleProblem as problem:
        raise _refused(problem) from None
    return await _transaction(state, principal, saga, wait)


async def _transaction(
    state: ApiState, principal: Principal, saga: SagaCommand, wait: float
) -> Response:
    for step in saga.steps:
        principal.require(step.resource_type, "c")
    digest = content_key(
        state.keys.id_secret(saga.tenant), saga.tenant, signed_content(saga, _SAGA_REQUEST)
    )
    submission = await state.writeback.submit_saga(saga, memo={MEMO_FIELD: digest})
    await check_same_request(state.writeback, state.keys, submission, digest)
    saga_id = submission.workflow_id
    if wait > 0:
        try:
            await asyncio.wait_for(state.writeback.wait(saga_id), wait)
            response = transaction_response(await state.writeback.saga(saga_id))
            return _bundle_response(200, response, {"Content-Location": f"/writes/{saga_id}"})
        except TimeoutError:
            pass
    return await answer(state, saga_id, 0)


async def _batch(
    state: ApiState, principal: Principal, writes: list[WriteCommand], wait: float
) -> Response:
    for write in writes:
        principal.require(str(write.resource.get("resourceType")), "u" if write.target else "c")
        check_at_the_door(state, write)  # every entry first: one the worker would refuse
    ids = [await start_write(state, write) for write in writes]
    if wait > 0:
        waits = [asyncio.ensure_future(state.writeback.wait(one)) for one in ids]
        _, pending = await asyncio.wait(waits, timeout=wait)
        if not pending:
            return _bundle_response(200, batch_response([task.result() for task in waits]))
        for task in pending:
            task.cancel()
    accepted = [
        issue(
            "informational",
            f"Bundle.entry[{index}]: write {one} accepted; follow /writes/{one}",
            [f"Bundle.entry[{index}]"],
            severity="information",
        )
        for index, one in enumerate(ids)
    ]
    return outcome_response(202, accepted)


def _bundle_response(
    status: int, bundle: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(bundle, status_code=status, headers=headers, media_type=FHIR_JSON)


@router.get(
    "/writes/{workflow_id}/transaction-response",
    responses={
        200: {"description": "the transaction-response Bundle of a transaction's saga"},
        **{code: RESPONSES[code] for code in (401, 403, 404, 429)},
    },
    summary="The transaction-response Bundle of a transaction (settled or not yet)",
)
async def saga_response(workflow_id: str, request: Request, principal: Caller) -> Response:
    state = api_state(request)
    tenant_of(principal, workflow_id)
    if not workflow_id.startswith(f"{SAGA_PREFIX}:"):
        raise not_found(f"{workflow_id} is not a transaction's saga")
    saga = await state.writeback.saga(workflow_id)
    headers = {"Content-Location": f"/writes/{workflow_id}"}
    return _bundle_response(200, transaction_response(saga), headers)
