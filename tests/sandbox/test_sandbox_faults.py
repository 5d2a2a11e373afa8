"""Fault injection over /_admin/faults/{tenant}."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from support.sandbox_process import ident, new_cmd, observation


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
