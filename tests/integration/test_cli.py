"""The `writeback` console script end to end, as a user runs it (acceptance 1 and the CLI)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from support.cli import WRITEBACK, run_cli
from support.ports import free_port
from support.tenants import write_tenants_file

from workers import samples

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def heart_rate_file(tmp_path: Path) -> Path:
    path = tmp_path / "hr.json"
    path.write_text(json.dumps(samples.heart_rate("cli-test", 71)))
    return path


def test_submit_wait_json_reports_verified_and_status_agrees(
    cli_env: dict[str, str], heart_rate_file: Path, key: str
) -> None:
    submitted = run_cli(
        "submit",
        str(heart_rate_file),
        "--tenant",
        "demo-r4",
        "--key",
        key,
        "--wait",
        "--json",
        env=cli_env,
    )
    assert submitted.returncode == 0, submitted.stderr
    result = json.loads(submitted.stdout)
    assert result["workflow_id"] == f"wb:demo-r4:{key}"
    assert result["state"] == "verified"
    assert result["resource"].startswith("Observation/")
    assert result["version"] == "1"

    shown = run_cli("status", result["workflow_id"], "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["resource"] == result["resource"]


def test_submit_same_file_twice_without_key_is_one_write(
    cli_env: dict[str, str], heart_rate_file: Path
) -> None:
    first = run_cli(
        "submit", str(heart_rate_file), "--tenant", "demo-epic", "--wait", "--json", env=cli_env
    )
    second = run_cli(
        "submit", str(heart_rate_file), "--tenant", "demo-epic", "--wait", "--json", env=cli_env
    )
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["workflow_id"] == b["workflow_id"]
    assert a["resource"] == b["resource"]


def test_submit_invalid_observation_exits_1_with_the_reason(
    cli_env: dict[str, str], tmp_path: Path, key: str
) -> None:
    resource = samples.heart_rate("cli-test", 71)
    del resource["code"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(resource))
    result = run_cli(
        "submit", str(path), "--tenant", "demo-r4", "--key", key, "--wait", env=cli_env
    )
    assert result.returncode == 1
    assert "rejected: code: missing" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON (line 1, column 2)"),
        ("[1, 2]", "must hold one FHIR resource"),
        ("{}", "resource is empty"),
        (
            '{"resourceType": "Observation", "extension": ' + "[" * 40 + "]" * 40 + "}",
            "invalid command: resource.extension" + "[0]" * 30 + ": max_depth exceeded (limit 32)",
        ),
    ],
)
def test_submit_malformed_file_exits_2_before_anything_starts(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    result = run_cli(
        "submit", str(path), "--tenant", "demo-r4", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"}
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_submit_rejects_a_key_that_could_carry_patient_data(heart_rate_file: Path) -> None:
    result = run_cli(
        "submit",
        str(heart_rate_file),
        "--tenant",
        "demo-r4",
        "--key",
        "Jane Doe 1970-01-01",
        env={"TEMPORAL_ADDRESS": "127.0.0.1:1"},
    )
    assert result.returncode == 2
    assert "idempotency_key" in result.stderr


def test_status_of_unknown_write_exits_2(cli_env: dict[str, str]) -> None:
    result = run_cli("status", "wb:demo-r4:never-submitted", env=cli_env)
    assert result.returncode == 2
    assert "no write with workflow id" in result.stderr


def test_unreachable_temporal_is_a_clear_error(heart_rate_file: Path) -> None:
    port = free_port()
    result = run_cli(
        "submit",
        str(heart_rate_file),
        "--tenant",
        "demo-r4",
        env={"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"},
        timeout=60,
    )
    assert result.returncode == 2
    assert f"cannot reach Temporal at 127.0.0.1:{port}" in result.stderr


def stack_args(tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    ports = {
        "temporal": free_port(),
        "ui": free_port(),
        "sandbox": free_port(),
        "codec": free_port(),
        "api": free_port(),
    }
    tenants = write_tenants_file(tmp_path / "tenants.toml", f"http://127.0.0.1:{ports['sandbox']}")
    args = [
        "--state-dir",
        str(tmp_path / "state"),
        "--tenants",
        str(tenants),
        "--temporal-port",
        str(ports["temporal"]),
        "--ui-port",
        str(ports["ui"]),
        "--sandbox-port",
        str(ports["sandbox"]),
        "--codec-port",
        str(ports["codec"]),
        "--api-port",
        str(ports["api"]),
    ]
    return args, ports


def test_demo_brings_the_stack_up_and_writes_samples_to_verified(tmp_path: Path) -> None:
    args, _ports = stack_args(tmp_path)
    result = run_cli("demo", *args, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: all writes ended as expected" in result.stdout
    assert result.stdout.count(" verified ") >= 9
    assert "holds 1 resource(s) carrying its command identifier" in result.stdout


def test_dev_serves_writes_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, heart_rate_file: Path
) -> None:
    args, ports = stack_args(tmp_path)
    dev = subprocess.Popen(
        [*WRITEBACK, "dev", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a suite started in the background (`cmd &` in a script) ignores SIGINT and a child
        # inherits that: give `dev` the Ctrl-C of a terminal, which is what is tested
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert dev.stdout is not None
        banner = [dev.stdout.readline()]
        while not banner[-1].startswith("Ctrl-C") and len(banner) < 20:
            banner.append(dev.stdout.readline())
        assert any(f"127.0.0.1:{ports['ui']}" in line for line in banner), banner
        sweeps = next(line for line in banner if line.startswith("Sweeps"))
        assert int(sweeps.split()[1]) >= 3, "one reconciliation schedule per tenant"
        assert banner[-1].startswith("Ctrl-C stops everything"), banner
        submitted = run_cli(
            "submit",
            str(heart_rate_file),
            "--tenant",
            "demo-cerner",
            "--wait",
            "--json",
            env={"TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}"},
        )
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["state"] == "verified"
        # the UI's codec server: a token is needed; the dev token decodes as a bearer token or
        # through a signed-in session, never from a URL
        codec = f"http://127.0.0.1:{ports['codec']}"
        token = (tmp_path / "state" / "codec_dev_token").read_text()
        empty = {"payloads": []}
        assert httpx.post(f"{codec}/decode", json=empty).status_code == 401
        assert httpx.post(f"{codec}/t/{token}/decode", json=empty).status_code == 404
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{codec}/decode", json=empty, headers=bearer).status_code == 200
        with httpx.Client(base_url=codec) as browser:
            assert browser.post("/wb-codec/login", data={"token": token}).status_code == 200
            assert browser.post("/wb-codec/decode", json=empty).status_code == 200
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=60)
    assert code == 0
    for port in ports.values():  # every child process is gone: its port is free again
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
