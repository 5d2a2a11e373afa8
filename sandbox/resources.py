"""Incoming resources: R4B model lookup, structural checks and validation.

Validation errors name FHIRPath-like field paths (``Observation.code``) and the
error type, never the submitted values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from sandbox.responses import FhirError, Json

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
KEPT_META = ("tag", "security", "profile")
"""Client-supplied meta elements kept on store; versionId/lastUpdated are the server's."""


@functools.lru_cache(maxsize=256)
def model_class(rtype: str) -> type[Any] | None:
    """The R4B pydantic model for a resource type name, or None if not a resource."""
    if not _TYPE_NAME.match(rtype) or rtype in ("Resource", "DomainResource"):
        return None
    try:
        cls: type[Any] = get_fhir_model_class(rtype)
    except (ValueError, ImportError, AttributeError, KeyError):
        return None
    return cls if cls.__name__ == rtype and issubclass(cls, Resource) else None


def valid_id(rid: str) -> bool:
    return bool(_ID.match(rid))


def field_path(rtype: str, loc: tuple[int | str, ...]) -> str:
    out = rtype
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(rtype: str, data: Json) -> None:
    """Raise a 422 naming every failing field path if ``data`` is not a valid ``rtype``."""
    cls = model_class(rtype)
    if cls is None:
        raise FhirError(404, "not-supported", "Unknown resource type")
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        paths = sorted({field_path(rtype, e["loc"]) for e in exc.errors()})
        detail = sorted({f"{field_path(rtype, e['loc'])} ({e['type']})" for e in exc.errors()})
        raise FhirError(
            422,
            "invalid",
            "Resource fails FHIR R4 validation at: " + "; ".join(detail),
            expression=paths,
        ) from None


def normalize(rtype: str, data: Any, rid: str | None) -> Json:
    """Check the envelope (type, id) and keep only client-owned meta; returns a copy."""
    if not isinstance(data, dict):
        raise FhirError(400, "structure", "Request body must be a JSON object")
    if data.get("resourceType") != rtype:
        raise FhirError(400, "invalid", f"resourceType must be {rtype}")
    body = dict(data)
    if rid is None:
        body.pop("id", None)
    elif body.get("id") != rid:
        raise FhirError(400, "invalid", "Resource id must match the id in the URL")
    meta = body.pop("meta", None)
    if isinstance(meta, dict):
        kept = {k: meta[k] for k in KEPT_META if k in meta}
        if kept:
            body["meta"] = kept
    elif meta is not None:
        body["meta"] = meta  # not an object: let validation name it
    return body


def filter_identifiers(body: Json, allowed_systems: Collection[str] | None, drop_all: bool) -> None:
    """Drop every identifier, or those whose system is not in ``allowed_systems``."""
    if drop_all:
        body.pop("identifier", None)
        return
    idents = body.get("identifier")
    if allowed_systems is None or not isinstance(idents, list):
        return
    kept = [i for i in idents if isinstance(i, dict) and i.get("system") in allowed_systems]
    if kept:
        body["identifier"] = kept
    else:
        body.pop("identifier", None)
