"""The sandbox's request log (`/_admin/requests/{tenant}`): each FHIR request with the correlation
headers the client sent, the status it got, and its path without the query string."""

from __future__ import annotations

import httpx
from support.sandbox_process import observation

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_requests_are_logged_with_traceparent_and_request_id(
    client: httpx.Client, tenant: str
) -> None:
    created = client.post(
        f"/fhir/{tenant}/Observation",
        json=observation(),
        headers={"traceparent": TRACEPARENT, "X-Request-Id": "wb:t:k/write/1"},
    )
    assert created.status_code == 201
    client.get(f"/fhir/{tenant}/Observation?patient=Patient/example")  # no headers

    logged = client.get(f"/_admin/requests/{tenant}").json()["requests"]
    assert [(r["method"], r["status"]) for r in logged] == [("POST", 201), ("GET", 200)]
    assert (logged[0]["traceparent"], logged[0]["request_id"]) == (TRACEPARENT, "wb:t:k/write/1")
    assert (logged[1]["traceparent"], logged[1]["request_id"]) == (None, None)
    assert logged[1]["path"] == f"/fhir/{tenant}/Observation"  # the query (a patient) is not kept


def test_a_tenant_reset_clears_its_log(client: httpx.Client, tenant: str) -> None:
    client.get(f"/fhir/{tenant}/metadata")
    assert client.get(f"/_admin/requests/{tenant}").json()["requests"]
    client.post(f"/_admin/reset/{tenant}")
    assert client.get(f"/_admin/requests/{tenant}").json()["requests"] == []


def test_the_log_names_the_fault_each_request_met(client: httpx.Client, tenant: str) -> None:
    combo = {
        "kind": "combo",
        "method": "POST",
        "faults": [{"kind": "commit_late", "seconds": 0.5}, {"kind": "drop_identifier"}],
    }
    client.post(f"/_admin/faults/{tenant}", json={"queue": [combo]})
    assert client.post(f"/fhir/{tenant}/Observation", json=observation()).status_code == 201
    client.get(f"/fhir/{tenant}/Observation")

    logged = client.get(f"/_admin/requests/{tenant}").json()["requests"]
    assert [r["fault"] for r in logged] == ["commit_late+drop_identifier", None]
    assert logged[0]["seconds"] >= 0.5 > logged[1]["seconds"]
