"""FHIR HTTP plumbing: errors as OperationOutcomes, JSON responses, header parsing.

Diagnostics never carry submitted values (they may be PHI): only field paths,
codes and fixed text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from starlette.responses import Response

from sandbox.personalities import Personality

FHIR_JSON = "application/fhir+json"
Json = dict[str, Any]
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d+)"?$')


class FhirError(Exception):
    """A FHIR interaction failure, answered with an OperationOutcome (or an empty body)."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: Sequence[str] = (),
        vendor_code: str | None = None,
        empty_body: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics
        self.expression = list(expression)
        self.vendor_code = vendor_code
        self.empty_body = empty_body
        self.headers = dict(headers or {})


def operation_outcome(
    p: Personality,
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    expression: Sequence[str] = (),
    vendor_code: str | None = None,
) -> Json:
    issue: Json = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if p.error_coding_system:
        coding = {
            "system": p.error_coding_system,
            "code": vendor_code or p.error_code,
            "display": diagnostics,
        }
        issue["details"] = {"coding": [coding], "text": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_outcome(p: Personality, err: FhirError) -> Json:
    return operation_outcome(
        p, err.code, err.diagnostics, expression=err.expression, vendor_code=err.vendor_code
    )


def dumps(body: Json) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def fhir_response(
    status: int, body: Json | None, headers: Mapping[str, str] | None = None
) -> Response:
    if body is None:
        return Response(status_code=status, headers=dict(headers or {}))
    return Response(
        dumps(body), status_code=status, headers=dict(headers or {}), media_type=FHIR_JSON
    )


def error_response(p: Personality, err: FhirError) -> Response:
    if err.empty_body:
        return fhir_response(err.status, None, err.headers)
    return fhir_response(err.status, error_outcome(p, err), err.headers)


def http_date(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso), usegmt=True)


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_prefer(header: str | None) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> {"return": "minimal", "handling": ...}."""
    prefs: dict[str, str] = {}
    for pref in re.split(r"[,;]", header or ""):
        key, _, value = pref.strip().partition("=")
        if key:
            prefs[key.strip().lower()] = value.strip().strip('"')
    return prefs


def parse_if_match(header: str | None) -> int | None:
    if header is None:
        return None
    m = _IF_MATCH.match(header.strip())
    if m is None:
        raise FhirError(400, "invalid", 'If-Match must look like W/"<version>"')
    return int(m.group(1))
