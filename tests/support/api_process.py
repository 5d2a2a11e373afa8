"""The HTTP API (`writeback api`) as a real child process for tests, with its own issuer key,
JWKS, caller key and clients (workers/api/dev_setup.py makes them as for the dev stack)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.caller_keys import CALLER_KEYS_ENV, new_private_key, private_pem
from support.child_process import announced, stop
from support.ports import free_port
from support.worker_process import WorkerProcess
from workers.api.config import ApiConfig, load_api_config
from workers.api.dev_setup import load_private, mint_token, new_issuer, registry
from workers.api_cli import API_READY

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def write_api_config(directory: Path, clients: str, **settings: str) -> ApiConfig:
    """``directory/api.toml`` (with a new issuer, JWKS and caller key beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    new_issuer(directory)
    (directory / "api-caller.pem").write_bytes(private_pem(new_private_key()))
    lines = [
        'issuer = "https://issuer.test"',
        'audience = "writeback-api-test"',
        'jwks_file = "jwks.json"',
        'caller_key_file = "api-caller.pem"',
        *(f"{name} = {value}" for name, value in settings.items()),
    ]
    (directory / "api.toml").write_text("\n".join(lines) + "\n\n" + clients)
    return load_api_config(directory / "api.toml")


def write_worker_registry(directory: Path, config: ApiConfig) -> Path:
    """A caller registry directory: the tests' own registry and the API's key for its clients."""
    directory.mkdir(parents=True, exist_ok=True)
    tests_registry = Path(os.environ["WRITEBACK_CALLER_KEYS"])
    files = sorted(tests_registry.glob("*.toml")) if tests_registry.is_dir() else [tests_registry]
    for index, file in enumerate(files):
        (directory / f"tests-{index}.toml").write_text(file.read_text())
    (directory / "api.toml").write_text(registry(config, load_private(config.caller_key_file)))
    return directory


class ApiProcess:
    """``python -m workers api`` on a free port; ``url`` once it answers."""

    def __init__(
        self,
        address: str,
        task_queue: str,
        config_dir: Path,
        tenants_file: Path,
        port: int,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.task_queue = task_queue
        self.config = load_api_config(config_dir / "api.toml")
        self._log = (config_dir / "api.log").open("ab")
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "WRITEBACK_TASK_QUEUE": task_queue,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "workers", "api", "--port", str(port)),
                *("--config", str(config_dir / "api.toml"), "--tenants", str(tenants_file)),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        url = announced(self.proc, API_READY, START_TIMEOUT)
        if url is None:
            self.stop()
            raise RuntimeError(f"the API did not start; see {self.config_dir / 'api.log'}")
        return url

    def token(
        self,
        client: str,
        *scopes: str,
        tenants: list[str] | None = None,
        user: str | None = None,
        ttl: int = 600,
        now: float | None = None,
    ) -> str:
        issuer = self.config_dir / "issuer.pem"
        return mint_token(issuer, self.config, client, scopes, tenants, user, ttl, now)

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()


@contextmanager
def running_api(address: str, tenants_file: Path, base: Path, clients: str) -> Iterator[ApiProcess]:
    """An API process for ``clients`` and a ``writeback worker`` process behind it, on a task
    queue of their own; the worker's registry holds the API's caller key for those clients."""
    config = write_api_config(base / "api", clients)
    registry = write_worker_registry(base / "callers", config)
    task_queue = f"api-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        address, task_queue, tenants_file, base / "worker.log", {CALLER_KEYS_ENV: str(registry)}
    )
    try:
        process = ApiProcess(address, task_queue, base / "api", tenants_file, free_port())
        try:
            yield process
        finally:
            process.stop()
    finally:
        worker.stop()
