"""Reading a request as FHIR's RESTful API sends it: the JSON body (415 for another content type,
413 over the size limit, 400 for text that is not one JSON object) and the headers that carry
meaning (``If-Match: W/"n"``, ``Prefer: wait=N``)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from pydantic_core import from_json

from workers.api.outcomes import ApiError, invalid

#: what a body may be (any charset parameter aside)
JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
_WEAK_ETAG = re.compile(r'^\s*(?:W/)?"(?P<version>[A-Za-z0-9.\-]{1,64})"\s*$')
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(?P<seconds>\d{1,6})\"?", re.IGNORECASE)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too-long", f"request body over {limit} bytes")


async def read_json_body(request: Request, limit: int, root: str) -> dict[str, Any]:
    """The body as a JSON object; ``root`` names it in an issue's expression."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(
            415, "not-supported", "content type must be application/fhir+json or application/json"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    try:
        value = from_json(bytes(body))
    except ValueError as exc:
        # pydantic-core's message names the position ("… at line 1 column 9"), not the text
        where = str(exc).rpartition(" at ")[2] if " at line " in str(exc) else "?"
        raise invalid(f"body is not valid JSON ({where})", [root]) from None
    if not isinstance(value, dict):
        raise invalid("body must be one JSON object", [root])
    return value


def if_match_version(request: Request) -> str | None:
    """The version an ``If-Match: W/"n"`` names; None without the header; 400 if malformed."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    match = _WEAK_ETAG.match(value)
    if match is None:
        raise invalid('If-Match must be an ETag such as W/"3"')
    return match["version"]


def prefer_wait(request: Request, cap: float) -> float:
    """The seconds of ``Prefer: wait=N`` (RFC 7240), at most ``cap``; 0 without it."""
    match = _WAIT.search(request.headers.get("prefer", ""))
    return min(float(match["seconds"]), cap) if match else 0.0
