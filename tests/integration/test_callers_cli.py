"""Caller keys end to end, as an operator sets them up (README, Security: "Callers"): a key pair
from ``writeback callers keygen``, its table in the registry of a ``writeback worker`` process,
and ``writeback submit --caller-key`` signing as ``--requested-by``. A worker whose tenants want
credentials does not start without a registry."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cli
from support.temporal import temporal_address
from support.worker_process import WorkerProcess
from temporalio.testing import WorkflowEnvironment

from adapters.caller_keys import CALLER_KEYS_ENV
from adapters.callers import CALLER_KEY_ENV
from workers import samples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private key, registry) made by the CLI for the caller ``svc-x``."""
    out = tmp_path_factory.mktemp("callers")
    made = run_cli("callers", "keygen", "svc-x", "--out", str(out))
    assert made.returncode == 0, made.stderr
    registry = out / "callers.toml"
    registry.write_text(made.stdout)
    return out / "svc-x.pem", registry


@pytest.fixture(scope="module")
def env(
    dev_server: WorkflowEnvironment,
    tenants_file: Path,
    service_key: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """A worker process that knows svc-x's key only; the CLI has no key of its own."""
    _key, registry = service_key
    address, queue = temporal_address(dev_server), f"callers-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("callers-worker") / "worker.log"
    worker = WorkerProcess(address, queue, tenants_file, log, {CALLER_KEYS_ENV: str(registry)})
    yield {"TEMPORAL_ADDRESS": address, "WRITEBACK_TASK_QUEUE": queue, CALLER_KEY_ENV: ""}
    worker.stop()


def submit(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    resource = tmp_path / "hr.json"
    resource.write_text(json.dumps(samples.heart_rate("callers-cli", 70)))
    key = f"cc-{uuid.uuid4().hex[:12]}"
    done = run_cli(
        "submit", str(resource), "--tenant", "demo-r4", "--key", key, "--wait", "--json", *args,
        env=env,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_registry_entry(
    service_key: tuple[Path, Path],
) -> None:
    key, registry = service_key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    listed = run_cli("callers", "list", "--registry", str(registry))
    assert listed.returncode == 0, listed.stderr
    assert "1 caller key(s)" in listed.stdout and "svc-x" in listed.stdout


def test_submit_signed_with_the_callers_key_is_written(
    env: dict[str, str], service_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key, _registry = service_key
    code, result = submit(env, tmp_path, "--requested-by", "svc-x", "--caller-key", str(key))
    assert code == 0, result
    assert result["state"] == "verified"
    authorization = result["authorization"]
    assert isinstance(authorization, dict)
    assert str(authorization["checks"][0]).startswith("caller-credential:svc-x@")


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--requested-by", "svc-x"), "no caller credential"),
        (("--requested-by", "svc-y"), "credential key not registered for its issuer"),
    ],
)
def test_submit_without_the_callers_key_is_rejected(
    env: dict[str, str],
    service_key: tuple[Path, Path],
    tmp_path: Path,
    args: tuple[str, ...],
    why: str,
) -> None:
    key, _registry = service_key
    signed = ("--caller-key", str(key)) if "svc-y" in args else ()
    code, result = submit(env, tmp_path, *args, *signed)
    assert code == 1
    assert (result["state"], result["error_class"]) == ("rejected", "authorization")
    assert result["reason"] == f"caller not proved: {why}"


def test_a_worker_without_caller_keys_refuses_to_start(
    dev_server: WorkflowEnvironment, tenants_file: Path
) -> None:
    started = run_cli(
        "worker",
        "--tenants",
        str(tenants_file),
        env={"TEMPORAL_ADDRESS": temporal_address(dev_server), CALLER_KEYS_ENV: ""},
        timeout=60,
    )
    assert started.returncode == 2
    assert "no caller key is registered" in started.stderr
