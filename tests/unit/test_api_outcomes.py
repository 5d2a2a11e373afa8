"""Every error the HTTP API answers is an OperationOutcome made in one place
(workers/api/outcomes.py): FHIR issue codes, FHIRPath expressions, no submitted values."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.problems import Problem
from workers.api.outcomes import (
    FHIR_JSON,
    ApiError,
    fhir_path,
    forbidden,
    install_handlers,
    resource_problems,
    throttled,
    unauthenticated,
)
from workers.client import DecisionRefused, NoWorker, WriteNotFound


def test_problem_paths_become_fhirpath_from_the_resource() -> None:
    assert fhir_path("Observation.code", "Observation") == "Observation.code"
    assert fhir_path("resourceType", "Observation") == "Observation.resourceType"
    assert fhir_path("command.resource.note[0].text", "Observation") == "Observation.note[0].text"
    assert fhir_path("command.resource", "Observation") == "Observation"
    assert fhir_path("command", "Observation") == "Observation"
    assert fhir_path("(resource).component[1]", "Observation") == "Observation.component[1]"


def test_resource_problems_are_issues_at_their_paths() -> None:
    error = resource_problems(
        [Problem("Observation.code", "missing"), Problem("Observation.subject", "model_type")],
        "Observation",
    )
    assert error.status == 400
    assert [(i.code, i.expression) for i in error.issues] == [
        ("required", ["Observation.code"]),
        ("invalid", ["Observation.subject"]),
    ]


def test_the_door_errors_carry_their_http_headers() -> None:
    assert unauthenticated("no bearer token", error=None).headers == {
        "WWW-Authenticate": 'Bearer realm="writeback"'
    }
    assert (
        'error="invalid_token"'
        in unauthenticated("token expired", "expired").headers["WWW-Authenticate"]
    )
    assert forbidden("no").headers == {}
    assert throttled(3).headers == {"Retry-After": "3"}
    assert throttled(3).issues[0].code == "throttled"


def app_raising(exc: Exception) -> TestClient:
    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_every_error_is_an_operation_outcome() -> None:
    for exc, status, code in (
        (ApiError(409, "conflict", "busy", ["Observation.id"]), 409, "conflict"),
        (WriteNotFound("wb:t:k"), 404, "not-found"),
        (DecisionRefused("not waiting"), 409, "conflict"),
        (NoWorker("no worker"), 503, "transient"),
        (RuntimeError("PLANTED-VALUE 72 bpm"), 500, "exception"),
    ):
        answer = app_raising(exc).get("/boom")
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith(FHIR_JSON)
        body = answer.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == code
        assert "PLANTED" not in answer.text
    unknown = app_raising(RuntimeError()).get("/nowhere")
    assert (unknown.status_code, unknown.json()["issue"][0]["code"]) == (404, "not-found")
