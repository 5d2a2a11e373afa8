"""Batch and transaction Bundles posted to ``/fhir/{tenant}`` (http.html#transaction).

* **transaction**: all or nothing. Every entry runs inside one SQLite
  transaction, in the spec's order (DELETE, POST, PUT/PATCH, GET); the first
  failing entry rolls everything back and its error is the answer. Creates whose
  ``fullUrl`` is ``urn:uuid:...`` get their ids first, and every reference to that
  fullUrl in the bundle is rewritten to ``Type/id``.
* **batch**: each entry on its own; a failing entry gets its status and an
  OperationOutcome in ``response.outcome``, the others still happen.

PATCH entries carry a ``Binary`` resource whose ``data`` is a base64 JSON Patch.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from sandbox import interactions
from sandbox.context import Env
from sandbox.interactions import Written
from sandbox.resources import model_class
from sandbox.responses import FhirError, Json, error_outcome, etag, parse_if_match
from sandbox.store import Store, Tx, Version

REASONS = {200: "OK", 201: "Created", 204: "No Content"}
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    rtype: str
    segments: list[str]
    query: list[tuple[str, str]]
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    rid: str | None = None
    result: Json | None = field(default=None)


def _fail(index: int, err: FhirError) -> FhirError:
    err.diagnostics = f"Bundle.entry[{index}]: {err.diagnostics}"
    return err


def parse_entry(env: Env, index: int, raw: Any) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise FhirError(400, "structure", f"Bundle.entry[{index}].request is required")
    request = raw["request"]
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise FhirError(400, "structure", f"Bundle.entry[{index}].request needs method and url")
    if url.startswith(env.base + "/"):
        url = url[len(env.base) + 1 :]
    path, _, qs = url.lstrip("/").partition("?")
    segments = [s for s in path.split("/") if s]
    if not segments or model_class(segments[0]) is None or len(segments) > 4:
        raise FhirError(404, "not-supported", f"Bundle.entry[{index}].request.url is not supported")
    full_url = raw.get("fullUrl")
    return Entry(
        index=index,
        method=method,
        rtype=segments[0],
        segments=segments[1:],
        query=parse_qsl(qs, keep_blank_values=True),
        resource=raw.get("resource"),
        full_url=full_url if isinstance(full_url, str) else None,
        if_none_exist=request.get("ifNoneExist"),
        if_match=request.get("ifMatch"),
    )


def _patch_ops(resource: Any) -> Any:
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise FhirError(400, "not-supported", "PATCH entries must carry a Binary JSON Patch")
    try:
        return json.loads(base64.b64decode(resource.get("data") or "", validate=True))
    except (ValueError, binascii.Error):
        raise FhirError(400, "structure", "PATCH Binary data is not a base64 JSON Patch") from None


def _written(env: Env, w: Written) -> Json:
    return _response(env, w.status, w.version)


def _response(env: Env, status: int, v: Version | None, resource: Json | None = None) -> Json:
    out: Json = {"response": {"status": f"{status} {REASONS.get(status, '')}".strip()}}
    if v is not None:
        out["fullUrl"] = f"{env.base}/{v.rtype}/{v.id}"
        out["response"]["location"] = f"{v.rtype}/{v.id}/_history/{v.version}"
        out["response"]["etag"] = etag(v.version)
        out["response"]["lastModified"] = v.last_updated
        if env.prefer.get("return") != "minimal":
            out["resource"] = v.body
    if resource is not None:
        out["resource"] = resource
    return out


def run_entry(env: Env, tx: Tx, e: Entry) -> Json:
    """Perform one entry; returns its Bundle.entry in the response."""
    segs, rtype = e.segments, e.rtype
    if e.method in ("GET", "HEAD"):
        if not segs:
            return _response(env, 200, None, interactions.search(env, tx, rtype, e.query))
        if len(segs) == 1:
            return _response(env, 200, interactions.read(env, tx, rtype, segs[0]))
        if len(segs) == 3 and segs[1] == "_history":
            return _response(env, 200, interactions.vread(env, tx, rtype, segs[0], segs[2]))
        raise FhirError(400, "not-supported", "Unsupported GET url in bundle")
    if_match = parse_if_match(e.if_match)
    if e.method == "POST" and not segs:
        rid = e.rid
        return _written(env, interactions.create(env, tx, rtype, e.resource, e.if_none_exist, rid))
    if e.method == "PUT" and len(segs) == 1:
        return _written(env, interactions.update(env, tx, rtype, segs[0], e.resource, if_match))
    if e.method == "PUT" and not segs and e.query:
        w = interactions.conditional_update(env, tx, rtype, e.query, e.resource, if_match)
        return _written(env, w)
    if e.method == "PATCH" and len(segs) == 1:
        ops = _patch_ops(e.resource)
        return _written(env, interactions.patch(env, tx, rtype, segs[0], ops, if_match))
    if e.method == "DELETE" and len(segs) == 1:
        interactions.delete(env, tx, rtype, segs[0], if_match)
        return _response(env, 204, None)
    raise FhirError(400, "not-supported", f"Unsupported {e.method} url in bundle")


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, ids) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in ids:
            out["reference"] = ids[ref]
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def transaction(env: Env, store: Store, entries: list[Entry]) -> Json:
    results: dict[int, Json] = {}
    with store.tx(env.tenant) as tx:
        ordered = sorted(entries, key=lambda e: _ORDER[e.method])
        ids: dict[str, str] = {}
        for e in ordered:
            if e.method != "POST" or e.segments:
                continue
            existing: list[Version] = []
            if e.if_none_exist and env.p.honor_if_none_exist:
                try:
                    existing = interactions.find(env, tx, e.rtype, e.if_none_exist)
                except FhirError as err:
                    raise _fail(e.index, err) from None
                if len(existing) > 1:
                    raise _fail(e.index, FhirError(412, "duplicate", "ifNoneExist matched many"))
            e.rid = existing[0].id if existing else tx.new_id(e.rtype)
            if e.full_url and e.full_url.startswith(("urn:uuid:", "urn:oid:")):
                ids[e.full_url] = f"{e.rtype}/{e.rid}"
        for e in ordered:
            if ids and e.resource is not None:
                e.resource = _rewrite(e.resource, ids)
            try:
                results[e.index] = run_entry(env, tx, e)
            except FhirError as err:
                raise _fail(e.index, err) from None
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [results[e.index] for e in entries],
    }


def batch(env: Env, store: Store, raws: list[Any]) -> Json:
    out: list[Json] = []
    for index, raw in enumerate(raws):
        try:
            entry = parse_entry(env, index, raw)
            with store.tx(env.tenant) as tx:
                out.append(run_entry(env, tx, entry))
        except FhirError as err:
            status = f"{err.status} {REASONS.get(err.status, '')}".strip()
            out.append({"response": {"status": status, "outcome": error_outcome(env.p, err)}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def process(env: Env, store: Store, data: Any) -> Json:
    """Run a batch or transaction Bundle; raises FhirError for a bad or failed bundle."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirError(400, "structure", "Expected a Bundle")
    kind = data.get("type")
    raws = data.get("entry", [])
    if kind not in ("batch", "transaction") or not isinstance(raws, list):
        raise FhirError(400, "invalid", "Bundle.type must be batch or transaction")
    if kind == "batch":
        return batch(env, store, raws)
    entries = [parse_entry(env, i, raw) for i, raw in enumerate(raws)]
    full_urls = [e.full_url for e in entries if e.full_url]
    if len(full_urls) != len(set(full_urls)):
        raise FhirError(400, "invalid", "Bundle.entry.fullUrl values must be unique")
    return transaction(env, store, entries)
