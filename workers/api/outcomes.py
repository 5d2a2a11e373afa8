"""Every error the API answers, as a FHIR R4 OperationOutcome, built here and nowhere else (as
Medplum's fhir-router does): the issue code is one of FHIR's IssueType codes, ``expression`` holds
FHIRPath locations, and ``diagnostics`` says what is wrong in words that never quote a submitted
value (paths and codes only: adapters/problems.py, adapters/reasons.py).

Routes raise ``ApiError``; ``install_handlers`` turns it, FastAPI's own validation errors,
unknown routes and the client's known failures into OperationOutcome responses."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.problems import Problem
from adapters.reasons import element_path
from workers.client import DecisionRefused, NoWorker, WriteEndedAbnormally, WriteNotFound

log = logging.getLogger("writeback.api")

FHIR_JSON = "application/fhir+json"

Severity = Literal["fatal", "error", "warning", "information"]
#: The FHIR IssueType codes this API answers with (http://hl7.org/fhir/issue-type).
IssueCode = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "security",
    "login",
    "expired",
    "forbidden",
    "not-supported",
    "duplicate",
    "not-found",
    "too-long",
    "too-costly",
    "conflict",
    "business-rule",
    "processing",
    "transient",
    "throttled",
    "exception",
    "timeout",
    "informational",
]


class Coding(BaseModel):
    system: str | None = None
    code: str | None = None


class CodeableConcept(BaseModel):
    coding: list[Coding] | None = None
    text: str | None = None


class Issue(BaseModel):
    severity: Severity
    code: IssueCode
    details: CodeableConcept | None = None
    diagnostics: str | None = None
    expression: list[str] | None = Field(default=None, description="FHIRPath, never values")


class OperationOutcome(BaseModel):
    resourceType: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[Issue] = Field(min_length=1)


def issue(
    code: IssueCode,
    diagnostics: str | None = None,
    expression: Sequence[str] | None = None,
    severity: Severity = "error",
    details: CodeableConcept | None = None,
) -> Issue:
    return Issue(
        severity=severity,
        code=code,
        diagnostics=diagnostics,
        expression=list(expression) if expression else None,
        details=details,
    )


class ApiError(Exception):
    """An error answer: HTTP status, the OperationOutcome's issues, and headers."""

    def __init__(
        self,
        status: int,
        code: IssueCode,
        diagnostics: str,
        expression: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        issues: Iterable[Issue] = (),
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = list(issues) or [issue(code, diagnostics, expression)]
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return outcome_response(self.status, self.issues, self.headers)


def outcome_response(
    status: int, issues: Sequence[Issue], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = OperationOutcome(issue=list(issues)).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=FHIR_JSON)


# --- the errors, one constructor each --------------------------------------------------------


def invalid(diagnostics: str, expression: Sequence[str] | None = None) -> ApiError:
    return ApiError(400, "invalid", diagnostics, expression)


def resource_problems(problems: Sequence[Problem], resource_type: str) -> ApiError:
    """A resource the validate step would reject: one issue per problem, at its path."""
    issues = [
        issue(
            "required" if p.message == "missing" else "invalid",
            p.message,
            [fhir_path(p.path, resource_type)],
        )
        for p in problems[:20]
    ]
    return ApiError(400, "invalid", "invalid resource", issues=issues)


def fhir_path(path: str, resource_type: str) -> str:
    """A problem's path as FHIRPath from the resource: ``Observation.code``; the command's paths
    (``command.resource.note[0]``, workflows/input_limits.py) become the resource's."""
    for prefix in ("command.resource", "(resource)", "(input)"):
        if path == prefix:
            return resource_type
        if path.startswith(prefix):
            path = path[len(prefix) :].lstrip(".")
            return f"{resource_type}.{path}" if not path.startswith("[") else resource_type + path
    if path == "command":
        return resource_type
    if path.startswith(resource_type):
        return path
    return f"{resource_type}.{path}"


def unauthenticated(
    diagnostics: str, code: IssueCode = "login", error: str | None = "invalid_token"
) -> ApiError:
    """401 with ``WWW-Authenticate: Bearer`` (RFC 6750): no token, or one that does not prove."""
    challenge = 'Bearer realm="writeback"'
    if error:
        challenge += f', error="{error}", error_description="{diagnostics}"'
    return ApiError(401, code, diagnostics, headers={"WWW-Authenticate": challenge})


def forbidden(diagnostics: str, scope: str | None = None) -> ApiError:
    """403: the client is known, but this is not for it (scope, tenant)."""
    headers = {}
    if scope:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="writeback", error="insufficient_scope", scope="{scope}"'
        )
    return ApiError(403, "forbidden", diagnostics, headers=headers)


def throttled(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "throttled",
        f"too many requests for this client: retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def not_found(diagnostics: str) -> ApiError:
    return ApiError(404, "not-found", diagnostics)


# --- handlers --------------------------------------------------------------------------------

#: Known failures of the client (workers/client.py): status, code. Their messages name workflow
#: ids, states and task queues, never clinical values.
_CLIENT_ERRORS: dict[type[Exception], tuple[int, IssueCode]] = {
    WriteNotFound: (404, "not-found"),
    DecisionRefused: (409, "conflict"),
    NoWorker: (503, "transient"),
    WriteEndedAbnormally: (410, "processing"),
}


def validation_issues(
    errors: Sequence[Any], root: str, also: frozenset[str] = frozenset()
) -> list[Issue]:
    """FastAPI/pydantic errors as issues: the location's known names (R4 element names, ``also``)
    and the error type; never the input."""
    issues = []
    for err in errors[:20]:
        loc = [part for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        where = element_path(loc, root, also) if loc else root
        issues.append(issue("invalid", str(err.get("type", "invalid")), [where]))
    return issues or [issue("invalid", "invalid request")]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return outcome_response(400, validation_issues(exc.errors(), "request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes: dict[int, IssueCode] = {404: "not-found", 405: "not-supported"}
        code = codes.get(exc.status_code, "processing")
        headers = dict(exc.headers or {})
        return outcome_response(exc.status_code, [issue(code, str(exc.detail))], headers)

    for kind, (status, code) in _CLIENT_ERRORS.items():

        def handler(
            _request: Request, exc: Exception, status: int = status, code: IssueCode = code
        ) -> JSONResponse:
            return outcome_response(status, [issue(code, str(exc))])

        app.add_exception_handler(kind, handler)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # the type and where, not the text: an exception's message may quote the input
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "?"
        log.error("unexpected %s answering a request at %s", type(exc).__name__, where)
        return outcome_response(500, [issue("exception", "internal error (see the API's log)")])
