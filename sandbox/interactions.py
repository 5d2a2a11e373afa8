"""FHIR R4 instance and type interactions (http.html), independent of HTTP.

Each function runs inside a store transaction (:meth:`sandbox.store.Store.tx`),
checks scopes through ``env.authorize`` and the personality's rules, and raises
:class:`sandbox.responses.FhirError` for every refusal. The HTTP handlers and
the batch/transaction processor share them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from sandbox import vendor_rules
from sandbox.context import Env
from sandbox.drift import apply_drift, strip_extensions
from sandbox.jsonpatch import PatchConflict, PatchSyntaxError, apply_patch
from sandbox.resources import filter_identifiers, normalize, validate
from sandbox.responses import FhirError, Json
from sandbox.search import parse_query, searchset
from sandbox.store import Tx, Version

WriteKind = Literal["create", "update", "patch", "delete"]


@dataclass(frozen=True)
class Written:
    status: int
    """201 created, 200 updated (or the existing match of a conditional create)."""
    version: Version

    @property
    def created(self) -> bool:
        return self.status == 201


def check_write(env: Env, rtype: str, kind: WriteKind) -> None:
    p = env.p
    if p.read_only:
        raise FhirError(405, "not-supported", "This FHIR API is read-only")
    allowed = {
        "create": True,
        "update": p.update_allowed,
        "patch": p.patch_allowed,
        "delete": p.delete_allowed,
    }[kind]
    if not allowed:
        raise FhirError(405, "not-supported", f"{kind} is not supported")
    if p.writable_types is not None and rtype not in p.writable_types:
        raise FhirError(
            p.unwritable_status,
            "forbidden" if p.unwritable_status == 403 else "not-supported",
            f"{kind} of {rtype} is not supported",
            empty_body=p.unwritable_empty_body,
        )


def prepare(env: Env, rtype: str, raw: Any, rid: str | None, *, create: bool) -> Json:
    """Validated body ready to store: R4B, vendor rules, drift, identifier filtering."""
    body = normalize(rtype, raw, rid)
    if env.drift.removed_extensions:
        strip_extensions(body, env.drift.removed_extensions)
    validate(rtype, body)
    vendor_rules.check(env.p.name, rtype, body, create=create)
    apply_drift(env.drift, rtype, body)
    filter_identifiers(body, env.allowed_identifier_systems, env.drop_identifier)
    return body


def _stale(env: Env, rtype: str) -> FhirError:
    return FhirError(env.p.stale_if_match_status, "conflict", "If-Match version is stale")


def find(env: Env, tx: Tx, rtype: str, criteria: str | Sequence[tuple[str, str]]) -> list[Version]:
    """Matches of conditional criteria (an If-None-Exist header or query pairs)."""
    if isinstance(criteria, str):
        pairs = parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True)
    else:
        pairs = list(criteria)
    query, used = parse_query(pairs, strict=True, paging=False)
    if not used:
        raise FhirError(400, "invalid", "Conditional criteria have no usable search parameter")
    return tx.search(rtype, query, env.now)[1]


def store(env: Env, tx: Tx, rtype: str, rid: str, body: Json) -> Version:
    hold = rtype in env.p.holding_tank_types
    return tx.write(rtype, rid, body, visible_at=env.now + env.index_delay, hold=hold)


def _same_patient_and_code(env: Env, tx: Tx, body: Json) -> list[Json]:
    subject = (body.get("subject") or {}).get("reference")
    codes = [
        f"{c.get('system', '')}|{c.get('code', '')}"
        for c in (body.get("code") or {}).get("coding", [])
        if isinstance(c, dict)
    ]
    if not isinstance(subject, str) or not codes:
        return []
    pairs = [("subject", subject), ("code", ",".join(codes))]
    query, _ = parse_query(pairs, strict=True, paging=False)
    # the chart itself, not the search index: a reading filed a moment ago counts
    return [v.body for v in tx.search("Observation", query, math.inf)[1]]


def create(
    env: Env, tx: Tx, rtype: str, raw: Any, if_none_exist: str | None, rid: str | None = None
) -> Written:
    env.authorize(rtype, "c")
    check_write(env, rtype, "create")
    body = prepare(env, rtype, raw, None, create=True)
    if env.rejects_duplicate_vitals and vendor_rules.is_vital_sign(rtype, body):
        vendor_rules.epic_duplicate_vital(body, _same_patient_and_code(env, tx, body))
    if if_none_exist is not None and env.p.honor_if_none_exist:
        matches = find(env, tx, rtype, if_none_exist)
        if len(matches) > 1:
            raise FhirError(412, "duplicate", "If-None-Exist criteria matched several resources")
        if matches:
            return Written(200, matches[0])
    return Written(201, store(env, tx, rtype, rid or tx.new_id(rtype), body))


def read(env: Env, tx: Tx, rtype: str, rid: str) -> Version:
    env.authorize(rtype, "r")
    v = tx.read(rtype, rid)
    if v is None:
        raise FhirError(404, "not-found", "Resource not found")
    stale = env.stale.version((env.tenant, rtype, rid), env.now)
    if stale is not None and stale < v.version:
        v = tx.read(rtype, rid, stale) or v
    if v.deleted:
        raise FhirError(410, "deleted", "Resource has been deleted")
    return v


def vread(env: Env, tx: Tx, rtype: str, rid: str, vid: str) -> Version:
    env.authorize(rtype, "r")
    if not env.p.vread_allowed:
        raise FhirError(405, "not-supported", "vread is not supported")
    v = tx.read(rtype, rid, int(vid)) if vid.isdigit() else None
    if v is None:
        raise FhirError(404, "not-found", "Version not found")
    if v.deleted:
        raise FhirError(410, "deleted", "This version is a deletion")
    return v


def history(env: Env, tx: Tx, rtype: str, rid: str) -> list[Version]:
    env.authorize(rtype, "r")
    if not env.p.history_allowed:
        raise FhirError(405, "not-supported", "history is not supported")
    versions = tx.history(rtype, rid)
    if not versions:
        raise FhirError(404, "not-found", "Resource not found")
    return versions


def _record_update(env: Env, rtype: str, rid: str, previous: int) -> None:
    if env.stale_seconds > 0:
        env.stale.note((env.tenant, rtype, rid), previous, env.now + env.stale_seconds)


def update(env: Env, tx: Tx, rtype: str, rid: str, raw: Any, if_match: int | None) -> Written:
    """A stale If-Match answers the personality's 412/409; no If-Match is an unconditional update,
    or a 412 where the vendor requires versioned updates (Oracle Health)."""
    env.authorize(rtype, "u")
    check_write(env, rtype, "update")
    if if_match is None and env.p.update_requires_if_match:
        raise FhirError(412, "business-rule", "If-Match is required to update a resource")
    body = prepare(env, rtype, raw, rid, create=False)
    cur = tx.current(rtype, rid)
    if cur is None:
        raise FhirError(404, "not-found", "Resource not found (update-as-create is not supported)")
    if if_match is not None and if_match != cur.version:
        raise _stale(env, rtype)
    _record_update(env, rtype, rid, cur.version)
    return Written(200, store(env, tx, rtype, rid, body))


def conditional_update(
    env: Env,
    tx: Tx,
    rtype: str,
    criteria: Sequence[tuple[str, str]],
    raw: Any,
    if_match: int | None,
) -> Written:
    """``PUT /{type}?criteria``: 0 matches create, 1 updates it, more answer 412."""
    env.authorize(rtype, "u")
    check_write(env, rtype, "update")
    if not env.p.conditional_update:
        raise FhirError(405, "not-supported", "conditional update is not supported")
    matches = find(env, tx, rtype, criteria)
    if len(matches) > 1:
        raise FhirError(412, "duplicate", "Conditional update criteria matched several resources")
    if not matches:
        env.authorize(rtype, "c")
        body = prepare(env, rtype, raw, None, create=True)
        return Written(201, store(env, tx, rtype, tx.new_id(rtype), body))
    rid = matches[0].id
    if isinstance(raw, dict) and raw.get("id") not in (None, rid):
        raise FhirError(400, "invalid", "Resource id does not match the resource found")
    return update(
        env, tx, rtype, rid, {**raw, "id": rid} if isinstance(raw, dict) else raw, if_match
    )


def patch(env: Env, tx: Tx, rtype: str, rid: str, ops: Any, if_match: int | None) -> Written:
    """JSON Patch; the patched resource must still be a valid R4 ``rtype``."""
    env.authorize(rtype, "u")
    check_write(env, rtype, "patch")
    cur = tx.read(rtype, rid)
    if cur is None:
        raise FhirError(404, "not-found", "Resource not found")
    if cur.deleted:
        raise FhirError(410, "deleted", "Resource has been deleted")
    if if_match is not None and if_match != cur.version:
        raise _stale(env, rtype)
    try:
        patched = apply_patch(cur.body, ops)
    except PatchSyntaxError as exc:
        raise FhirError(400, "structure", f"Invalid JSON Patch: {exc}") from None
    except PatchConflict as exc:
        raise FhirError(422, "processing", f"JSON Patch cannot be applied: {exc}") from None
    if not isinstance(patched, dict) or patched.get("resourceType") != rtype:
        raise FhirError(422, "processing", "JSON Patch must not change resourceType")
    if patched.get("id") != rid:
        raise FhirError(422, "processing", "JSON Patch must not change id")
    body = prepare(env, rtype, patched, rid, create=False)
    _record_update(env, rtype, rid, cur.version)
    return Written(200, store(env, tx, rtype, rid, body))


def delete(env: Env, tx: Tx, rtype: str, rid: str, if_match: int | None) -> None:
    env.authorize(rtype, "d")
    check_write(env, rtype, "delete")
    cur = tx.current(rtype, rid)
    if cur is None:
        raise FhirError(404, "not-found", "Resource not found")
    if cur.deleted:
        return
    if if_match is not None and if_match != cur.version:
        raise _stale(env, rtype)
    tx.write(rtype, rid, None, visible_at=env.now)


def search(
    env: Env, tx: Tx, rtype: str, pairs: Sequence[tuple[str, str]], *, via_pages: bool = False
) -> Json:
    """A search; ``via_pages``: a page asked for through ``{base}?_getpages=`` (sandbox.paging)."""
    env.authorize(rtype, "s")
    extra = (env.p.required_query_param,) if env.p.required_query_param else ()
    query, used = parse_query(pairs, strict=env.strict, extra_ignored=extra)
    total, page = tx.search(rtype, query, env.now)
    return searchset(
        env.base, rtype, query, used, total, page, paging=env.paging, via_pages=via_pages
    )
