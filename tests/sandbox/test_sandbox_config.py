"""The --config file (TOML), CLI precedence, reset endpoints and restart persistence."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support.sandbox_process import (
    ROOT,
    SandboxProcess,
    SigningKey,
    ident,
    new_cmd,
    observation,
    token_form,
)


def _config(tmp_path: Path, key: SigningKey, ec: SigningKey) -> Path:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "client.pem").write_text(key.public_pem())
    (tmp_path / "keys" / "ec.jwks.json").write_text(json.dumps({"keys": [ec.public_jwk()]}))
    path = tmp_path / "sandbox.toml"
    path.write_text(
        f"""
[tenants.acme-epic]
personality = "epic"

[tenants.acme-athena]
personality = "athena"
max_in_flight = 5

[tenants.acme-strict]
allowed_identifier_systems = ["urn:writeback:command"]

[tenants.acme-strict.faults]
index_delay_seconds = 0
random = {{ seed = 3, rate = 1.0, kinds = [{{ kind = "status", status = 503, type = "Patient" }}] }}
queue = [{{ kind = "status", status = 500, method = "DELETE" }}]

[tenants.acme-auth]
personality = "cerner"

[tenants.acme-auth.auth]
enabled = true
token_ttl_seconds = 120
[[tenants.acme-auth.auth.clients]]
client_id = "pem-client"
public_key_pem = "keys/client.pem"
kid = "{key.kid}"
scopes = ["system/Observation.cruds"]
[[tenants.acme-auth.auth.clients]]
client_id = "ec-client"
jwks_file = "keys/ec.jwks.json"
scopes = ["system/*.read"]
"""
    )
    return path


def test_config_file_tenants_faults_and_auth(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    key, ec = SigningKey("RS384"), SigningKey("ES384")
    sp = start_sandbox(None, "--config", str(_config(tmp_path, key, ec)))
    with httpx.Client(base_url=sp.url) as c:
        assert c.post("/fhir/acme-epic/Observation", json=observation()).content == b""
        assert c.get("/_admin/tenants/acme-athena").json()["max_in_flight"] == 5
        assert c.get("/fhir/acme-athena/Patient").status_code == 400  # ah-practice missing
        assert c.get("/fhir/demo-cerner/metadata").status_code == 200  # built-ins remain

        described = c.get("/_admin/faults/acme-strict").json()
        assert described["random"]["seed"] == 3 and described["queue"][0]["status"] == 500
        assert c.get("/fhir/acme-strict/Patient").status_code == 503
        body = observation()
        body["identifier"].append({"system": "urn:other", "value": "x"})
        stored = c.post("/fhir/acme-strict/Observation", json=body).json()
        assert [i["system"] for i in stored["identifier"]] == ["urn:writeback:command"]

        token_url = f"{sp.url}/fhir/acme-auth/auth/token"
        assert c.get("/fhir/acme-auth/Observation").status_code == 401
        pem = c.post(
            "/fhir/acme-auth/auth/token",
            data=token_form(key.assertion("pem-client", token_url), "system/Observation.cs"),
        ).json()
        assert pem["expires_in"] == 120
        bearer = {"Authorization": f"Bearer {pem['access_token']}"}
        assert c.post("/fhir/acme-auth/Observation", json=observation(), headers=bearer).is_success
        via_jwks = c.post(
            "/fhir/acme-auth/auth/token",
            data=token_form(ec.assertion("ec-client", token_url), "system/Patient.read"),
        )
        assert via_jwks.json()["scope"] == "system/Patient.read"


def test_cli_personality_overrides_config(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[tenants.x]\npersonality = "epic"\n[tenants.demo-r4]\npersonality = "veradigm"\n'
    )
    sp = start_sandbox(None, "--config", str(cfg), "--personality", "x=cerner")
    with httpx.Client(base_url=sp.url) as c:
        assert c.get("/_admin/tenants/x").json()["personality"] == "cerner"
        assert c.get("/_admin/tenants/demo-r4").json()["personality"] == "veradigm"
        assert c.get("/_admin/tenants/demo-epic").json()["personality"] == "epic"


def test_bad_config_names_file_tenant_and_field(tmp_path: Path) -> None:
    cases = {
        '[tenants.t1]\npersonality = "nope"\n': "tenants.t1",
        "[tenants.t2.faults]\nlatency_ms = -1\n": "tenants.t2.faults",
        '[tenants.t3.auth]\nclients = [{ client_id = "a" }]\n': "tenants.t3.auth",
        "[other]\n": "unknown top-level",
    }
    for text, expected in cases.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox",
                "--port",
                "0",
                "--db",
                str(tmp_path / "x.db"),
                "--config",
                str(cfg),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, text
        assert expected in done.stderr and "bad.toml" in done.stderr


def test_reset_one_tenant_or_all(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[tenants.keep.faults]\nqueue = [{ kind = "status", status = 500 }]\n')
    sp = start_sandbox(None, "--config", str(cfg))
    with httpx.Client(base_url=sp.url) as c:
        a, b = new_cmd(), new_cmd()
        c.post("/fhir/demo-r4/Observation", json=observation(a))
        c.post("/fhir/demo-cerner/Observation", json=observation(b))
        c.post("/_admin/faults/demo-r4", json={"latency_ms": 1})
        c.post("/_admin/tenants/demo-r4", json={"personality": "epic"})
        assert c.get("/fhir/keep/metadata").status_code == 500  # configured fault consumed
        assert c.post("/_admin/reset/demo-r4").status_code == 200
        assert c.get("/_admin/stats/demo-r4").json()["total"] == 0
        assert c.get(f"/fhir/demo-r4/Observation?{ident(a)}").json()["total"] == 0
        assert c.get("/_admin/faults/demo-r4").json()["latency_ms"] == 0
        assert c.get("/_admin/tenants/demo-r4").json()["personality"] == "r4"
        assert c.get(f"/fhir/demo-cerner/Observation?{ident(b)}").json()["total"] == 1
        assert c.post("/_admin/reset").status_code == 200
        assert c.get(f"/fhir/demo-cerner/Observation?{ident(b)}").json()["total"] == 0
        assert len(c.get("/_admin/faults/keep").json()["queue"]) == 1  # back to the config's


def test_delete_history_and_indexing_survive_restart(
    start_sandbox: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    db = tmp_path / "restart.db"
    first = start_sandbox(db)
    with httpx.Client(base_url=first.url) as c:
        v1 = c.post("/fhir/demo-epic/Condition", json=_held_condition()).headers["location"]
        obs = c.post("/fhir/demo-r4/Observation", json=observation()).json()
        c.put(f"/fhir/demo-r4/Observation/{obs['id']}", json=obs)
        c.delete(f"/fhir/demo-r4/Observation/{obs['id']}")
    first.stop()
    second = start_sandbox(db)
    with httpx.Client(base_url=second.url) as c:
        assert c.get(f"/fhir/demo-r4/Observation/{obs['id']}").status_code == 410
        assert c.get(f"/fhir/demo-r4/Observation/{obs['id']}/_history").json()["total"] == 3
        assert c.get(f"/fhir/demo-epic/{v1}").status_code == 200
        assert c.get("/fhir/demo-epic/Condition?patient=held").json()["total"] == 0  # still held


def _held_condition() -> dict[str, object]:
    return {
        "resourceType": "Condition",
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "provisional",
                }
            ]
        },
        "code": {"text": "x"},
        "subject": {"reference": "Patient/held"},
    }
