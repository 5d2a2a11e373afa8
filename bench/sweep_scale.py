"""Sweep at scale (issue #19): ``ReconcileSweep`` over a window of 200,000 resources on one tenant.

Setup, not measured: N heart rates, each with its own command identifier, written into the
sandbox's SQLite file in one transaction by the store's own ``Tx.write`` (the rows and search
tokens a create writes), D of them twice (duplicates); the N writes appended to the worker's
audit ledger as ``verified`` transitions, so the write records match the chart. Measured: a
plain paged read of the same search over httpx (the baseline, before and after the sweep), and
the sweep across its continue-as-new chain: time, worker + Temporal CPU, peak RSS, pages, EHR
requests, each run's history size (< 1 MB) and the findings (exactly the D duplicates).
bench/README.md has the details.

    python -m bench.sweep_scale [--quick] [--resources 200000] [--duplicates 10] [--page-size 500]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.client import Client

from activities.audit_anchor import AnchorStore
from activities.audit_ledger import AuditEvent, open_ledger
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, FHIR_JSON
from adapters.ids import sweep_workflow_id, workflow_id_for
from bench.cli import Benchmark, common_parser, run_alone
from bench.report import BenchResult, Figure
from bench.stack import Stack, TenantSpec
from sandbox.store import Store
from workers import samples
from workers.audit_config import checkpoint_dir, ledger_keys, ledger_location
from workflows.reconcile_contract import SweepReport, SweepRequest
from workflows.reconcile_sweep import ReconcileSweep

TENANT = "bench-sweep"
RTYPE = "Observation"
#: Ledger lines per ``AuditLedger.append`` call (one transaction each).
LEDGER_BATCH = 2000
#: The most one run of the sweep may keep in its history (bytes).
HISTORY_LIMIT = 1_000_000
#: Worker + Temporal server: what sweeping costs (the sandbox is the EHR's side).
SERVICE = ("worker", "temporal")
_WHEN = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)


@dataclass(frozen=True)
class SweepScaleOptions:
    resources: int = 200_000
    duplicates: int = 10
    page_size: int = 500
    rss_every_seconds: float = 0.5
    #: plain reads: before the sweep, and again after it (1: before only). The sandbox's offset
    #: paging costs it O(offset) per page, minutes per pass at 200,000.
    baseline_passes: int = 2


@dataclass(frozen=True)
class SweepTenant(TenantSpec):
    """The bench tenant with its sweep page size (``reconcile.sweep_page_size``)."""

    page_size: int = 500

    def toml(self, sandbox_url: str) -> str:
        return super().toml(sandbox_url) + f"reconcile = {{ sweep_page_size = {self.page_size} }}\n"


def tenants(options: SweepScaleOptions) -> list[TenantSpec]:
    return [SweepTenant(TENANT, timeout_seconds=60.0, page_size=options.page_size)]


def _key(i: int) -> str:
    return f"bench-{i:06d}"


def _body(i: int) -> dict[str, Any]:
    body = samples.heart_rate("bench", 60 + i % 40, _WHEN)
    body["identifier"] = [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": f"{TENANT}:{_key(i)}"}]
    return body


@dataclass(frozen=True)
class Chart:
    """What the setup put in the sandbox: the verified copy of each write, the planted extras."""

    originals: list[str]
    duplicates: list[str]
    load_seconds: float
    ledger_seconds: float = 0.0


def load_chart(db: Path, n: int, duplicates: int) -> Chart:
    """N resources (and D extra copies, each right after its original) in one transaction."""
    began = time.monotonic()
    every = n // duplicates if duplicates else 0
    originals: list[str] = []
    extra: list[str] = []
    store = Store(str(db))
    try:
        with store.tx(TENANT) as tx:
            visible = time.time()
            for i in range(n):
                rid = tx.new_id(RTYPE)
                tx.write(RTYPE, rid, _body(i), visible_at=visible)
                originals.append(f"{RTYPE}/{rid}")
                if every and i % every == every - 1 and len(extra) < duplicates:
                    rid = tx.new_id(RTYPE)
                    tx.write(RTYPE, rid, _body(i), visible_at=visible)
                    extra.append(f"{RTYPE}/{rid}")
    finally:
        store.close()
    return Chart(originals, extra, time.monotonic() - began)


def record_verified(references: list[str]) -> float:
    """Each write's ``verified`` transition, appended to the ledger the worker uses (its
    location from the environment open_stack set); returns the seconds it took. Checkpoints are
    left to the worker (this handle never writes one)."""
    began, at = time.monotonic(), datetime.now(UTC)
    keys = ledger_keys(create=True)
    ledger = open_ledger(ledger_location(), keys, AnchorStore(checkpoint_dir(), keys), 2**31)
    try:
        for start in range(0, len(references), LEDGER_BATCH):
            batch = enumerate(references[start : start + LEDGER_BATCH], start)
            ledger.append(
                [_verified(workflow_id_for(TENANT, _key(i)), ref, at) for i, ref in batch]
            )
    finally:
        ledger.close()
    return time.monotonic() - began


def _verified(write_id: str, reference: str, at: datetime) -> AuditEvent:
    """The ledger line of a write's ``verified`` transition (activities/write_records.py)."""
    return AuditEvent(
        entry_key=f"{write_id}/t1",
        tenant=TENANT,
        correlation_id=write_id,
        kind="transition",
        at=at,
        requested_by="bench",
        resource_type=RTYPE,
        resource=reference,
        version="1",
        state="verified",
        outcome="verified",
    )


def search_url(stack: Stack, since: datetime, count: int) -> str:
    """The sweep's first page (activities/sweep_reads.py ``_scan_page``)."""
    after = quote(since.isoformat(timespec="seconds"), safe="")
    return (
        f"{stack.fhir_base(TENANT)}/{RTYPE}?identifier="
        f"{quote(COMMAND_IDENTIFIER_SYSTEM, safe='')}%7C&_lastUpdated=ge{after}&_count={count}"
    )


@dataclass(frozen=True)
class PlainRead:
    seconds: float
    pages: int
    resources: int
    reader_cpu: float  # this process: httpx + JSON
    sandbox_cpu: float


async def plain_read(stack: Stack, first: str) -> PlainRead:
    began, cpu = time.monotonic(), stack.cpu()
    pages = resources = 0
    url: str | None = first
    async with httpx.AsyncClient(timeout=300, headers={"Accept": FHIR_JSON}) as http:
        while url:
            response = await http.get(url)
            response.raise_for_status()
            bundle = response.json()
            pages += 1
            resources += len(bundle.get("entry") or [])
            links = bundle.get("link") or []
            url = next((ln["url"] for ln in links if ln.get("relation") == "next"), None)
    after = stack.cpu()
    return PlainRead(
        time.monotonic() - began,
        pages,
        resources,
        after["bench"] - cpu["bench"],
        after["sandbox"] - cpu["sandbox"],
    )


@dataclass(frozen=True)
class RunHistory:
    run_id: str
    events: int
    event_bytes: int  # the events' protobuf bytes, payloads included
    json_bytes: int  # history.to_json()
    server_bytes: int  # what Temporal counts (history_size_bytes)


async def run_histories(client: Client, workflow_id: str, first_run: str) -> list[RunHistory]:
    """Each run of the continue-as-new chain, from the first, by the link its last event holds."""
    runs: list[RunHistory] = []
    run_id: str | None = first_run
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        info = (await handle.describe()).raw_description.workflow_execution_info
        events = list(history.events)
        runs.append(
            RunHistory(
                run_id,
                len(events),
                sum(event.ByteSize() for event in events),
                len(history.to_json()),
                info.history_size_bytes,
            )
        )
        last = events[-1] if events else None
        run_id = None
        if last is not None and last.HasField(
            "workflow_execution_continued_as_new_event_attributes"
        ):
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs


@dataclass(frozen=True)
class Sweep:
    report: SweepReport
    seconds: float
    cpu: dict[str, float]
    rss_before: dict[str, int]
    rss_peak: dict[str, int]
    ehr_requests: int
    runs: list[RunHistory]


async def sweep(stack: Stack, since: datetime, every: float) -> Sweep:
    """The sweep to its result, worker and server RSS sampled every ``every`` seconds."""
    rss_before = {p: stack.children[p].rss() for p in SERVICE}
    peak = dict(rss_before)
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            for p in SERVICE:
                peak[p] = max(peak[p], stack.children[p].rss())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)

    ehr = (await stack.admin.stats(TENANT)).total
    cpu, began = stack.cpu(), time.monotonic()
    sampler = asyncio.create_task(sample())
    try:
        handle = await stack.client.temporal.start_workflow(
            ReconcileSweep.run,
            SweepRequest(tenant=TENANT, since=since),
            id=sweep_workflow_id(TENANT, f"bench-{uuid.uuid4().hex[:8]}"),
            task_queue=stack.client.task_queue,
        )
        report = await handle.result()  # follows the continue-as-new chain
    finally:
        done.set()
        await sampler
    seconds, after = time.monotonic() - began, stack.cpu()
    ehr = (await stack.admin.stats(TENANT)).total - ehr
    first_run = handle.first_execution_run_id or handle.result_run_id or ""
    runs = await run_histories(stack.client.temporal, handle.id, first_run)
    used = {p: after[p] - cpu[p] for p in after}
    return Sweep(report, seconds, used, rss_before, peak, ehr, runs)


async def run(stack: Stack, options: SweepScaleOptions) -> BenchResult:
    n, d = options.resources, options.duplicates
    since = datetime.now(UTC) - timedelta(seconds=5)
    print(f"   loading {n:,} resources (+{d} duplicates) into the sandbox store…", flush=True)
    chart = await asyncio.to_thread(load_chart, stack.sandbox_db, n, d)
    print(f"   loaded in {chart.load_seconds:.1f}s; recording {n:,} verified writes…", flush=True)
    ledger_seconds = await asyncio.to_thread(record_verified, chart.originals)
    chart = Chart(chart.originals, chart.duplicates, chart.load_seconds, ledger_seconds)
    async with httpx.AsyncClient(timeout=300, headers={"Accept": FHIR_JSON}) as http:
        found = (await http.get(search_url(stack, since, 1))).json().get("total")
    if found != n + len(chart.duplicates):
        raise RuntimeError(f"the sandbox's search finds {found}, not {n + len(chart.duplicates)}")
    print(f"   recorded in {ledger_seconds:.1f}s; search total {found:,}; plain read…", flush=True)
    first = search_url(stack, since, options.page_size)
    reads = [await plain_read(stack, first)]
    print(f"   plain read {reads[0].seconds:.1f}s, {reads[0].pages} pages; sweep…", flush=True)
    swept = await sweep(stack, since, options.rss_every_seconds)
    print(f"   swept in {swept.seconds:.1f}s, {len(swept.runs)} runs", flush=True)
    if options.baseline_passes > 1:
        reads.append(await plain_read(stack, first))
    return _result(options, chart, reads, swept)


def _per_k(value: float, n: int) -> float:
    return value / n * 1000


def _mb(size: float) -> float:
    return size / 1024 / 1024


def _result(
    options: SweepScaleOptions, chart: Chart, reads: list[PlainRead], swept: Sweep
) -> BenchResult:
    n = options.resources
    total = n + len(chart.duplicates)
    report = swept.report
    read_seconds = statistics.fmean(r.seconds for r in reads)
    read_cpu = statistics.fmean(r.reader_cpu for r in reads)
    read_pages = reads[0].pages
    service_cpu = sum(swept.cpu[p] for p in SERVICE)
    largest_json = max((r.json_bytes for r in swept.runs), default=0)
    largest_server = max((r.server_bytes for r in swept.runs), default=0)
    extra = {r for f in report.findings if f.kind.value == "duplicate" for r in f.resources}
    extra -= {f.keep for f in report.findings}
    expected = {"duplicate": len(chart.duplicates)} if chart.duplicates else {}
    exact = report.findings_by_kind == expected and extra == set(chart.duplicates)
    figures = [
        Figure(
            f"sweep completes: resources scanned of {total:,}",
            report.resources_scanned,
            "",
            target=f"{total:,}",
            met=report.resources_scanned == total,
        ),
        Figure(f"sweep time, {total:,} resources", swept.seconds, "s", read_seconds, "plain read"),
        Figure(
            "time per 1,000 resources",
            _per_k(swept.seconds, total),
            "s",
            _per_k(read_seconds, total),
            "plain read",
        ),
        Figure(
            "CPU worker+server per 1,000 resources",
            _per_k(service_cpu, total) * 1000,
            "ms",
            _per_k(read_cpu, total) * 1000,
            "plain read: reader CPU",
        ),
        *(
            Figure(
                f"peak {p} RSS", _mb(swept.rss_peak[p]), "MB", _mb(swept.rss_before[p]), "before"
            )
            for p in SERVICE
        ),
        Figure("workflow runs (continue-as-new chain)", len(swept.runs), ""),
        Figure(
            "largest run history (Temporal's history_size_bytes)",
            largest_server / 1024,
            "KB",
            target=f"< {HISTORY_LIMIT / 1e6:g} MB",
            met=bool(swept.runs) and largest_server < HISTORY_LIMIT,
        ),
        Figure("largest run history as to_json() (base64 payloads)", largest_json / 1024, "KB"),
        Figure("pages", report.pages, "", read_pages, "plain read", compare="diff"),
        Figure(
            "EHR requests per 1,000 resources",
            _per_k(swept.ehr_requests, total),
            "",
            _per_k(read_pages, total),
            "plain read",
        ),
        Figure(
            "findings (the planted duplicates, exactly)",
            sum(report.findings_by_kind.values()),
            "",
            target=str(len(chart.duplicates)),
            met=exact,
        ),
    ]
    details = {
        "resources": n,
        "duplicates_planted": chart.duplicates,
        "setup_seconds": {"load": chart.load_seconds, "ledger": chart.ledger_seconds},
        "plain_reads": [asdict(r) for r in reads],
        "sweep": {
            "seconds": swept.seconds,
            "cpu_seconds": swept.cpu,
            "rss_before": swept.rss_before,
            "rss_peak": swept.rss_peak,
            "ehr_requests": swept.ehr_requests,
            "report": report.model_dump(mode="json", exclude={"findings", "raised"}),
        },
        "runs": [asdict(r) for r in swept.runs],
    }
    cpu = swept.cpu
    notes = [
        f"{n:,} resources + {len(chart.duplicates)} duplicates, page size {options.page_size}; "
        f"setup: store load {chart.load_seconds:.1f}s, ledger {chart.ledger_seconds:.1f}s",
        f"sweep CPU s: worker {cpu['worker']:.1f}, Temporal {cpu['temporal']:.1f}, "
        f"sandbox {cpu['sandbox']:.1f}; plain reads: "
        + ", ".join(f"{r.seconds:.1f}s (sandbox CPU {r.sandbox_cpu:.1f}s)" for r in reads),
        "run histories (events / to_json KB / Temporal KB): "
        + ", ".join(
            f"{r.events}/{r.json_bytes // 1024}/{r.server_bytes // 1024}" for r in swept.runs
        ),
    ]
    return BenchResult(name="sweep_scale", figures=figures, details=details, notes=notes)


BENCHMARK = Benchmark(
    "sweep_scale", "ReconcileSweep over a large window on one tenant", tenants, run
)


def main() -> int:
    parser = common_parser(__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, help="resources in the window (200000)")
    parser.add_argument("--duplicates", type=int, help="extra copies planted (10)")
    parser.add_argument("--page-size", type=int, help="the tenant's sweep page size (500)")
    parser.add_argument(
        "--baseline-passes", type=int, choices=(1, 2), default=2, help="plain reads (2: around)"
    )
    args = parser.parse_args()
    default = SweepScaleOptions()
    options = SweepScaleOptions(
        resources=args.resources or (20_000 if args.quick else default.resources),
        duplicates=default.duplicates if args.duplicates is None else args.duplicates,
        page_size=args.page_size or default.page_size,
        baseline_passes=args.baseline_passes,
    )
    return run_alone(BENCHMARK, options, args)


if __name__ == "__main__":
    sys.exit(main())
