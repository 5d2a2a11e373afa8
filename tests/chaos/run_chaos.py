"""The chaos run: many writes across every demo personality while the EHR misbehaves, workers are
SIGKILLed at random and the Temporal server is restarted once; then an independent audit of the
sandbox's database counts duplicates, losses and unexplained endings.

    python tests/chaos/run_chaos.py --writes 10000        # full size (locally)
    python tests/chaos/run_chaos.py --writes 60           # CI size (what tests/chaos runs)

Exit status 1 on any duplicate, loss or unexplained ending.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: make tests/support importable
    sys.path.insert(0, str(TESTS))

import httpx  # noqa: E402
from support.audit import resources_for_command  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.sandbox_process import SandboxProcess  # noqa: E402
from support.smart_keys import make_key  # noqa: E402
from support.worker_process import WorkerProcess  # noqa: E402

from workers import samples  # noqa: E402
from workers.client import WritebackClient, WriteEndedAbnormally, WriteNotFound  # noqa: E402
from workers.devstack import temporal_dev_server_command, wait_for_port  # noqa: E402
from workers.temporal_client import connect  # noqa: E402
from workflows.contract import WriteCommand, WriteState, WriteStatus  # noqa: E402

#: (tenant, personality, vendor, conditional create, search lag) — the sandbox's faults for each
#: come from its seeded random fault generator, so a run is reproducible from --seed.
TENANTS = [
    ("chaos-r4", "r4", "generic_r4", True, 0.0),
    ("chaos-epic", "epic", "epic", False, 3.0),
    ("chaos-cerner", "cerner", "cerner", False, 0.0),
    ("chaos-smart", "r4", "generic_r4", True, 0.0),  # SMART tokens: short-lived, revoked at random
]
SMART_TENANT, SMART_CLIENT, TOKEN_TTL = "chaos-smart", "chaos-client", 3
FAULT_KINDS = [
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 429, "retry_after": 1},
    {"kind": "connection_reset"},
    {"kind": "commit_then_drop", "method": "POST"},
    {"kind": "delayed_indexing", "seconds": 2, "method": "POST"},
]
SETTLE_POLL = 1.0


@dataclass
class ChaosConfig:
    writes: int = 60
    seed: int = 7
    fault_rate: float = 0.25
    invalid_share: float = 0.05
    concurrency: int = 50
    workers: int = 2
    kill_every: tuple[float, float] = (3.0, 8.0)
    restart_server: bool = True
    deadline_seconds: float = 600.0


@dataclass
class ChaosReport:
    writes: int = 0
    expected_rejections: int = 0
    states: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    worker_kills: int = 0
    tokens_revoked: int = 0
    server_restarts: int = 0
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.unexplained)


def tenants_toml(sandbox_url: str, keys_dir: Path) -> str:
    blocks = []
    for tenant, _personality, vendor, conditional, lag in TENANTS:
        block = (
            f'[[tenant]]\nid = "{tenant}"\nvendor = "{vendor}"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{tenant}"\ntimeout_seconds = 2\n'
            "breaker = { failures = 8, cooldown_seconds = 2 }\n"
            f"capabilities = {{ conditional_create = {str(conditional).lower()}, "
            f'search_lag_seconds = {lag}, writable = {{ Observation = ["create"] }} }}\n'
        )
        if tenant == SMART_TENANT:
            block += (
                f'auth = {{ kind = "smart_backend", client_id = "{SMART_CLIENT}", '
                f'private_key_file = "{keys_dir / SMART_CLIENT}.pem", '
                f'key_id = "{SMART_CLIENT}-1" }}\n'
            )
        blocks.append(block)
    return "\n".join(blocks)


def plan(config: ChaosConfig, rng: random.Random) -> list[tuple[WriteCommand, bool]]:
    """(command, should it be written?): a few are invalid, to be rejected writing nothing."""
    run = uuid.uuid4().hex[:6]
    commands = []
    for n in range(config.writes):
        tenant = TENANTS[n % len(TENANTS)][0]
        resource = samples.heart_rate(f"chaos-{run}-{n}", 50 + n % 100)
        valid = rng.random() >= config.invalid_share
        if not valid:
            del resource["code"]
        commands.append(
            (
                WriteCommand(tenant=tenant, idempotency_key=f"chaos-{run}-{n}", resource=resource),
                valid,
            )
        )
    return commands


class TemporalServer:
    """The dev server on a file database, so that a restart keeps every workflow."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._command = temporal_dev_server_command(
            self.port, free_port(), workdir / "temporal.db", log_level="error"
        )
        self._log = (workdir / "temporal.log").open("ab")
        self.process = self._start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self._command, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 60, process)
        return process

    def restart(self) -> None:
        self.stop()
        self.process = self._start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def chaos_monkey(
    config: ChaosConfig,
    rng: random.Random,
    workers: list[WorkerProcess],
    start_worker: object,
    admin: httpx.AsyncClient,
    report: ChaosReport,
    stop: asyncio.Event,
) -> None:
    """At random intervals: SIGKILL a random worker and start a replacement, and revoke every
    SMART token of the auth tenant (the next requests meet a 401)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*config.kill_every))
        if stop.is_set():
            return
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        report.worker_kills += 1
        revoked = await admin.post(f"/_admin/tenants/{SMART_TENANT}/revoke-tokens", json={})
        report.tokens_revoked += int(revoked.json().get("revoked", 0))
        workers.append(await asyncio.to_thread(start_worker))  # type: ignore[arg-type]


async def final_state(client: WritebackClient, workflow_id: str) -> WriteStatus | str:
    """The write's status, or why it has none (a Temporal-level ending is unexplained)."""
    try:
        return await client.status(workflow_id)
    except (WriteEndedAbnormally, WriteNotFound) as exc:
        return f"{type(exc).__name__}: {exc}"


async def settled(client: WritebackClient, workflow_ids: list[str]) -> bool:
    """True when no write is still on its way (every one is terminal or waiting for a person)."""
    moving = 0
    async for execution in client.temporal.list_workflows(
        "ExecutionStatus = 'Running' AND WritebackState != 'pending_confirmation' "
        "AND WritebackState != 'conflict'"
    ):
        moving += execution.id in workflow_ids
    return moving == 0


async def run(config: ChaosConfig, workdir: Path) -> ChaosReport:
    rng = random.Random(config.seed)
    report = ChaosReport(writes=config.writes)
    started = time.monotonic()
    server = TemporalServer(workdir)
    personalities = [arg for t in TENANTS for arg in ("--personality", f"{t[0]}={t[1]}")]
    ehr = SandboxProcess(workdir / "ehr.db", workdir / "ehr.log", *personalities)
    tenants_file = workdir / "tenants.toml"
    tenants_file.write_text(tenants_toml(ehr.url, workdir))
    jwk = make_key(workdir, SMART_CLIENT, "RS384")
    task_queue = f"chaos-{uuid.uuid4().hex[:6]}"

    def start_worker() -> WorkerProcess:
        log = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
        return WorkerProcess(server.address, task_queue, tenants_file, log)

    workers = [start_worker() for _ in range(config.workers)]
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=ehr.url, timeout=10) as admin:
            for index, (tenant, *_rest) in enumerate(TENANTS):
                random_faults = {
                    "seed": config.seed + index,
                    "rate": config.fault_rate,
                    "kinds": FAULT_KINDS,
                }
                response = await admin.post(
                    f"/_admin/faults/{tenant}", json={"random": random_faults}
                )
                response.raise_for_status()
            client_registration = {
                "client_id": SMART_CLIENT,
                "jwks": {"keys": [jwk]},
                "scopes": ["system/Observation.cruds"],
            }
            response = await admin.post(
                f"/_admin/tenants/{SMART_TENANT}/auth",
                json={"token_ttl_seconds": TOKEN_TTL, "clients": [client_registration]},
            )
            response.raise_for_status()
            client = WritebackClient(await connect(server.address), task_queue=task_queue)
            commands = plan(config, rng)
            report.expected_rejections = sum(not valid for _, valid in commands)
            monkey = asyncio.create_task(
                chaos_monkey(config, rng, workers, start_worker, admin, report, stop)
            )
            gate = asyncio.Semaphore(config.concurrency)

            async def submit(command: WriteCommand) -> None:
                async with gate:
                    for _ in range(30):  # the server may be restarting: the command must land
                        try:
                            await client.submit(command)
                            return
                        except Exception:
                            await asyncio.sleep(1)
                    raise RuntimeError(f"could not submit {command.workflow_id}")

            half = len(commands) // 2
            await asyncio.gather(*(submit(command) for command, _ in commands[:half]))
            if config.restart_server:
                await asyncio.to_thread(server.restart)
                report.server_restarts += 1
                client = WritebackClient(
                    await connect(server.address, wait_seconds=60), task_queue=task_queue
                )
            await asyncio.gather(*(submit(command) for command, _ in commands[half:]))

            ids = [command.workflow_id for command, _ in commands]
            for _ in range(int(config.deadline_seconds / SETTLE_POLL)):
                if await settled(client, ids):
                    break
                await asyncio.sleep(SETTLE_POLL)
            stop.set()
            await monkey
            for tenant, *_rest in TENANTS:
                by_kind = (await admin.get(f"/_admin/faults/{tenant}")).json().get("injected", {})
                for kind, count in by_kind.items():
                    report.faults[kind] = report.faults.get(kind, 0) + int(count)

            states: Counter[str] = Counter()
            for command, valid in commands:
                final = await final_state(client, command.workflow_id)
                copies = resources_for_command(ehr.db, command.tenant, command.command_identifier)
                if isinstance(final, str):
                    states[final] += 1
                    report.unexplained.append(f"{command.workflow_id}: {final}")
                    continue
                states[final.state.value] += 1
                if copies > 1:
                    report.duplicates.append(f"{command.workflow_id}: {copies} resources")
                if final.state is WriteState.VERIFIED and copies != 1:
                    report.lost.append(f"{command.workflow_id}: verified, {copies} resources")
                elif final.state is WriteState.REJECTED and (valid or copies):
                    report.unexplained.append(f"{command.workflow_id}: rejected: {final.reason}")
                elif final.state.is_waiting_for_human and not final.reason:
                    report.unexplained.append(f"{command.workflow_id}: waiting, no reason")
                elif not final.state.is_settled:
                    report.lost.append(f"{command.workflow_id}: still {final.state.value}")
            report.states = dict(states)
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        ehr.stop()
        server.stop()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def print_report(report: ChaosReport) -> None:
    print(f"writes           {report.writes} ({report.expected_rejections} invalid on purpose)")
    print(f"final states     {json.dumps(report.states, sort_keys=True)}")
    print(f"faults injected  {json.dumps(report.faults, sort_keys=True)}")
    print(f"worker SIGKILLs  {report.worker_kills}; server restarts {report.server_restarts}")
    print(f"tokens revoked   {report.tokens_revoked} (tokens live {TOKEN_TTL} s)")
    print(f"duplicates       {len(report.duplicates)}")
    print(f"lost             {len(report.lost)}")
    print(f"unexplained      {len(report.unexplained)}")
    print(f"time             {report.seconds} s")
    for line in (report.duplicates + report.lost + report.unexplained)[:20]:
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=ChaosConfig.writes)
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    parser.add_argument("--fault-rate", type=float, default=ChaosConfig.fault_rate)
    parser.add_argument("--concurrency", type=int, default=ChaosConfig.concurrency)
    parser.add_argument(
        "--deadline", type=float, help="seconds to wait for every write to settle (default: scales)"
    )
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    config = ChaosConfig(
        writes=args.writes,
        seed=args.seed,
        fault_rate=args.fault_rate,
        concurrency=args.concurrency,
        deadline_seconds=args.deadline or max(600.0, args.writes * 0.5),
    )
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        report = asyncio.run(run(config, Path(workdir)))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
