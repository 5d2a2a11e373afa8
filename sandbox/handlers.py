"""HTTP handlers for FHIR interactions: request -> :mod:`sandbox.interactions` -> response."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from sandbox import bundles, interactions, paging
from sandbox.capability import capability_statement
from sandbox.interactions import Written
from sandbox.pipeline import Call
from sandbox.responses import (
    FhirError,
    etag,
    fhir_response,
    http_date,
    operation_outcome,
    parse_if_match,
)
from sandbox.store import Version

JSON_PATCH = "application/json-patch+json"


async def _json(call: Call) -> Any:
    try:
        return json.loads(await call.request.body())
    except (ValueError, UnicodeDecodeError):
        raise FhirError(400, "structure", "Request body is not valid JSON") from None


def _version_headers(call: Call, v: Version) -> dict[str, str]:
    if not call.env.p.etag:
        return {}
    return {"ETag": etag(v.version), "Last-Modified": http_date(v.last_updated)}


def write_response(call: Call, w: Written) -> Response:
    env, v = call.env, w.version
    headers = _version_headers(call, v)
    if w.created or call.request.method == "POST":
        style = env.p.location_style
        if style == "relative":
            headers["Location"] = f"{v.rtype}/{v.id}"
        elif style == "absolute":
            headers["Location"] = f"{env.base}/{v.rtype}/{v.id}"
        else:
            headers["Location"] = f"{env.base}/{v.rtype}/{v.id}/_history/{v.version}"
    prefer = env.prefer.get("return", "representation")
    if env.p.create_body == "empty" or prefer == "minimal":
        return fhir_response(w.status, None, headers)
    if prefer == "OperationOutcome":
        oo = operation_outcome(
            env.p, "informational", f"{v.rtype}/{v.id} stored", severity="information"
        )
        return fhir_response(w.status, oo, headers)
    return fhir_response(w.status, v.body, headers)


def read_response(call: Call, v: Version) -> Response:
    return fhir_response(200, v.body, _version_headers(call, v))


async def metadata(call: Call) -> Response:
    enabled = call.sb.auth.enabled(call.env.tenant)
    statement = capability_statement(call.env.p, call.env.base, enabled, call.env.drift)
    return fhir_response(200, statement)


async def create(call: Call) -> Response:
    env = call.env
    if env.p.read_only:
        raise FhirError(405, "not-supported", "This FHIR API is read-only")
    if env.p.writable_types is not None and call.rtype not in env.p.writable_types:
        interactions.check_write(env, call.rtype, "create")  # before reading the body
    raw = await _json(call)
    header = call.request.headers.get("if-none-exist")
    with call.sb.store.tx(env.tenant) as tx:
        w = interactions.create(env, tx, call.rtype, raw, header)
    return write_response(call, w)


async def search(call: Call) -> Response:
    pairs = list(call.request.query_params.multi_items())
    with call.sb.store.tx(call.env.tenant, write=False) as tx:
        bundle = interactions.search(call.env, tx, call.rtype, pairs)
    return fhir_response(200, bundle)


async def get_pages(call: Call) -> Response:
    """``GET {base}?_getpages=...`` (HAPI-style paging): a page of the token's search."""
    rtype, pairs = paging.page_request(list(call.request.query_params.multi_items()))
    with call.sb.store.tx(call.env.tenant, write=False) as tx:
        bundle = interactions.search(call.env, tx, rtype, pairs, via_pages=True)
    return fhir_response(200, bundle)


async def read(call: Call) -> Response:
    rid = call.request.path_params["id"]
    with call.sb.store.tx(call.env.tenant, write=False) as tx:
        v = interactions.read(call.env, tx, call.rtype, rid)
    return read_response(call, v)


async def vread(call: Call) -> Response:
    rid, vid = call.request.path_params["id"], call.request.path_params["vid"]
    with call.sb.store.tx(call.env.tenant, write=False) as tx:
        v = interactions.vread(call.env, tx, call.rtype, rid, vid)
    return read_response(call, v)


async def history(call: Call) -> Response:
    env, rid = call.env, call.request.path_params["id"]
    with call.sb.store.tx(env.tenant, write=False) as tx:
        versions = interactions.history(env, tx, call.rtype, rid)
    entries = []
    for v in versions:
        method = "DELETE" if v.deleted else ("POST" if v.version == 1 else "PUT")
        entry: dict[str, Any] = {
            "fullUrl": f"{env.base}/{v.rtype}/{v.id}",
            "request": {
                "method": method,
                "url": f"{v.rtype}" + ("" if method == "POST" else f"/{v.id}"),
            },
            "response": {
                "status": "204" if v.deleted else ("201" if v.version == 1 else "200"),
                "etag": etag(v.version),
                "lastModified": v.last_updated,
            },
        }
        if not v.deleted:
            entry["resource"] = v.body
        entries.append(entry)
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{env.base}/{call.rtype}/{rid}/_history"}],
        "entry": entries,
    }
    return fhir_response(200, bundle)


async def update(call: Call) -> Response:
    env, rid = call.env, call.request.path_params["id"]
    interactions.check_write(env, call.rtype, "update")
    if_match = parse_if_match(call.request.headers.get("if-match"))
    raw = await _json(call)
    with call.sb.store.tx(env.tenant) as tx:
        w = interactions.update(env, tx, call.rtype, rid, raw, if_match)
    return write_response(call, w)


async def conditional_update(call: Call) -> Response:
    env = call.env
    interactions.check_write(env, call.rtype, "update")
    if_match = parse_if_match(call.request.headers.get("if-match"))
    extra = env.p.required_query_param
    pairs = [(k, v) for k, v in call.request.query_params.multi_items() if k != extra]
    if not pairs:
        raise FhirError(405, "not-supported", "PUT needs a resource id or search criteria")
    raw = await _json(call)
    with call.sb.store.tx(env.tenant) as tx:
        w = interactions.conditional_update(env, tx, call.rtype, pairs, raw, if_match)
    return write_response(call, w)


async def patch(call: Call) -> Response:
    env, rid = call.env, call.request.path_params["id"]
    interactions.check_write(env, call.rtype, "patch")
    ctype = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON_PATCH:
        raise FhirError(415, "not-supported", f"PATCH needs Content-Type: {JSON_PATCH}")
    if_match = parse_if_match(call.request.headers.get("if-match"))
    ops = await _json(call)
    with call.sb.store.tx(env.tenant) as tx:
        w = interactions.patch(env, tx, call.rtype, rid, ops, if_match)
    return write_response(call, w)


async def delete(call: Call) -> Response:
    env, rid = call.env, call.request.path_params["id"]
    if_match = parse_if_match(call.request.headers.get("if-match"))
    with call.sb.store.tx(env.tenant) as tx:
        interactions.delete(env, tx, call.rtype, rid, if_match)
    return Response(status_code=204)


async def bundle(call: Call) -> Response:
    env = call.env
    if env.p.read_only or not env.p.batch_allowed:
        raise FhirError(405, "not-supported", "batch and transaction are not supported")
    data = await _json(call)
    return fhir_response(200, bundles.process(env, call.sb.store, data))
