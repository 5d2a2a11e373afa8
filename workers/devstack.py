"""The embedded stack for one machine: Temporal dev server (+ Web UI), sandbox EHR, a worker and
the HTTP API, each a child process, started in order and stopped in reverse on exit.

The stack is the one place that creates a payload key file on its own (and says so): the local
stack's, in its state directory. The codec server's dev token stays out of every URL and process
argument: the dev server's Web UI gets the codec's cookie endpoint (``…/wb-codec``, sign in there
once with the token from ``codec_dev_token``; workers/codec_server.py), unless
``codec_token_in_url`` asks for the old ``/t/{token}`` form.

The HTTP API's dev issuer, JWKS, caller key and clients are made in ``state/api/``
(workers/api/dev_setup.py); the worker's caller registry is the one made there (the API's key for
each API client), after any registry ``$WRITEBACK_CALLER_KEYS`` names."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from adapters.caller_keys import CALLER_KEYS_ENV
from adapters.tenants import TenantConfigError, load_tenants
from workers.api.dev_setup import ensure_dev_api
from workers.codec_server import UI_PREFIX, dev_token
from workers.keys import KEYS_FILE_ENV, KEYS_JSON_ENV, create_key_file, keys_file_path
from workers.settings import venv_binary
from workers.worker import WORKER_READY
from workflows import search_attributes as sa


@dataclass
class StackConfig:
    state_dir: Path
    tenants_path: Path
    temporal_port: int = 7233
    ui_port: int = 8233
    sandbox_port: int = 8090
    codec_port: int = 8234
    api_port: int = 8235
    start_worker: bool = True
    #: the HTTP API (with the worker only: it answers nothing useful without one)
    start_api: bool = True
    #: The Web UI's codec endpoint carries the dev token (``/t/{token}``): visible in the dev
    #: server's arguments and the UI's settings. Off: the UI signs in at ``/wb-codec/login``.
    codec_token_in_url: bool = False

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_config(self) -> Path:
        return self.state_dir / "api" / "api.toml"

    @property
    def api_registry(self) -> Path:
        """The worker's registry of the API's key for each API client (remade at each start)."""
        return self.state_dir / "api" / "callers.toml"

    @property
    def codec_url(self) -> str:
        return f"http://127.0.0.1:{self.codec_port}"

    def ui_codec_endpoint(self, token: str) -> str:
        """What the Web UI is told to call: the cookie endpoint, or (opted in) the token's URL."""
        if self.codec_token_in_url:
            return f"{self.codec_url}/t/{token}"
        return f"{self.codec_url}{UI_PREFIX}"

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this stack (demo tenants read the sandbox URL) and to
        read its payloads (the stack's key file)."""
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "WRITEBACK_SANDBOX_URL": self.sandbox_url,
            KEYS_FILE_ENV: str(keys_file_path(self.state_dir)),
            # the API's key for its clients, after a registry of your own
            CALLER_KEYS_ENV: os.pathsep.join(
                [*filter(None, [os.environ.get(CALLER_KEYS_ENV)]), str(self.api_registry)]
            ),
        }


@dataclass
class Stack:
    config: StackConfig
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)


def temporal_dev_server_command(
    temporal_port: int,
    ui_port: int,
    db_file: Path | None,
    log_level: str = "error",
    codec_endpoint: str | None = None,
) -> list[str]:
    """``temporal server start-dev`` with writeback's search attributes and SQLite tuning."""
    command = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(temporal_port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        log_level,
    ]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
        command += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    for key in sa.ALL:
        command += ["--search-attribute", f"{key.name}={sa.type_name(key)}"]
    if codec_endpoint:
        command += ["--ui-codec-endpoint", codec_endpoint]
    return command


def codec_server_command(config: StackConfig) -> list[str]:
    command = [
        *(sys.executable, "-m", "workers", "codec-server", "--port", str(config.codec_port)),
        *("--tokens", str(config.state_dir / "codec_tokens.json")),
        *("--ui-origin", config.ui_url, "--ui-origin", f"http://localhost:{config.ui_port}"),
    ]
    return command + (["--allow-url-token"] if config.codec_token_in_url else [])


def ensure_dev_keys(state_dir: Path) -> None:
    """The local stack's payload key file: created when missing, and said so (no other process
    ever creates one: workers/keys.py)."""
    if os.environ.get(KEYS_JSON_ENV):
        return
    path = keys_file_path(state_dir)
    if create_key_file(path):
        print(f"created a payload key file for this local stack: {path}", file=sys.stderr)


def sandbox_command(port: int, db_file: Path, tenants_path: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--db", str(db_file)]
    return command + proprietary_personalities(tenants_path)


def proprietary_personalities(tenants_path: Path | None) -> list[str]:
    """``--personality T=NAME`` for the tenants whose vendor adapter names a ``dev_personality``
    (athenaOne, Veradigm: the sandbox serves a vendor API only under the vendor's personality);
    other tenants work as the sandbox maps them (r4 unless it knows the tenant id)."""
    if tenants_path is None:
        return []
    try:
        tenants = load_tenants(tenants_path)
    except TenantConfigError:
        return []  # the worker reports the file's problem
    return [
        arg
        for tenant in tenants
        if (personality := tenant.adapter().dev_personality)
        for arg in ("--personality", f"{tenant.id}={personality}")
    ]


def worker_command(tenants_path: Path) -> list[str]:
    return [sys.executable, "-m", "workers", "worker", "--tenants", str(tenants_path)]


def api_command(config: StackConfig) -> list[str]:
    return [
        *(sys.executable, "-m", "workers", "api", "--port", str(config.api_port)),
        *("--config", str(config.api_config), "--tenants", str(config.tenants_path)),
    ]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout:.0f}s")


def wait_for_http(url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before serving {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


def wait_for_line(
    log: Path, offset: int, text: str, timeout: float, process: subprocess.Popen[bytes]
) -> None:
    """Wait until ``text`` appears in ``log`` after byte ``offset`` (the process's own output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as handle:
            handle.seek(offset)
            if text.encode() in handle.read():
                return
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}; see {log}")
        time.sleep(0.05)
    raise TimeoutError(f"'{text}' not seen in {log} after {timeout:.0f}s")


def stop_processes(stack: Stack, timeout: float = 10.0) -> None:
    """Terminate children in reverse start order; kill what does not stop in time."""
    for _name, process in reversed(stack.processes):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    stack.processes.clear()


@contextlib.contextmanager
def running_stack(config: StackConfig, log_dir: Path | None = None) -> Iterator[Stack]:
    """Start the stack; always stop it on exit (Ctrl-C, and SIGTERM too: a killed launcher must
    not leave a dev server, sandbox and worker running behind it)."""

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    logs = log_dir or config.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(config)

    def spawn(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log_file = (logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **config.environment()},
        )
        stack.processes.append((name, process))
        return process

    ensure_dev_keys(config.state_dir)  # before any child: they all read it
    ensure_dev_api(config.state_dir)  # the worker reads its caller registry
    # the dev UI sends no header of ours: it signs in at the codec server (a cookie), unless the
    # token in the URL was asked for
    codec_endpoint = config.ui_codec_endpoint(dev_token(config.state_dir))
    try:
        codec = spawn("codec-server", codec_server_command(config))
        temporal = spawn(
            "temporal",
            temporal_dev_server_command(
                config.temporal_port,
                config.ui_port,
                config.state_dir / "temporal.db",
                codec_endpoint=codec_endpoint,
            ),
        )
        sandbox = spawn(
            "sandbox",
            sandbox_command(
                config.sandbox_port, config.state_dir / "sandbox.db", config.tenants_path
            ),
        )
        wait_for_port(config.temporal_port, 60, temporal)
        wait_for_http(f"{config.sandbox_url}/healthz", 30, sandbox)
        wait_for_port(config.codec_port, 30, codec)
        if config.start_worker:
            worker_log = logs / "worker.log"
            offset = worker_log.stat().st_size if worker_log.exists() else 0
            worker = spawn("worker", worker_command(config.tenants_path))
            wait_for_line(worker_log, offset, WORKER_READY, 60, worker)
            if config.start_api:
                api = spawn("api", api_command(config))
                wait_for_http(f"{config.api_url}/healthz", 60, api)
        yield stack
    finally:
        stop_processes(stack)
        signal.signal(signal.SIGTERM, previous)
