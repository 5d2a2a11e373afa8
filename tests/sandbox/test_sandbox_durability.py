"""Process-level behaviour: restart persistence, concurrency, signals, db schema."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from support.sandbox_process import SandboxProcess, ident, new_cmd, observation


def test_persistence_across_restart(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    db = tmp_path / "nested" / "dir" / "s.db"
    first = start_sandbox(db)
    cmd = new_cmd()
    with httpx.Client(base_url=first.url) as c:
        rid = c.post("/fhir/demo-r4/Observation", json=observation(cmd)).json()["id"]
    assert first.stop() == 0
    second = start_sandbox(db)
    with httpx.Client(base_url=second.url) as c:
        assert c.get(f"/fhir/demo-r4/Observation/{rid}").json()["identifier"][0]["value"] == cmd
        r = c.post(
            "/fhir/demo-r4/Observation",
            json=observation(cmd),
            headers={"If-None-Exist": ident(cmd)},
        )
        assert r.status_code == 200 and r.json()["id"] == rid


def test_concurrent_conditional_creates_leave_one(client: httpx.Client) -> None:
    cmd = new_cmd()
    base = str(client.base_url)

    def create(_: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post(
                "/fhir/demo-r4/Observation",
                json=observation(cmd),
                headers={"If-None-Exist": ident(cmd)},
            )
            return r.status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(create, range(20)))
    assert sorted(statuses) == [200] * 19 + [201]
    assert client.get(f"/fhir/demo-r4/Observation?{ident(cmd)}").json()["total"] == 1


def test_cli_personality_mapping(start_sandbox: Callable[..., SandboxProcess]) -> None:
    sp = start_sandbox(None, "--personality", "acme=epic", "--log-level", "warning")
    with httpx.Client(base_url=sp.url) as c:
        r = c.post("/fhir/acme/Observation", json=observation())
        assert r.status_code == 201 and r.content == b""


def test_db_schema_is_auditable(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    db = tmp_path / "audit.db"
    sp = start_sandbox(db)
    cmd = new_cmd()
    with httpx.Client(base_url=sp.url) as c:
        created = c.post("/fhir/demo-r4/Observation", json=observation(cmd)).json()
        c.put(
            f"/fhir/demo-r4/Observation/{created['id']}",
            json={**created, "status": "amended"},
            headers={"If-Match": 'W/"1"'},
        )
    sp.stop()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT tenant, type, id, version, last_updated, deleted, body FROM resource_versions"
        " ORDER BY version"
    ).fetchall()
    assert [r[3] for r in rows] == [1, 2]
    assert all(r[:3] == ("demo-r4", "Observation", created["id"]) and r[5] == 0 for r in rows)
    body = json.loads(rows[1][6])
    assert body["meta"] == {"versionId": "2", "lastUpdated": rows[1][4]}
    tokens = set(
        conn.execute(
            "SELECT param, system, value FROM resource_tokens WHERE id=?", (created["id"],)
        )
    )
    assert tokens == {
        ("identifier", "urn:writeback:command", cmd),
        ("patient", "", "Patient/example"),
        ("subject", "", "Patient/example"),
        ("code", "http://loinc.org", "8867-4"),
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"),
    }
    (current,) = conn.execute(
        "SELECT version, deleted, indexed_at IS NOT NULL FROM resource_current WHERE id=?",
        (created["id"],),
    ).fetchall()
    assert current == (2, 0, 1)
    conn.close()
