"""Reconciliation cost: per-write timers against the per-tenant sweep (issue #7).

Three strict-R4 tenants on one stack: ``off`` (reconcile off: the baseline), ``day``
(``reconcile.after_hours = 24``: every verified write stays open a day on a durable timer) and
``short`` (``after_hours = 0.005``, 18 s: the timers fire during the run). Writes are submitted
keeping ``in_flight`` of them unsettled (the visibility store is counted, since a write with a
timer returns no result until the timer fires).

1. **Open timers**: after a warm-up batch, N writes to ``off`` and N to ``day``, in halves in the
   order off, day, day, off: time to all verified, CPU per write, Temporal server RSS, database
   bytes and worker RSS gained per write; open workflows afterwards; idle CPU after the phase
   (N timers open) against after the warm-up (none).
2. **Timer firing**: N writes to ``short``, until all are ``reconciled``. What the re-checks cost
   is this phase minus phase 1's ``off`` run (the same writes without a timer), idle CPU deducted:
   CPU, Temporal RPCs and EHR requests per re-check; the lag of each re-check after its timer
   was due.
3. **Sweep**: ``ReconcileSweep`` over ``short``'s N (closed) writes, its window from phase 2's
   start; then over ``day``'s N open writes (what the sweep costs where timers are also on):
   duration, CPU, EHR requests and Temporal RPCs per write, against (2).

    python -m bench.reconcile_cost [--quick] [--writes 500] [--in-flight 50]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench import history
from bench.cli import Benchmark, common_parser, run_alone
from bench.measure import percentile, run_many
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from bench.temporal_server import FrontendRequests, count, db_footprint
from bench.writes import command, run_tag
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteState, WriteStatus, workflow_id_for
from workflows.reconcile_contract import SweepReport, SweepRequest
from workflows.reconcile_sweep import ReconcileSweep

OFF, DAY, SHORT = "bench-rc-off", "bench-rc-day", "bench-rc-short"
#: Worker + Temporal server: the CPU that reconciling costs (the sandbox is the EHR's side).
SERVICE = ("worker", "temporal")
#: RPCs the benchmark itself makes while measuring (counting settled writes), not the product.
_OWN_RPCS = frozenset({"CountWorkflowExecutions"})
_SETTLED = (
    "'verified', 'reconciled', 'mismatch', 'rejected', 'pending_confirmation', 'conflict', "
    "'abandoned'"
)
_POLL_SECONDS = 0.2
_LABELS = {"off": "reconcile off", "day": "timers of {h:g} h"}


@dataclass(frozen=True)
class ReconcileOptions:
    writes: int = 500
    in_flight: int = 50
    open_hours: float = 24.0
    short_hours: float = 0.005
    idle_seconds: float = 2.0
    warmup_writes: int = 100
    """A batch like the measured ones first, so that both servers' memory has grown to what 50
    writes in flight need before anything is compared."""

    @classmethod
    def quick(cls) -> ReconcileOptions:
        return cls(writes=200, warmup_writes=60)

    @property
    def delay_seconds(self) -> float:
        return self.short_hours * 3600


def tenants(options: ReconcileOptions) -> Sequence[TenantSpec]:
    return [
        TenantSpec(OFF),
        TenantSpec(DAY, reconcile_after_hours=options.open_hours),
        TenantSpec(SHORT, reconcile_after_hours=options.short_hours),
    ]


@dataclass(frozen=True)
class Reading:
    """The stack at one moment: CPU seconds and RSS by process, the frontend's RPC counts, and
    the FHIR requests one tenant's EHR has answered."""

    at: float
    wall: datetime
    cpu: dict[str, float]
    rss: dict[str, int]
    rpcs: Counter[str]
    ehr: int


class Probe:
    """Takes readings of one stack (the RPC counts need a reader that keeps state)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._rpcs = FrontendRequests(stack.client.temporal, stack.metrics_url)

    async def read(self, tenant: str) -> Reading:
        at, wall, cpu = time.monotonic(), datetime.now(UTC), self.stack.cpu()
        rss = {name: self.stack.children[name].rss() for name in SERVICE}
        ehr = (await self.stack.admin.stats(tenant)).total
        return Reading(at, wall, cpu, rss, await self._rpcs.read(), ehr)


@dataclass(frozen=True)
class Span:
    """One or more measured intervals (before, after), taken together."""

    parts: tuple[tuple[Reading, Reading], ...]

    @classmethod
    def of(cls, before: Reading, after: Reading) -> Span:
        return cls(((before, after),))

    def __add__(self, other: Span) -> Span:
        return Span(self.parts + other.parts)

    @property
    def first(self) -> Reading:
        return self.parts[0][0]

    @property
    def seconds(self) -> float:
        return sum(after.at - before.at for before, after in self.parts)

    def cpu(self, *processes: str) -> float:
        return sum(a.cpu[p] - b.cpu[p] for b, a in self.parts for p in processes)

    def rss_growth(self, process: str) -> int:
        return sum(after.rss[process] - before.rss[process] for before, after in self.parts)

    def rpcs(self) -> Counter[str]:
        grown: Counter[str] = Counter()
        for before, after in self.parts:
            grown.update(after.rpcs - before.rpcs)
        return Counter({op: n for op, n in grown.items() if op not in _OWN_RPCS})

    @property
    def ehr(self) -> int:
        return sum(after.ehr - before.ehr for before, after in self.parts)


def _in_tenant(tenant: str, condition: str) -> str:
    return f"WorkflowType = 'ClinicalWrite' AND WritebackTenant = '{tenant}' AND {condition}"


async def _await_count(stack: Stack, query: str, target: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (found := await count(stack.client.temporal, query)) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} of {target} after {within:.0f}s: {query}")
        await asyncio.sleep(_POLL_SECONDS)


async def _write_all(probe: Probe, tenant: str, tag: str, n: int, in_flight: int) -> Span:
    """Submit ``n`` writes with at most ``in_flight`` of them not yet settled (``verified`` or a
    state that waits for a person), until all have settled."""
    temporal, submit = probe.stack.client.temporal, probe.stack.client.submit
    settled = _in_tenant(tenant, f"WritebackState IN ({_SETTLED})")
    base = await count(temporal, settled)
    before = await probe.read(tenant)
    submitted = 0
    deadline = time.monotonic() + 60 + n
    while (done := await count(temporal, settled) - base) < n:
        room = min(n - submitted, in_flight - (submitted - done))
        if room > 0:
            keys = [f"{tag}-{submitted + i}" for i in range(room)]
            await asyncio.gather(*(submit(command(tenant, key)) for key in keys))
            submitted += room
        else:
            await asyncio.sleep(_POLL_SECONDS)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tenant}: {done} of {n} writes settled in time")
    return Span.of(before, await probe.read(tenant))


@dataclass(frozen=True)
class Idle:
    """CPU seconds per second of each process with no write in flight, after ``written`` writes
    of phase 1 of which ``open`` are still open on their timers."""

    written: int
    open: int
    rates: dict[str, float]

    @property
    def service(self) -> float:
        return sum(self.rates[p] for p in SERVICE)


async def _idle(stack: Stack, seconds: float, written: int, open_: int) -> Idle:
    """After a second for the last writes' trailing work, ``seconds`` of nothing."""
    await asyncio.sleep(1.0)
    began, before = time.monotonic(), stack.cpu()
    await asyncio.sleep(seconds)
    elapsed, after = time.monotonic() - began, stack.cpu()
    return Idle(written, open_, {p: (after[p] - before[p]) / elapsed for p in after})


async def _sweep(probe: Probe, tenant: str, since: datetime) -> tuple[SweepReport, Span]:
    before = await probe.read(tenant)
    report = await probe.stack.client.temporal.execute_workflow(
        ReconcileSweep.run,
        SweepRequest(tenant=tenant, since=since),
        id=f"wb-sweep:{tenant}:bench-{uuid.uuid4().hex[:8]}",
        task_queue=probe.stack.client.task_queue,
    )
    return report, Span.of(before, await probe.read(tenant))


def _at(status: WriteStatus, state: WriteState) -> datetime | None:
    return next((t.at for t in status.transitions if t.state is state), None)


@dataclass(frozen=True)
class TimerFiring:
    """Phase 2: the writes with a short timer, from the first submit until all reconciled."""

    span: Span
    verified: Span  # the same start, until all verified (the first timers may have fired)
    statuses: list[WriteStatus]
    delay: float

    def lags(self) -> list[float]:
        """Seconds from each write's timer being due to its ``reconciled``."""
        lags = []
        for status in self.statuses:
            verified = _at(status, WriteState.VERIFIED)
            reconciled = _at(status, WriteState.RECONCILED)
            if verified and reconciled:
                lags.append((reconciled - verified).total_seconds() - self.delay)
        return lags

    def window(self) -> float | None:
        """First timer due → last write reconciled: the wall time the re-checks took."""
        due = [
            v + timedelta(seconds=self.delay)
            for s in self.statuses
            if (v := _at(s, WriteState.VERIFIED))
        ]
        done = [r for s in self.statuses if (r := _at(s, WriteState.RECONCILED))]
        if not due or not done:
            return None
        return (max(done) - min(due)).total_seconds()


async def _results(probe: Probe, tenant: str, prefix: str, n: int) -> list[WriteStatus]:
    temporal = probe.stack.client.temporal

    async def result(i: int) -> WriteStatus:
        workflow_id = workflow_id_for(tenant, f"{prefix}-{i}")
        return await temporal.get_workflow_handle_for(ClinicalWrite.run, workflow_id).result()

    return await run_many(result, n, 50)


def _count_lag(span: Span, statuses: list[WriteStatus]) -> float | None:
    """Seconds from the last write's ``verified`` to the end of ``span`` (when the visibility
    count showed them all): how late the count that paces the writes saw them."""
    verified = [at for s in statuses if (at := _at(s, WriteState.VERIFIED))]
    return (span.parts[-1][1].wall - max(verified)).total_seconds() if verified else None


async def _timer_firing(probe: Probe, tag: str, options: ReconcileOptions) -> TimerFiring:
    n = options.writes
    verified = await _write_all(probe, SHORT, f"{tag}-short", n, options.in_flight)
    print(f"   verified in {verified.seconds:.1f}s; waiting for their timers", flush=True)
    ended = _in_tenant(SHORT, "WritebackState IN ('reconciled', 'mismatch')")
    await _await_count(probe.stack, ended, n, options.delay_seconds + 60 + n / 5)
    span = Span.of(verified.first, await probe.read(SHORT))
    statuses = await _results(probe, SHORT, f"{tag}-short", n)
    return TimerFiring(span, verified, statuses, options.delay_seconds)


@dataclass(frozen=True)
class OpenTimers:
    """Phase 1: the same number of writes without a timer (``off``) and with one (``day``)."""

    off: Span
    day: Span
    db_used: dict[str, int]  # database bytes gained, by variant
    db_tables: dict[str, Counter[str]]  # the same by table
    db_rows: dict[str, int]  # rows of the telling tables at the end
    idle: list[Idle]  # after the warm-up, then after each half
    off_count_lag: float | None
    open_day: int
    open_off: int
    verified_day: int


async def _open_timers(probe: Probe, tag: str, options: ReconcileOptions) -> OpenTimers:
    """Phase 1: N writes without reconciliation and N that stay open on a timer, in halves in
    the order off, day, day, off (so that a drift in background load hits both alike)."""
    n, stack = options.writes, probe.stack
    print(f"   warming up: {options.warmup_writes} writes…", flush=True)
    await _write_all(probe, OFF, f"{tag}-warm", options.warmup_writes, options.in_flight)
    idle = [await _idle(stack, options.idle_seconds, 0, 0)]
    spans: dict[str, list[Span]] = {"off": [], "day": []}
    db_used: Counter[str] = Counter()
    db_tables: dict[str, Counter[str]] = {"off": Counter(), "day": Counter()}
    for i, which in enumerate(("off", "day", "day", "off")):
        size = n // 2 if i < 2 else n - n // 2
        tenant = OFF if which == "off" else DAY
        print(f"   {size} writes, {_LABELS[which].format(h=options.open_hours)}…", flush=True)
        db_before = await asyncio.to_thread(db_footprint, stack.temporal_db)
        spans[which].append(
            await _write_all(probe, tenant, f"{tag}-{which}{i}", size, options.in_flight)
        )
        db_after = await asyncio.to_thread(db_footprint, stack.temporal_db)
        db_used[which] += db_after.used_bytes - db_before.used_bytes
        db_tables[which].update(db_after.growth(db_before))
        written = idle[-1].written + size
        still_open = idle[-1].open + (size if which == "day" else 0)
        idle.append(await _idle(stack, options.idle_seconds, written, still_open))
    last_off = await _results(probe, OFF, f"{tag}-off3", n - n // 2)
    running = "ExecutionStatus = 'Running'"
    return OpenTimers(
        off_count_lag=_count_lag(spans["off"][1], last_off),
        off=spans["off"][0] + spans["off"][1],
        day=spans["day"][0] + spans["day"][1],
        db_used=dict(db_used),
        db_tables=db_tables,
        db_rows=db_after.rows,
        idle=idle,
        open_day=await count(stack.client.temporal, _in_tenant(DAY, running)),
        open_off=await count(stack.client.temporal, _in_tenant(OFF, running)),
        verified_day=await count(
            stack.client.temporal, _in_tenant(DAY, "WritebackState = 'verified'")
        ),
    )


async def run(stack: Stack, options: ReconcileOptions) -> BenchResult:
    tag, n, probe = run_tag(), options.writes, Probe(stack)
    day_began = datetime.now(UTC)
    phase1 = await _open_timers(probe, tag, options)

    print(f"   {n} writes, timers of {options.delay_seconds:g} s…", flush=True)
    short_began = datetime.now(UTC)
    firing = await _timer_firing(probe, tag, options)

    print("   sweep over the short tenant's closed writes…", flush=True)
    closed = await _sweep(probe, SHORT, short_began - timedelta(seconds=5))
    print(f"   sweep over the {options.open_hours:g} h tenant's open writes…", flush=True)
    open_ = await _sweep(probe, DAY, day_began - timedelta(seconds=5))

    samples = {
        name: await _history_sample(stack, tenant, f"{tag}-{prefix}", n // 2)
        for name, tenant, prefix in (
            ("off", OFF, "off0"),
            ("day", DAY, "day1"),
            ("short", SHORT, "short"),
        )
    }
    return _result(options, phase1, firing, closed, open_, samples)


async def _history_sample(
    stack: Stack, tenant: str, prefix: str, n: int, size: int = 5
) -> dict[str, float]:
    step = max(1, n // size)
    ids = [workflow_id_for(tenant, f"{prefix}-{i}") for i in range(0, n, step)][:size]
    timelines = [await history.timeline(stack.client.temporal, wid) for wid in ids]
    return {
        "events": round(statistics.fmean(t.events for t in timelines), 1),
        "history_bytes": round(statistics.fmean(t.size for t in timelines)),
    }


def _per_write_ms(seconds: float, n: int) -> float:
    return seconds / n * 1000


def _kb_per_write(grown: int, n: int) -> float:
    return grown / n / 1024


def _result(
    options: ReconcileOptions,
    p1: OpenTimers,
    firing: TimerFiring,
    closed: tuple[SweepReport, Span],
    open_: tuple[SweepReport, Span],
    samples: dict[str, dict[str, float]],
) -> BenchResult:
    n = options.writes
    off, day = p1.off, p1.day
    write_cpu = _per_write_ms(off.cpu(*SERVICE), n)
    # phase 2 minus the same writes without a timer, the idle CPU of its longer span deducted
    extra_seconds = firing.span.seconds - off.seconds
    idle_none, idle_open = p1.idle[0].service, p1.idle[-1].service
    recheck_cpu = _per_write_ms(
        firing.span.cpu(*SERVICE) - off.cpu(*SERVICE) - idle_none * extra_seconds, n
    )
    write_rpcs = sum(off.rpcs().values()) / n
    recheck_rpcs = (sum(firing.span.rpcs().values()) - sum(off.rpcs().values())) / n
    write_ehr = off.ehr / n
    recheck_ehr = (firing.span.ehr - off.ehr) / n
    lags = firing.lags()
    closed_report, closed_span = closed
    open_report, open_span = open_
    sweep_cpu = _per_write_ms(closed_span.cpu(*SERVICE), n)
    open_sweep_cpu = _per_write_ms(open_span.cpu(*SERVICE), n)
    sweep_rpcs = sum(closed_span.rpcs().values()) / n
    open_sweep_rpcs = sum(open_span.rpcs().values()) / n
    reconciled = sum(1 for s in firing.statuses if s.state is WriteState.RECONCILED)
    findings = len(closed_report.findings) + len(open_report.findings)
    day_label = f"timers open {options.open_hours:g} h"
    delay = f"{options.delay_seconds:g} s timers"
    figures = [
        Figure(
            f"time to all verified, {n} writes, {day_label}",
            day.seconds,
            "s",
            off.seconds,
            "reconcile off",
        ),
        Figure(
            f"CPU worker+server per write, {day_label}",
            _per_write_ms(day.cpu(*SERVICE), n),
            "ms",
            write_cpu,
            "reconcile off",
        ),
        Figure(
            f"Temporal DB growth per write, {day_label}",
            _kb_per_write(p1.db_used["day"], n),
            "KB",
            _kb_per_write(p1.db_used["off"], n),
            "reconcile off",
        ),
        Figure(
            f"Temporal server RSS growth per write, {day_label}",
            _kb_per_write(day.rss_growth("temporal"), n),
            "KB",
            _kb_per_write(off.rss_growth("temporal"), n),
            "reconcile off",
        ),
        Figure(
            f"worker RSS growth per write, {day_label}",
            _kb_per_write(day.rss_growth("worker"), n),
            "KB",
            _kb_per_write(off.rss_growth("worker"), n),
            "reconcile off",
        ),
        Figure(
            "open workflows afterwards",
            p1.open_day,
            "",
            p1.open_off,
            "reconcile off",
            compare="diff",
        ),
        Figure(
            f"idle CPU worker+server after phase 1, {p1.idle[-1].open} timers open",
            idle_open * 1000,
            "ms/s",
            idle_none * 1000,
            "after warm-up, none open",
        ),
        Figure(
            f"CPU worker+server per re-check, {delay}", recheck_cpu, "ms", write_cpu, "per write"
        ),
        Figure(f"Temporal RPCs per re-check, {delay}", recheck_rpcs, "", write_rpcs, "per write"),
        Figure(f"EHR requests per re-check, {delay}", recheck_ehr, "", write_ehr, "per write"),
        Figure("re-check lag after its timer was due, p50", percentile(lags, 50), "s"),
        Figure("re-check lag after its timer was due, max", max(lags, default=None), "s"),
        Figure(
            f"sweep over {n} closed writes: duration",
            closed_span.seconds,
            "s",
            firing.window(),
            "timers: first due → all reconciled",
        ),
        Figure(
            "sweep: CPU worker+server per write",
            sweep_cpu,
            "ms",
            recheck_cpu,
            "timers, per re-check",
        ),
        Figure(
            "sweep: Temporal RPCs per write", sweep_rpcs, "", recheck_rpcs, "timers, per re-check"
        ),
        Figure(
            "sweep: EHR requests per write",
            closed_span.ehr / n,
            "",
            recheck_ehr,
            "timers, per re-check",
        ),
        Figure(
            f"sweep over {n} open writes: duration",
            open_span.seconds,
            "s",
            closed_span.seconds,
            "sweep, closed writes",
        ),
        Figure(
            "sweep over open writes: CPU worker+server per write",
            open_sweep_cpu,
            "ms",
            sweep_cpu,
            "sweep, closed writes",
        ),
        Figure(
            "sweep over open writes: Temporal RPCs per write",
            open_sweep_rpcs,
            "",
            sweep_rpcs,
            "sweep, closed writes",
        ),
        Figure("sweep findings on unchanged writes", findings, "", target="0", met=findings == 0),
        Figure(
            "writes not verified / reconciled",
            (n - p1.verified_day) + (n - reconciled),
            "",
            target="0",
            met=p1.verified_day == n and reconciled == n,
        ),
    ]
    details = {
        "writes": n,
        "phases": {
            "off": _span_json(off, n),
            "day": _span_json(day, n),
            "short_to_verified": _span_json(firing.verified, n),
            "short_to_reconciled": _span_json(firing.span, n),
            "sweep_closed": _span_json(closed_span, n),
            "sweep_open": _span_json(open_span, n),
        },
        "db_growth_bytes_by_table": {
            which: dict(tables.most_common(8)) for which, tables in p1.db_tables.items()
        },
        "db_rows_at_end_of_phase_1": p1.db_rows,
        "count_lag_seconds": {
            "off_last_half": p1.off_count_lag,
            "short": _count_lag(firing.verified, firing.statuses),
        },
        "idle_cpu_ms_per_second": [
            {
                "written": i.written,
                "open": i.open,
                **{p: round(r * 1000, 1) for p, r in i.rates.items() if p != "bare_worker"},
            }
            for i in p1.idle
        ],
        "recheck_lag_seconds": {
            "p50": percentile(lags, 50),
            "p90": percentile(lags, 90),
            "max": max(lags, default=None),
        },
        "sweeps": {
            "closed": _report_json(closed_report),
            "open": _report_json(open_report),
        },
        "history_sample": samples,
    }
    notes = [
        f"{n} writes per phase, {options.in_flight} unsettled at a time; CPU = worker + Temporal "
        f"server. Re-check cost = phase 2 (writes + {options.delay_seconds:g} s timers until all "
        f"reconciled) minus the same writes without a timer, {idle_none * 1000:.0f} ms/s "
        f"idle CPU deducted for its {extra_seconds:.0f} s longer span",
        "Temporal RPCs by operation per write: "
        + "; ".join(
            f"{name} {_rpc_text(span, n)}"
            for name, span in (
                ("off", off),
                ("short", firing.span),
                ("sweep closed", closed_span),
                ("sweep open", open_span),
            )
        ),
        f"DB bytes gained by table over {n} writes, off: {_kb_text(p1.db_tables['off'])}; "
        f"{day_label}: {_kb_text(p1.db_tables['day'])}",
        f"sweeps: closed {_report_text(closed_report)}; open {_report_text(open_report)}",
        "idle CPU ms/s of worker + server after the warm-up and after each half of phase 1 "
        "(writes of phase 1 so far / still open): "
        + ", ".join(f"{i.written}/{i.open}: {i.service * 1000:.0f}" for i in p1.idle),
    ]
    return BenchResult(name="reconcile_cost", figures=figures, details=details, notes=notes)


def _rpc_text(span: Span, n: int, top: int = 5) -> str:
    rpcs = span.rpcs().most_common(top)
    return "(" + ", ".join(f"{op} {count / n:.2f}" for op, count in rpcs) + ")"


def _kb_text(grown: Counter[str], top: int = 5) -> str:
    return ", ".join(f"{name} {size // 1024} KB" for name, size in grown.most_common(top))


def _report_text(report: SweepReport) -> str:
    return (
        f"{report.resources_scanned} resources scanned, {report.writes_checked} writes checked, "
        f"{len(report.findings)} findings"
    )


def _report_json(report: SweepReport) -> dict[str, object]:
    return {
        "resources_scanned": report.resources_scanned,
        "writes_checked": report.writes_checked,
        "findings": Counter(f.kind.value for f in report.findings),
        "raised": len(report.raised),
    }


def _span_json(span: Span, n: int) -> dict[str, object]:
    return {
        "seconds": round(span.seconds, 2),
        "cpu_ms_per_write": {
            p: round(_per_write_ms(span.cpu(p), n), 2)
            for p in ("worker", "temporal", "sandbox", "bench")
        },
        "rss_growth_kb": {p: span.rss_growth(p) // 1024 for p in SERVICE},
        "rpcs": dict(span.rpcs().most_common()),
        "ehr_requests": span.ehr,
    }


BENCHMARK = Benchmark(
    "reconcile_cost", "per-write timers vs the sweep: open timers, firing, sweep", tenants, run
)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, help="writes per phase")
    parser.add_argument("--in-flight", type=int, help="unsettled writes at a time")
    args = parser.parse_args()
    options = ReconcileOptions.quick() if args.quick else ReconcileOptions()
    options = ReconcileOptions(
        writes=args.writes or options.writes,
        in_flight=args.in_flight or options.in_flight,
        idle_seconds=options.idle_seconds,
        warmup_writes=options.warmup_writes,
    )
    return run_alone(BENCHMARK, options, args)


if __name__ == "__main__":
    sys.exit(main())
