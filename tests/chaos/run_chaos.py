"""The chaos run: creates, updates (If-Match) and referral sagas on every vendor personality while
the EHR misbehaves (seeded random faults: 5xx, 429, resets, commit-then-drop, late commits past
the client's timeout, delayed indexing, and combinations of them on one request), Epic and Oracle
Health index with a lag longer than the product's retry delay, athenaOne and Veradigm patients have
more than 200 Observations already, workers are SIGKILLed at random and the Temporal server is
restarted once; then an independent audit of the sandbox's database (chaos_audit.py).

    python tests/chaos/run_chaos.py --writes 10000 --in-flight 200 --kill-every 20,40  # full size
    python tests/chaos/run_chaos.py --writes 60           # CI size (what tests/chaos runs)
    python tests/chaos/run_chaos.py --writes 120 --tenants epic,cerner

Exit status 1 on any duplicate, loss, unexplained ending or write unsettled at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for path in (TESTS, TESTS / "chaos"):  # run as a script: make support and siblings importable
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import httpx  # noqa: E402
from chaos_audit import audit, percentile  # noqa: E402
from chaos_plan import (  # noqa: E402
    SMART_CLIENT,
    TENANTS,
    TOKEN_TTL,
    ChaosTenant,
    commands,
    layout,
    pick_tenants,
    tenants_toml,
)
from chaos_seed import seed  # noqa: E402
from chaos_settle import SettleLog, Tracked, diagnose, drain, settle  # noqa: E402
from chaos_stack import TemporalServer, chaos_monkey, configure_ehr  # noqa: E402
from chaos_trails import Trails  # noqa: E402
from support.audit import load_chart  # noqa: E402
from support.callers import write_test_callers  # noqa: E402
from support.sandbox_process import SandboxProcess  # noqa: E402
from support.smart_keys import make_key  # noqa: E402
from support.worker_process import WorkerProcess  # noqa: E402

from adapters.caller_keys import CALLER_KEYS_ENV  # noqa: E402
from adapters.callers import CALLER_KEY_ENV  # noqa: E402
from workers.client import WritebackClient  # noqa: E402
from workers.keys import create_key_file, keys_file_path  # noqa: E402
from workers.settings import Settings  # noqa: E402
from workers.temporal_client import connect  # noqa: E402
from workflows.contract import WriteCommand  # noqa: E402
from workflows.saga_contract import SagaCommand  # noqa: E402

#: Writes still moving at the deadline that are diagnosed one by one (status, activity, timers).
DIAGNOSE_AT_MOST = 30


@dataclass
class ChaosConfig:
    writes: int = 60
    seed: int = 7
    tenants: tuple[ChaosTenant, ...] = TENANTS
    fault_rate: float = 0.25
    invalid_share: float = 0.05
    update_share: float = 0.2
    """Of the writes on tenants that take updates."""
    saga_share: float = 0.15
    """Of the writes on tenants that take referral sagas."""
    clinician_share: float = 0.3
    """Of the update targets: a clinician edited them after the user's version (a merge)."""
    late_commit_seconds: float = 8.0
    """commit_late faults: the EHR commits this long after the request came (timeout: 2 s)."""
    declared_late_commit_seconds: float | None = None
    """What the tenants declare as ``ambiguity.late_commit_seconds`` (None: the product's
    default, 60 s). Never their search lag: the product must cope with an index it cannot see."""
    index_lag_seconds: float = 6.0
    """Epic and Oracle Health tenants: every write is searchable only this long after it is
    stored; also the lag of the combined faults."""
    crowded_patients: int = 2
    crowd_size: int = 230
    concurrency: int = 50
    """Submissions in flight at once (not writes: every write is submitted within seconds)."""
    in_flight: int | None = None
    """Writes (and sagas) not yet settled at once: a write is submitted when an earlier one has
    settled, as a hospital's steady load arrives. None: all submitted at once (a burst). At full
    size a burst puts thousands of writes on two cores, where every worker kill makes its
    replacement replay them all; a window lets the run measure faults rather than its backlog."""
    workers: int = 2
    kill_every: tuple[float, float] = (3.0, 8.0)
    """Seconds between SIGKILLs (uniform). Each kill leaves its worker's attempts unanswered
    until they time out, and their creates in a quiet period: at full size, kills every few
    seconds keep most writes waiting on the last one (``--kill-every 20,40`` lets work move)."""
    restart_server: bool = True
    deadline_seconds: float = 600.0


@dataclass
class ChaosReport:
    writes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    tenants: list[str] = field(default_factory=list)
    expected_rejections: int = 0
    seeded: dict[str, int] = field(default_factory=dict)
    states: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    worker_kills: int = 0
    worker_startups: list[float] = field(default_factory=list)
    tokens_revoked: int = 0
    server_restarts: int = 0
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    settle_polls: dict[str, float] = field(default_factory=dict)
    settle_seconds: dict[str, float] = field(default_factory=dict)
    max_attempts: int = 0
    slowest: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.unexplained or self.unsettled)


async def run(config: ChaosConfig, workdir: Path) -> ChaosReport:
    if CALLER_KEYS_ENV not in os.environ:  # run alone: the tests' caller key, in the workdir
        registry, caller_key = write_test_callers(workdir)
        os.environ[CALLER_KEYS_ENV], os.environ[CALLER_KEY_ENV] = str(registry), str(caller_key)
    rng = random.Random(config.seed)
    tenants = config.tenants
    report = ChaosReport(writes=config.writes, tenants=[t.id for t in tenants])
    started = time.monotonic()
    phase = started

    def lap(name: str) -> None:
        nonlocal phase
        report.phases[name] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()

    # the run's payload keys, shared with its workers (no process makes up keys: workers/keys.py)
    create_key_file(keys_file_path(Settings.from_env().state_dir))
    server = TemporalServer(workdir)
    personalities = [arg for t in tenants for arg in ("--personality", f"{t.id}={t.personality}")]
    ehr = SandboxProcess(workdir / "ehr.db", workdir / "ehr.log", *personalities)
    toml = tenants_toml(tenants, ehr.url, workdir, config.declared_late_commit_seconds)
    (workdir / "tenants.toml").write_text(toml)
    jwk = make_key(workdir, SMART_CLIENT, "RS384")
    task_queue = f"chaos-{uuid.uuid4().hex[:6]}"

    def start_worker() -> WorkerProcess:
        log = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
        return WorkerProcess(server.address, task_queue, workdir / "tenants.toml", log)

    workers = [start_worker() for _ in range(config.workers)]
    stop = asyncio.Event()
    lap("start")
    try:
        async with httpx.AsyncClient(base_url=ehr.url, timeout=30) as admin:
            run_id = uuid.uuid4().hex[:6]
            slots = layout(
                config.writes,
                tenants,
                rng,
                invalid_share=config.invalid_share,
                update_share=config.update_share,
                saga_share=config.saga_share,
                crowded_patients=config.crowded_patients,
            )
            seeded = await seed(
                admin,
                slots,
                tenants,
                rng,
                run=run_id,
                clinician_share=config.clinician_share,
                crowded_patients=config.crowded_patients,
                crowd_size=config.crowd_size,
            )
            report.seeded = {
                "update_targets": len(seeded.targets),
                "clinician_edits": sum(bool(t.clinician_note) for t in seeded.targets.values()),
                "crowded_patients": sum(len(p) for p in seeded.crowds.values()),
                "resources": seeded.resources,
            }
            await configure_ehr(admin, config, jwk)
            planned = commands(slots, seeded, run_id)
            for p in planned:
                report.kinds[p.slot.kind] = report.kinds.get(p.slot.kind, 0) + 1
            report.expected_rejections = sum(not p.slot.valid for p in planned)
            lap("seed")
            client = WritebackClient(await connect(server.address), task_queue=task_queue)
            monkey = asyncio.create_task(
                chaos_monkey(config, rng, workers, start_worker, admin, report, stop)
            )
            trails = Trails(admin, report.tenants)
            collector = asyncio.create_task(trails.keep_collecting(stop))
            gate = asyncio.Semaphore(config.concurrency)

            window = asyncio.Semaphore(config.in_flight or len(planned))

            async def submit(command: WriteCommand | SagaCommand) -> None:
                async with window:
                    async with gate:
                        await land(command)
                    if config.in_flight:
                        await settled(command.workflow_id)

            async def land(command: WriteCommand | SagaCommand) -> None:
                for _ in range(30):  # the server may be restarting: the command must land
                    try:
                        if isinstance(command, SagaCommand):
                            await client.submit_saga(command)
                        else:
                            await client.submit(command)
                        return
                    except Exception:
                        await asyncio.sleep(1)
                raise RuntimeError(f"could not submit {command.workflow_id}")

            async def settled(workflow_id: str) -> None:
                """Until the write is settled (workers die, the server restarts: ask again)."""
                while True:
                    try:
                        await client.wait(workflow_id)
                        return
                    except Exception:
                        await asyncio.sleep(1)

            half = len(planned) // 2
            await asyncio.gather(*(submit(p.command) for p in planned[:half]))
            if config.restart_server:
                await asyncio.to_thread(server.restart)
                report.server_restarts += 1
                client = WritebackClient(
                    await connect(server.address, wait_seconds=60), task_queue=task_queue
                )
            await asyncio.gather(*(submit(p.command) for p in planned[half:]))
            lap("submit")

            tracked = Tracked(
                writes={p.workflow_id for p in planned if isinstance(p.command, WriteCommand)},
                sagas={
                    p.workflow_id: {
                        f"wb:{p.command.tenant}:{p.command.step_key(s.name)}"
                        for s in p.command.steps
                    }
                    for p in planned
                    if isinstance(p.command, SagaCommand)
                },
            )
            log = SettleLog()
            unsettled = await settle(client, tracked, config.deadline_seconds, log)
            for n, workflow_id in enumerate(sorted(unsettled)):  # now: they go on moving
                why = await diagnose(client, workflow_id) if n < DIAGNOSE_AT_MOST else "-"
                report.unsettled.append(f"{workflow_id}: {why}")
            report.settle_polls = {
                "polls": log.polls,
                "mean_ms": round(1000 * log.poll_seconds / max(1, log.polls), 1),
            }
            lap("settle")
            stop.set()
            await monkey
            report.phases["drain"] = await drain(
                admin, {t.id for t in tenants}, config.late_commit_seconds + 60
            )
            await collector
            await trails.collect()
            phase = time.monotonic()
            for tenant in tenants:
                described = (await admin.get(f"/_admin/faults/{tenant.id}")).json()
                for kind, count in described.get("injected", {}).items():
                    report.faults[kind] = report.faults.get(kind, 0) + int(count)
            charts = {t.id: load_chart(ehr.db, t.id) for t in tenants}
            verdicts = await audit(client, planned, charts, ehr.db, unsettled, trails)
            report.states = {kind: dict(states) for kind, states in verdicts.states.items()}
            report.duplicates, report.lost = verdicts.duplicates, verdicts.lost
            report.unexplained = verdicts.unexplained
            report.settle_seconds = {
                "p50": percentile(verdicts.settle_seconds, 0.5),
                "p95": percentile(verdicts.settle_seconds, 0.95),
                "max": percentile(verdicts.settle_seconds, 1.0),
            }
            report.max_attempts = max(verdicts.attempts, default=0)
            report.slowest = verdicts.slowest
            lap("audit")
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        ehr.stop()
        server.stop()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def print_report(report: ChaosReport) -> None:
    startups = report.worker_startups
    mean_startup = round(sum(startups) / len(startups), 1) if startups else 0.0
    print(f"tenants          {', '.join(report.tenants)}")
    print(
        f"writes           {report.writes} {json.dumps(report.kinds, sort_keys=True)} "
        f"({report.expected_rejections} invalid on purpose)"
    )
    print(f"seeded           {json.dumps(report.seeded, sort_keys=True)}")
    for kind, states in sorted(report.states.items()):
        print(f"final {kind:<10} {json.dumps(states, sort_keys=True)}")
    print(f"faults injected  {json.dumps(report.faults, sort_keys=True)}")
    print(
        f"worker SIGKILLs  {report.worker_kills} (replacement start-up mean {mean_startup} s, "
        f"max {max(startups, default=0.0)} s); server restarts {report.server_restarts}"
    )
    print(f"tokens revoked   {report.tokens_revoked} (tokens live {TOKEN_TTL} s)")
    print(
        f"settle time      {json.dumps(report.settle_seconds)} s per write; "
        f"max attempts {report.max_attempts}; polls {json.dumps(report.settle_polls)}"
    )
    print(f"phases           {json.dumps(report.phases)} s")
    for took, line in report.slowest[:3]:
        print(f"slow             {took} s {line}"[:160])
    print(f"duplicates       {len(report.duplicates)}")
    print(f"lost             {len(report.lost)}")
    print(f"unexplained      {len(report.unexplained)}")
    print(f"unsettled        {len(report.unsettled)}")
    print(f"time             {report.seconds} s")
    for line in (report.duplicates + report.lost + report.unexplained + report.unsettled)[:40]:
        print(f"  {line}")


def _run_in(config: ChaosConfig, workdir: Path) -> ChaosReport:
    """A run whose processes keep their state (codec keys, audit ledger, crosswalk) in
    ``workdir``, not in the checkout's ``state/``, where earlier runs left theirs."""
    os.environ.setdefault("WRITEBACK_STATE_DIR", str(workdir / "state"))
    return asyncio.run(run(config, workdir))


def _seconds_range(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    if not 0 < low <= high:
        raise SystemExit(f"--kill-every: MIN,MAX with 0 < MIN <= MAX, not {text!r}")
    return low, high


def main() -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--writes", type=int, default=defaults.writes)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--tenants", help="e.g. epic,cerner (default: all six)")
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--update-share", type=float, default=defaults.update_share)
    parser.add_argument("--saga-share", type=float, default=defaults.saga_share)
    parser.add_argument("--late-commit", type=float, default=defaults.late_commit_seconds)
    parser.add_argument(
        "--declared-late-commit",
        type=float,
        help="the tenants' ambiguity.late_commit_seconds (default: the product's own default)",
    )
    parser.add_argument("--index-lag", type=float, default=defaults.index_lag_seconds)
    parser.add_argument("--crowd-size", type=int, default=defaults.crowd_size)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--in-flight",
        type=int,
        help="writes not yet settled at once: the next is submitted as one settles "
        "(default: all at once)",
    )
    parser.add_argument(
        "--kill-every",
        default=",".join(f"{s:g}" for s in defaults.kill_every),
        help="MIN,MAX seconds between worker SIGKILLs (default: %(default)s)",
    )
    parser.add_argument(
        "--deadline", type=float, help="seconds to wait for every write to settle (default: scales)"
    )
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument(
        "--workdir", help="keep the databases and logs here (default: a temporary directory)"
    )
    args = parser.parse_args()
    config = ChaosConfig(
        writes=args.writes,
        seed=args.seed,
        tenants=pick_tenants(args.tenants),
        fault_rate=args.fault_rate,
        update_share=args.update_share,
        saga_share=args.saga_share,
        late_commit_seconds=args.late_commit,
        declared_late_commit_seconds=args.declared_late_commit,
        index_lag_seconds=args.index_lag,
        crowd_size=args.crowd_size,
        concurrency=args.concurrency,
        in_flight=args.in_flight,
        kill_every=_seconds_range(args.kill_every),
        deadline_seconds=args.deadline or max(600.0, args.writes * 0.5),
    )
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        report = _run_in(config, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
            report = _run_in(config, Path(workdir))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
