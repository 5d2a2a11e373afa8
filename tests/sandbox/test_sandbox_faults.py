"""Fault injection over /_admin/faults/{tenant}."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from support.sandbox_process import SandboxProcess, ident, new_cmd, observation, poll_until


def test_admin_shapes(client: httpx.Client, tenant: str) -> None:
    assert client.get(f"/_admin/faults/{tenant}").json() == {
        "tenant": tenant,
        "latency_ms": 0,
        "queue": [],
    }
    cfg = {
        "latency_ms": 5,
        "queue": [
            {"kind": "status", "status": 503, "retry_after": 2, "method": "post"},
            {"kind": "commit_then_hang", "seconds": 1.5, "type": "Observation"},
            {"kind": "drop_identifier"},
        ],
    }
    r = client.post(f"/_admin/faults/{tenant}", json=cfg)
    assert r.status_code == 200
    assert r.json()["queue"] == [
        {"kind": "status", "status": 503, "retry_after": 2, "method": "POST"},
        {"kind": "commit_then_hang", "seconds": 1.5, "type": "Observation"},
        {"kind": "drop_identifier"},
    ]
    assert client.get(f"/_admin/faults/{tenant}").json()["latency_ms"] == 5
    assert client.delete(f"/_admin/faults/{tenant}").status_code == 204
    assert client.get(f"/_admin/faults/{tenant}").json()["queue"] == []
    for bad in ({"queue": [{"kind": "explode"}]}, {"latency_ms": -1}, {"queue": "x"}, [1]):
        assert client.post(f"/_admin/faults/{tenant}", json=bad).status_code == 400
    assert client.post(f"/_admin/faults/{tenant}", content=b"{").status_code == 400


def test_status_fault_503_retry_after_writes_nothing(client: httpx.Client, tenant: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [{"kind": "status", "status": 503, "retry_after": 2, "method": "POST"}]},
    )
    url = f"/fhir/{tenant}/Observation"
    cmd = new_cmd()
    # A GET does not match the POST-only fault and leaves it queued.
    assert client.get(f"{url}?{ident(cmd)}").status_code == 200
    r = client.post(url, json=observation(cmd))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 0
    assert client.get(f"/_admin/faults/{tenant}").json()["queue"] == []
    assert client.post(url, json=observation(cmd)).status_code == 201


def test_status_fault_answers_its_own_outcome(client: httpx.Client, tenant: str) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "echo: Zyx"}],
    }
    fault = {"kind": "status", "status": 422, "method": "POST", "outcome": outcome}
    assert client.post(f"/_admin/faults/{tenant}", json={"queue": [fault]}).status_code == 200
    assert client.get(f"/_admin/faults/{tenant}").json()["queue"] == [fault]
    answer = client.post(f"/fhir/{tenant}/Observation", json=observation())
    assert (answer.status_code, answer.json()) == (422, outcome)
    bad = {"kind": "status", "outcome": {"resourceType": "Patient"}}
    assert client.post(f"/_admin/faults/{tenant}", json={"queue": [bad]}).status_code == 400


def test_fault_type_match(client: httpx.Client, tenant: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [{"kind": "status", "status": 500, "type": "Condition"}]},
    )
    assert client.post(f"/fhir/{tenant}/Observation", json=observation()).status_code == 201
    assert client.get(f"/fhir/{tenant}/Condition").status_code == 500
    assert client.get(f"/fhir/{tenant}/Condition").status_code == 200


def test_commit_then_hang_is_ambiguous_but_committed(client: httpx.Client, tenant: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [{"kind": "commit_then_hang", "seconds": 3, "method": "POST"}]},
    )
    url = f"/fhir/{tenant}/Observation"
    cmd = new_cmd()
    base = str(client.base_url)

    def other_request_latency() -> None:
        time.sleep(0.2)
        start = time.monotonic()
        with httpx.Client(base_url=base, timeout=5) as c:
            assert c.get("/healthz").status_code == 200
        latencies.append(time.monotonic() - start)

    latencies: list[float] = []
    probe = threading.Thread(target=other_request_latency)
    probe.start()
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=0.8)) as short,
        pytest.raises(httpx.ReadTimeout),
    ):
        short.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    probe.join()
    assert latencies and latencies[0] < 0.5  # the hang does not block the server
    found = client.get(f"{url}?{ident(cmd)}").json()
    assert found["total"] == 1
    # the client's retry with If-None-Exist converges on the committed resource
    retry = client.post(url, json=observation(cmd), headers={"If-None-Exist": ident(cmd)})
    assert retry.status_code == 200
    assert retry.json()["id"] == found["entry"][0]["resource"]["id"]


def test_drop_identifier(client: httpx.Client, tenant: str) -> None:
    client.post(f"/_admin/faults/{tenant}", json={"queue": [{"kind": "drop_identifier"}]})
    url = f"/fhir/{tenant}/Observation"
    cmd = new_cmd()
    r = client.post(url, json=observation(cmd))
    assert r.status_code == 201
    assert "identifier" not in r.json()
    assert "identifier" not in client.get(f"{url}/{r.json()['id']}").json()
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 0
    assert client.get(f"{url}?patient=Patient/example").json()["total"] == 1


def test_latency(client: httpx.Client, tenant: str) -> None:
    client.post(f"/_admin/faults/{tenant}", json={"latency_ms": 400})
    start = time.monotonic()
    assert client.get(f"/fhir/{tenant}/metadata").status_code == 200
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    assert client.get("/fhir/demo-r4/metadata").status_code == 200
    assert time.monotonic() - start < 0.4


# -- more kinds -----------------------------------------------------------------------------


def _count_stored(db: Path, tenant: str, cmd: str) -> int:
    """What the file holds (the independent audit's query), whatever search shows."""
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(DISTINCT id) FROM resource_tokens WHERE tenant=? AND param='identifier'"
            " AND system='urn:writeback:command' AND value=?",
            (tenant, cmd),
        ).fetchone()
    return int(n)


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (502, None), (503, 7), (504, None), (429, 3)]
)
def test_status_faults(
    client: httpx.Client, tenant: str, status: int, retry_after: int | None
) -> None:
    fault: dict[str, Any] = {"kind": "status", "status": status, "method": "POST"}
    if retry_after is not None:
        fault["retry_after"] = retry_after
    client.post(f"/_admin/faults/{tenant}", json={"queue": [fault]})
    cmd = new_cmd()
    r = client.post(f"/fhir/{tenant}/Observation", json=observation(cmd))
    assert r.status_code == status
    assert r.headers.get("retry-after") == (None if retry_after is None else str(retry_after))
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/{tenant}/Observation?{ident(cmd)}").json()["total"] == 0


def test_connection_reset_before_anything(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    client.post(
        f"/_admin/faults/{tenant}", json={"queue": [{"kind": "connection_reset", "method": "POST"}]}
    )
    cmd = new_cmd()
    with (
        httpx.Client(base_url=sandbox.url) as fresh,
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        fresh.post(f"/fhir/{tenant}/Observation", json=observation(cmd))
    assert _count_stored(sandbox.db, tenant, cmd) == 0
    assert client.post(f"/fhir/{tenant}/Observation", json=observation(cmd)).status_code == 201


def test_commit_then_drop_stores_but_never_answers(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    client.post(
        f"/_admin/faults/{tenant}", json={"queue": [{"kind": "commit_then_drop", "method": "POST"}]}
    )
    cmd = new_cmd()
    with (
        httpx.Client(base_url=sandbox.url) as fresh,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        fresh.post(f"/fhir/{tenant}/Observation", json=observation(cmd))
    assert _count_stored(sandbox.db, tenant, cmd) == 1
    assert client.get(f"/fhir/{tenant}/Observation?{ident(cmd)}").json()["total"] == 1


def test_delayed_indexing_tenant_setting(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    client.post(f"/_admin/faults/{tenant}", json={"index_delay_seconds": 1.5})
    assert client.get(f"/_admin/faults/{tenant}").json()["index_delay_seconds"] == 1.5
    cmd = new_cmd()
    started = time.monotonic()
    rid = client.post(f"/fhir/{tenant}/Observation", json=observation(cmd)).json()["id"]
    assert client.get(f"/fhir/{tenant}/Observation/{rid}").status_code == 200  # readable now
    assert _count_stored(sandbox.db, tenant, cmd) == 1  # stored now (audit sees it)
    search = f"/fhir/{tenant}/Observation?{ident(cmd)}"
    assert client.get(search).json()["total"] == 0  # but not searchable yet
    poll_until(lambda: client.get(search).json()["total"] == 1, timeout=5)
    assert time.monotonic() - started >= 1.4


def test_delayed_indexing_fault_applies_to_one_write(client: httpx.Client, tenant: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={"queue": [{"kind": "delayed_indexing", "seconds": 1, "method": "POST"}]},
    )
    delayed, normal = new_cmd(), new_cmd()
    client.post(f"/fhir/{tenant}/Observation", json=observation(delayed))
    client.post(f"/fhir/{tenant}/Observation", json=observation(normal))
    assert client.get(f"/fhir/{tenant}/Observation?{ident(normal)}").json()["total"] == 1
    search = f"/fhir/{tenant}/Observation?{ident(delayed)}"
    assert client.get(search).json()["total"] == 0
    poll_until(lambda: client.get(search).json()["total"] == 1, timeout=5)


def test_stale_reads_after_update(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    client.post(f"/_admin/faults/{tenant}", json={"stale_read_seconds": 1})
    v2 = client.put(f"{url}/{v1['id']}", json={**v1, "status": "amended"})
    assert v2.json()["meta"]["versionId"] == "2"
    stale = client.get(f"{url}/{v1['id']}")
    assert stale.json()["meta"]["versionId"] == "1" and stale.headers["etag"] == 'W/"1"'
    assert client.get(f"{url}/{v1['id']}/_history/2").status_code == 200  # vread is exact
    poll_until(lambda: client.get(f"{url}/{v1['id']}").json()["meta"]["versionId"] == "2", 5)


def _set_every_drift(client: httpx.Client, tenant: str, ext: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={
            "drift": {
                "required_fields": ["Observation.performer"],
                "removed_extensions": [ext],
                "code_bindings": {"Observation.code": "http://loinc.org"},
            }
        },
    )


def test_schema_drift(client: httpx.Client, tenant: str) -> None:
    ext = "http://example.org/fhir/StructureDefinition/legacy-flag"
    _set_every_drift(client, tenant, ext)
    url = f"/fhir/{tenant}/Observation"
    missing = client.post(url, json=observation())
    assert missing.status_code == 422
    issue = missing.json()["issue"][0]
    assert issue["expression"] == ["Observation.performer"] and issue["code"] == "required"

    body = observation()
    body["performer"] = [{"reference": "Practitioner/1"}]
    body["extension"] = [
        {"url": ext, "valueBoolean": True},
        {"url": "urn:keep", "valueBoolean": True},
    ]
    body["valueQuantity"]["extension"] = [{"url": ext, "valueBoolean": True}]
    stored = client.post(url, json=body).json()
    assert stored["extension"] == [{"url": "urn:keep", "valueBoolean": True}]
    assert "extension" not in stored["valueQuantity"]

    snomed = {
        **body,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]},
    }
    unbound = client.post(url, json=snomed)
    assert unbound.status_code == 422
    diag = unbound.json()["issue"][0]["diagnostics"]
    assert "Observation.code" in diag and "http://loinc.org" in diag
    # other types are untouched
    assert (
        client.post(f"/fhir/{tenant}/Patient", json={"resourceType": "Patient"}).status_code == 201
    )
    assert client.get(f"/_admin/faults/{tenant}").json()["drift"]["required_fields"] == [
        "Observation.performer"
    ]


def test_outage_window_status(client: httpx.Client, tenant: str) -> None:
    client.post(f"/_admin/faults/{tenant}", json={"outage": {"seconds": 2, "status": 503}})
    url = f"/fhir/{tenant}/Observation"
    first = client.get(url)
    assert first.status_code == 503 and first.headers["retry-after"] == "2"
    assert client.post(url, json=observation()).status_code == 503
    assert client.get(f"/fhir/{tenant}/metadata").status_code == 503
    assert client.get("/fhir/demo-r4/metadata").status_code == 200  # other tenants are fine
    assert client.get(f"/_admin/faults/{tenant}").json()["outage"]["remaining_seconds"] <= 2
    poll_until(lambda: client.get(url).status_code == 200, timeout=5)
    state = client.get(f"/_admin/faults/{tenant}").json()
    assert "outage" not in state and state["injected"]["outage"] >= 4


def test_outage_window_reset_mode(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    client.post(f"/_admin/faults/{tenant}", json={"outage": {"seconds": 1, "mode": "reset"}})

    def attempt() -> int | None:
        with httpx.Client(base_url=sandbox.url, timeout=5) as fresh:
            try:
                return fresh.get(f"/fhir/{tenant}/Observation").status_code
            except (httpx.ReadError, httpx.RemoteProtocolError):
                return None

    assert attempt() is None
    poll_until(lambda: attempt() == 200, timeout=5)


def _fault_sequence(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str, seed: int
) -> list[str]:
    client.post(
        f"/_admin/faults/{tenant}",
        json={
            "random": {
                "seed": seed,
                "rate": 0.3,
                "kinds": [
                    {"kind": "status", "status": 503, "retry_after": 1},
                    {"kind": "status", "status": 429, "retry_after": 2},
                    {"kind": "connection_reset"},
                ],
            }
        },
    )
    outcomes = []
    with httpx.Client(base_url=sandbox.url, timeout=5) as c:
        for i in range(50):
            try:
                r = c.get(f"/fhir/{tenant}/Observation?identifier=n{i}")
                outcomes.append(str(r.status_code))
            except (httpx.ReadError, httpx.RemoteProtocolError):
                outcomes.append("reset")
    state = client.get(f"/_admin/faults/{tenant}").json()
    described = state["random"]
    assert described["draws"] == 50
    assert described["injected"] == sum(o != "200" for o in outcomes)
    by_kind = state.get("injected", {})
    assert by_kind.get("connection_reset", 0) == outcomes.count("reset")
    assert by_kind.get("status", 0) == sum(o in ("503", "429") for o in outcomes)
    return outcomes


def test_seeded_random_faults_are_reproducible(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    first = _fault_sequence(client, sandbox, tenant, seed=7)
    again = _fault_sequence(client, sandbox, tenant, seed=7)
    other = _fault_sequence(client, sandbox, tenant, seed=8)
    assert first == again
    assert first != other
    assert {"200", "503", "429", "reset"} <= set(first) | set(other)
    injected = sum(o != "200" for o in first)
    assert 5 <= injected <= 25  # rate 0.3 of 50


def test_random_faults_respect_matchers_and_queue_first(client: httpx.Client, tenant: str) -> None:
    client.post(
        f"/_admin/faults/{tenant}",
        json={
            "queue": [{"kind": "status", "status": 500, "method": "GET"}],
            "random": {
                "seed": 1,
                "rate": 1.0,
                "kinds": [{"kind": "status", "status": 502, "method": "POST"}],
            },
        },
    )
    assert client.get(f"/fhir/{tenant}/Observation").status_code == 500  # queue
    assert client.get(f"/fhir/{tenant}/Observation").status_code == 200  # random is POST only
    assert client.post(f"/fhir/{tenant}/Observation", json=observation()).status_code == 502
    assert client.get(f"/_admin/faults/{tenant}").json()["random"]["draws"] == 1


def test_stats_per_second_histogram(client: httpx.Client, tenant: str) -> None:
    for _ in range(3):
        client.post(f"/fhir/{tenant}/Observation", json=observation())
    client.get(f"/fhir/{tenant}/Observation")
    stats = client.get(f"/_admin/stats/{tenant}").json()
    assert stats["tenant"] == tenant and stats["total"] == 4
    assert stats["by_method"] == {"POST": 3, "GET": 1}
    assert sum(s["total"] for s in stats["per_second"]) == 4
    assert all(isinstance(s["t"], int) for s in stats["per_second"])
    assert stats["max_per_second"] == max(s["total"] for s in stats["per_second"])
    assert client.get("/_admin/stats/never-used").json()["total"] == 0


def test_schema_drift_shows_in_the_capability_statement(client: httpx.Client, tenant: str) -> None:
    ext = "http://example.org/fhir/StructureDefinition/legacy-flag"
    assert "contained" not in client.get(f"/fhir/{tenant}/metadata").json()
    _set_every_drift(client, tenant, ext)
    statement = client.get(f"/fhir/{tenant}/metadata").json()
    CapabilityStatement.model_validate(statement)
    obs = {x["type"]: x for x in statement["rest"][0]["resource"]}["Observation"]
    profiles = {c["id"]: c for c in statement["contained"]}
    elements = profiles[obs["profile"].lstrip("#")]["differential"]["element"]
    by_id = {e["id"]: e for e in elements}
    assert by_id["Observation.performer"]["min"] == 1
    assert by_id["Observation.code"]["binding"]["valueSet"] == "http://loinc.org"
    assert by_id[f"Observation.extension:{ext}"]["max"] == "0"
    client.delete(f"/_admin/faults/{tenant}")
    assert "contained" not in client.get(f"/fhir/{tenant}/metadata").json()
