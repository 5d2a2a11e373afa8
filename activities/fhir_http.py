"""Reading FHIR HTTP answers: references from Location, versions from ETag, and PHI-safe summaries
of OperationOutcomes. Vendors differ here (VENDORS.md: Epic's relative Location and empty body,
Cerner's absolute Location with ``Content-Length: 0``), so parsing accepts every shape."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from activities.errors import ErrorClass

_LOCATION = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/]+))?/?$"
)
_ETAG = re.compile(r'^(?:W/)?"(?P<vid>[^"]+)"$')


def parse_location(location: str) -> tuple[str, str, str | None] | None:
    """(type, id, version) from an absolute or relative Location, with or without _history."""
    match = _LOCATION.search(location.split("?", 1)[0])
    if not match:
        return None
    return match["type"], match["id"], match["vid"]


def etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    match = _ETAG.match(etag.strip())
    return match["vid"] if match else None


def json_body(response: httpx.Response) -> dict[str, Any] | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(timedelta(0), when - datetime.now(UTC))


def outcome_summary(response: httpx.Response) -> str:
    """``HTTP 422 [invalid Observation.code; 59012]``: status, issue codes, detail codes and field
    paths from an OperationOutcome. Diagnostics text is left out: EHRs echo submitted values there.
    """
    parts: list[str] = []
    body = json_body(response)
    if body and body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue", [])[:5]:
            words = [str(issue.get("code", "?"))]
            words += [str(expr) for expr in issue.get("expression", [])[:3]]
            words += [
                str(coding.get("code"))
                for coding in issue.get("details", {}).get("coding", [])[:2]
                if coding.get("code")
            ]
            parts.append(" ".join(words))
    detail = f" [{'; '.join(parts)}]" if parts else ""
    if response.status_code == 403 and not response.content:
        # Epic's answer when the client is not registered for this API (VENDORS.md quirk 5)
        detail = " [empty body: the client is probably not registered for this API at the EHR]"
    return f"HTTP {response.status_code}{detail}"


def error_class_for_status(status: int) -> ErrorClass:
    if status == 429 or status >= 500:
        return ErrorClass.TRANSIENT
    if status in (400, 422):
        return ErrorClass.VALIDATION
    if status in (401, 403):
        return ErrorClass.AUTHORIZATION
    if status in (409, 412):
        return ErrorClass.CONFLICT
    if status in (404, 410):
        return ErrorClass.NOT_FOUND
    return ErrorClass.EHR_REJECTED
