"""The routes of the vendors' own write APIs (athenaOne: sandbox/proprietary.py, Veradigm Unity:
sandbox/unity.py), each served only under its vendor's personality."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.pipeline import Call, Handler, fhir_route
from sandbox.proprietary import athena_clinical_document, athena_problem, athena_vitals
from sandbox.state import Sandbox
from sandbox.unity import unity_get_token, unity_magic


def _only_for(personality: str, handler: Handler) -> Handler:
    async def guarded(call: Call) -> Response:
        if call.env.p.name != personality:
            return JSONResponse({"error": f"not a {personality} tenant"}, status_code=404)
        return await handler(call)

    return guarded


def routes(sb: Sandbox) -> list[Route]:
    """The vendor APIs go through the same pipeline as FHIR calls (stats, the in-flight limit,
    outages, latency, queued faults such as commit_then_drop) but need no FHIR bearer token or
    ``ah-practice`` (the vendors' own OAuth is not modelled)."""
    athena = "/athena/{tenant}/v1/{practiceid}"
    unity = "/unity/{tenant}/json"

    def route(path: str, personality: str, handler: Handler) -> Route:
        endpoint = fhir_route(sb, _only_for(personality, handler), public=True)
        return Route(path, endpoint, methods=["POST"])

    return [
        route(f"{athena}/chart/{{patientid}}/vitals", "athena", athena_vitals),
        route(
            f"{athena}/patients/{{patientid}}/documents/clinicaldocument",
            "athena",
            athena_clinical_document,
        ),
        route(f"{athena}/chart/{{patientid}}/problems", "athena", athena_problem),
        route(f"{unity}/GetToken", "veradigm", unity_get_token),
        route(f"{unity}/MagicJson", "veradigm", unity_magic),
    ]
