"""Faults that commit late (``commit_late``) and several faults on one request (``combo``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.sandbox_process import SandboxProcess, ident, new_cmd, observation, poll_until

LATE = 1.5
"""Seconds a late request waits before it commits (the clients below give up after 0.3 s)."""
GIVE_UP = httpx.Timeout(5, read=0.3)


def _stored_ids(db: Path, tenant: str, cmd: str) -> list[str]:
    """Ids of the resources the file holds for ``cmd`` (the independent audit's view)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT DISTINCT id FROM resource_tokens WHERE tenant=? AND param='identifier'"
            " AND system='urn:writeback:command' AND value=?",
            (tenant, cmd),
        ).fetchall()
    return [str(r[0]) for r in rows]


def _queue(client: httpx.Client, tenant: str, *faults: dict[str, Any]) -> None:
    assert client.post(f"/_admin/faults/{tenant}", json={"queue": list(faults)}).status_code == 200


def _taken(client: httpx.Client, tenant: str) -> bool:
    """The queued fault has been taken: its request has arrived."""
    return bool(client.get(f"/_admin/faults/{tenant}").json()["queue"] == [])


class Background:
    """A request sent from a thread with a long timeout, so its (late) answer can be awaited."""

    def __init__(self, base: str, send: Callable[[httpx.Client], httpx.Response]) -> None:
        self.response: httpx.Response | None = None

        def run() -> None:
            with httpx.Client(base_url=base, timeout=10) as c:
                self.response = send(c)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def answer(self) -> httpx.Response:
        self._thread.join(10)
        assert self.response is not None
        return self.response


# -- commit_late ----------------------------------------------------------------------------


def test_late_create_is_nowhere_before_its_time_and_stored_after(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": "POST"})
    url, cmd = f"/fhir/{tenant}/Observation", new_cmd()
    started = time.monotonic()
    with (
        httpx.Client(base_url=sandbox.url, timeout=GIVE_UP) as short,
        pytest.raises(httpx.ReadTimeout),
    ):
        short.post(url, json=observation(cmd))
    # the client gave up; the server holds the request: nothing in the file, nothing in search
    assert _stored_ids(sandbox.db, tenant, cmd) == []
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 0
    probe = time.monotonic()
    assert client.get("/healthz").status_code == 200  # the wait blocks nobody else
    assert time.monotonic() - probe < 0.5
    ids = poll_until(lambda: _stored_ids(sandbox.db, tenant, cmd), timeout=LATE + 5)
    assert time.monotonic() - started >= LATE - 0.1
    assert len(ids) == 1
    assert client.get(f"{url}/{ids[0]}").status_code == 200
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 1


def test_a_patient_client_gets_the_late_answer(client: httpx.Client, tenant: str) -> None:
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": "POST"})
    started = time.monotonic()
    r = client.post(f"/fhir/{tenant}/Observation", json=observation())
    assert r.status_code == 201
    assert time.monotonic() - started >= LATE - 0.1
    assert client.get(f"/_admin/faults/{tenant}").json()["injected"] == {"commit_late": 1}


def test_late_conditional_create_finds_the_copy_made_meanwhile(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    """If-None-Exist is evaluated when the late request commits, not when it arrived."""
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": "POST"})
    url, cmd = f"/fhir/{tenant}/Observation", new_cmd()
    conditional = {"If-None-Exist": ident(cmd)}
    late = Background(
        sandbox.url, lambda c: c.post(url, json=observation(cmd), headers=conditional)
    )
    poll_until(lambda: _taken(client, tenant))
    retry = client.post(url, json=observation(cmd), headers=conditional)  # the client's retry
    assert retry.status_code == 201
    answer = late.answer()
    assert answer.status_code == 200  # it found the retry's copy at commit time
    assert answer.json()["id"] == retry.json()["id"]
    assert _stored_ids(sandbox.db, tenant, cmd) == [retry.json()["id"]]


def test_a_late_request_is_in_flight_until_it_has_answered(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    """What an audit waits on before reading the file (GET /_admin/in-flight)."""
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": "POST"})
    url = f"/fhir/{tenant}/Observation"
    late = Background(sandbox.url, lambda c: c.post(url, json=observation()))
    poll_until(lambda: _taken(client, tenant))
    assert client.get("/_admin/in-flight").json().get(tenant) == 1
    assert late.answer().status_code == 201
    assert tenant not in client.get("/_admin/in-flight").json()


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_late_update_checks_if_match_at_commit_time(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str, method: str
) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    rid = v1["id"]
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": method})
    if method == "PUT":
        body: Any = {**v1, "status": "amended"}
        headers = {"If-Match": 'W/"1"'}
    else:
        body = [{"op": "replace", "path": "/status", "value": "amended"}]
        headers = {"If-Match": 'W/"1"', "Content-Type": "application/json-patch+json"}
    late = Background(
        sandbox.url, lambda c: c.request(method, f"{url}/{rid}", json=body, headers=headers)
    )
    poll_until(lambda: _taken(client, tenant))
    assert client.get(f"{url}/{rid}").json()["meta"]["versionId"] == "1"  # not committed yet
    # someone else writes version 2 meanwhile; the late write's If-Match W/"1" is stale by then
    other = client.put(
        f"{url}/{rid}", json={**v1, "status": "corrected"}, headers={"If-Match": 'W/"1"'}
    )
    assert other.status_code == 200
    assert late.answer().status_code == 412
    now = client.get(f"{url}/{rid}").json()
    assert now["meta"]["versionId"] == "2" and now["status"] == "corrected"


def test_late_update_without_a_competitor_commits_after_the_wait(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    _queue(client, tenant, {"kind": "commit_late", "seconds": LATE, "method": "PUT"})
    started = time.monotonic()
    with (
        httpx.Client(base_url=sandbox.url, timeout=GIVE_UP) as short,
        pytest.raises(httpx.ReadTimeout),
    ):
        short.put(
            f"{url}/{v1['id']}", json={**v1, "status": "amended"}, headers={"If-Match": 'W/"1"'}
        )
    assert client.get(f"{url}/{v1['id']}").json()["meta"]["versionId"] == "1"

    def version() -> str:
        return str(client.get(f"{url}/{v1['id']}").json()["meta"]["versionId"])

    poll_until(lambda: version() == "2", timeout=LATE + 5)
    assert time.monotonic() - started >= LATE - 0.1
    assert client.get(f"{url}/{v1['id']}").json()["status"] == "amended"


# -- combos ---------------------------------------------------------------------------------


def test_commit_then_drop_with_delayed_indexing(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    """Stored, unanswered, and out of search for the delay; readable by id all along."""
    delay = 2.0
    combo = {
        "kind": "combo",
        "method": "POST",
        "faults": [{"kind": "commit_then_drop"}, {"kind": "delayed_indexing", "seconds": delay}],
    }
    _queue(client, tenant, combo)
    url, cmd = f"/fhir/{tenant}/Observation", new_cmd()
    started = time.monotonic()
    with (
        httpx.Client(base_url=sandbox.url, timeout=5) as fresh,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        fresh.post(url, json=observation(cmd))
    ids = _stored_ids(sandbox.db, tenant, cmd)
    assert len(ids) == 1  # committed before the drop
    search = f"{url}?{ident(cmd)}"
    assert client.get(search).json()["total"] == 0
    assert client.get(f"{url}?patient=Patient/example&_id={ids[0]}").json()["total"] == 0
    assert client.get(f"{url}/{ids[0]}").status_code == 200
    poll_until(lambda: client.get(search).json()["total"] == 1, timeout=delay + 5)
    assert time.monotonic() - started >= delay - 0.1
    injected = client.get(f"/_admin/faults/{tenant}").json()["injected"]
    assert injected == {"commit_then_drop+delayed_indexing": 1}


def test_commit_late_with_delayed_indexing(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    """Nothing until the late commit; then stored and readable, but searchable only ``seconds``
    after the commit (not after the arrival)."""
    delay = 1.5
    combo = {
        "kind": "combo",
        "method": "POST",
        "faults": [
            {"kind": "commit_late", "seconds": LATE},
            {"kind": "delayed_indexing", "seconds": delay},
        ],
    }
    _queue(client, tenant, combo)
    url, cmd = f"/fhir/{tenant}/Observation", new_cmd()
    started = time.monotonic()
    with (
        httpx.Client(base_url=sandbox.url, timeout=GIVE_UP) as short,
        pytest.raises(httpx.ReadTimeout),
    ):
        short.post(url, json=observation(cmd))
    assert _stored_ids(sandbox.db, tenant, cmd) == []
    ids = poll_until(lambda: _stored_ids(sandbox.db, tenant, cmd), timeout=LATE + 5)
    committed = time.monotonic()
    assert committed - started >= LATE - 0.1
    assert client.get(f"{url}/{ids[0]}").status_code == 200
    search = f"{url}?{ident(cmd)}"
    assert client.get(search).json()["total"] == 0
    poll_until(lambda: client.get(search).json()["total"] == 1, timeout=delay + 5)
    assert time.monotonic() - committed >= delay - 0.3


def test_a_shorter_delayed_indexing_fault_does_not_shorten_the_tenant_lag(
    client: httpx.Client, tenant: str
) -> None:
    lag = 1.5
    faults = {
        "index_delay_seconds": lag,
        "queue": [{"kind": "delayed_indexing", "seconds": 0.1, "method": "POST"}],
    }
    client.post(f"/_admin/faults/{tenant}", json=faults)
    cmd = new_cmd()
    started = time.monotonic()
    client.post(f"/fhir/{tenant}/Observation", json=observation(cmd))
    search = f"/fhir/{tenant}/Observation?{ident(cmd)}"
    poll_until(lambda: client.get(search).json()["total"] == 1, timeout=lag + 5)
    assert time.monotonic() - started >= lag - 0.1


def test_combo_and_commit_late_shapes(client: httpx.Client, tenant: str) -> None:
    combo = {
        "kind": "combo",
        "method": "post",
        "faults": [{"kind": "commit_late", "seconds": 8}, {"kind": "drop_identifier"}],
    }
    cfg = {"queue": [combo], "random": {"seed": 1, "rate": 0.5, "kinds": [combo]}}
    r = client.post(f"/_admin/faults/{tenant}", json=cfg)
    assert r.status_code == 200, r.text
    shown = {
        "kind": "combo",
        "faults": [{"kind": "commit_late", "seconds": 8.0}, {"kind": "drop_identifier"}],
        "method": "POST",
    }
    assert r.json()["queue"] == [shown]
    assert r.json()["random"]["kinds"] == [shown]
    bad_combos: list[list[dict[str, Any]]] = [
        [{"kind": "commit_then_drop"}],  # fewer than two
        [{"kind": "commit_then_drop"}, {"kind": "commit_then_hang", "seconds": 1}],
        [{"kind": "status", "status": 503}, {"kind": "delayed_indexing", "seconds": 1}],
        [{"kind": "connection_reset"}, {"kind": "drop_identifier"}],
        [{"kind": "delayed_indexing", "seconds": 1}, {"kind": "delayed_indexing", "seconds": 2}],
        [{"kind": "commit_then_drop", "method": "POST"}, {"kind": "drop_identifier"}],
        [{"kind": "combo", "faults": []}, {"kind": "drop_identifier"}],
    ]
    for faults in bad_combos:
        bad = {"queue": [{"kind": "combo", "faults": faults}]}
        assert client.post(f"/_admin/faults/{tenant}", json=bad).status_code == 400, faults
    extra = {"kind": "combo", "seconds": 1, "faults": combo["faults"]}
    assert client.post(f"/_admin/faults/{tenant}", json={"queue": [extra]}).status_code == 400


def test_random_generator_draws_combos_and_late_commits(
    client: httpx.Client, sandbox: SandboxProcess, tenant: str
) -> None:
    """A combo among the random kinds is injected whole (both of its parts on one request)."""
    combo = {
        "kind": "combo",
        "faults": [{"kind": "commit_then_drop"}, {"kind": "drop_identifier"}],
    }
    cfg = {"random": {"seed": 3, "rate": 1.0, "kinds": [{**combo, "method": "POST"}]}}
    assert client.post(f"/_admin/faults/{tenant}", json=cfg).status_code == 200
    cmd = new_cmd()
    with (
        httpx.Client(base_url=sandbox.url, timeout=5) as fresh,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        fresh.post(f"/fhir/{tenant}/Observation", json=observation(cmd))
    assert _stored_ids(sandbox.db, tenant, cmd) == []  # stored, without our identifier
    found = client.get(f"/fhir/{tenant}/Observation?patient=Patient/example").json()
    assert found["total"] == 1 and "identifier" not in found["entry"][0]["resource"]
    late = {"kind": "commit_late", "seconds": LATE, "method": "POST"}
    cfg = {"random": {"seed": 3, "rate": 1.0, "kinds": [late]}}
    assert client.post(f"/_admin/faults/{tenant}", json=cfg).status_code == 200
    started = time.monotonic()
    assert client.post(f"/fhir/{tenant}/Observation", json=observation()).status_code == 201
    assert time.monotonic() - started >= LATE - 0.1
