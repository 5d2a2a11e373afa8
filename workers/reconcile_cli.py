"""``writeback reconcile``: run a reconciliation sweep now and print its report, or register the
per-tenant sweep schedules."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime
from typing import Any

from adapters.errors import EXIT_OK
from adapters.ids import sweep_workflow_id
from adapters.tenants import load_tenants, resolve_tenants_path
from workers.cli_support import UsageError, connect_client
from workers.render import as_json
from workers.schedules import register_sweep_schedule
from workflows.reconcile_contract import SweepProgress, SweepReport, SweepRequest
from workflows.reconcile_sweep import ReconcileSweep

#: Exit code of a sweep that found something (0: the EHR matches our writes).
EXIT_FINDINGS = 3
_EXAMPLE_TIME = "2026-11-24T00:00:00+00:00"


def report_text(report: SweepReport) -> str:
    start = "the watermark" if report.from_watermark else "the window asked or the lookback"
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.findings_by_kind.items()))
    lines = [
        f"tenant {report.tenant}: "
        f"{report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC (from {start})",
        f"pages {report.pages}, resources scanned {report.resources_scanned}, "
        f"writes checked {report.writes_checked}, findings {report.finding_count}"
        + (f" ({kinds})" if kinds else "")
        + f", {report.raised_count} new in the review queue",
    ]
    lines += [f"note: {note}" for note in report.notes]
    if report.findings:
        lines.append(f"{'KIND':<10} {'WRITE':<48} DETAIL")
        for finding in report.findings:
            lines.append(f"{finding.kind.value:<10} {finding.write_id:<48} {finding.detail}")
        if len(report.findings) < report.finding_count:
            lines.append(f"… and {report.finding_count - len(report.findings)} more")
    return "\n".join(lines)


async def cmd_run(args: argparse.Namespace) -> int:
    try:
        since = datetime.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise UsageError(f"--since must be an ISO 8601 time, e.g. {_EXAMPLE_TIME}") from None
    if since and since.tzinfo is None:
        raise UsageError(f"--since needs a time zone, e.g. {_EXAMPLE_TIME}")
    client = await connect_client()
    report = await client.temporal.execute_workflow(
        ReconcileSweep.run,
        SweepRequest(tenant=args.tenant, since=since),
        id=sweep_workflow_id(args.tenant, uuid.uuid4().hex[:12]),
        task_queue=client.task_queue,
    )
    print(as_json(report) if args.json else report_text(report))
    return EXIT_FINDINGS if report.finding_count else EXIT_OK


async def cmd_progress(args: argparse.Namespace) -> int:
    """The tenant's running sweeps: where each is (the sweep's ``progress`` query)."""
    client = await connect_client()
    prefix = sweep_workflow_id(args.tenant, "")
    query = "WorkflowType = 'ReconcileSweep' AND ExecutionStatus = 'Running'"
    found: list[tuple[str, SweepProgress | None]] = []
    async for execution in client.temporal.list_workflows(query):
        if execution.id.startswith(prefix):
            handle = client.temporal.get_workflow_handle(execution.id)
            found.append((execution.id, await handle.query(ReconcileSweep.progress)))
    if args.json:
        rows = [{"workflow_id": i, "progress": p and p.model_dump(mode="json")} for i, p in found]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for workflow_id, progress in found:
        where = (
            "starting"
            if progress is None
            else f"{progress.cursor.phase} (type {progress.cursor.type_index}), "
            f"pages {progress.pages}, resources {progress.resources_scanned}, "
            f"writes {progress.writes_checked}, findings {sum(progress.findings_by_kind.values())}"
        )
        print(f"{workflow_id}: {where}")
    if not found:
        print(f"no sweep of tenant {args.tenant} is running")
    return EXIT_OK


async def cmd_schedule(args: argparse.Namespace) -> int:
    tenants = load_tenants(resolve_tenants_path(args.tenants))
    chosen = [t for t in tenants if not args.tenant or t.id in args.tenant]
    if args.tenant and len(chosen) != len(set(args.tenant)):
        raise UsageError(f"unknown tenant in {args.tenant} (configured: {', '.join(tenants.ids)})")
    client = await connect_client()
    for tenant in chosen:
        schedule_id = await register_sweep_schedule(client.temporal, tenant, client.task_queue)
        settings = tenant.reconcile
        print(
            f"{schedule_id}: every {settings.sweep_every_hours:g} h, "
            f"looking back {settings.sweep_lookback_hours:g} h"
        )
    return EXIT_OK


def add_reconcile_commands(sub: Any) -> None:
    reconcile = sub.add_parser("reconcile", help="compare the EHR with what our writes say")
    commands = reconcile.add_subparsers(dest="reconcile_command", required=True)

    run = commands.add_parser("run", help="sweep one tenant now and print the report")
    run.add_argument("--tenant", required=True)
    run.add_argument(
        "--since",
        help="ISO 8601 start of the window (default: the tenant's watermark, else its lookback)",
    )
    run.add_argument("--json", action="store_true")
    run.set_defaults(run=cmd_run)

    progress = commands.add_parser("progress", help="where the tenant's running sweeps are")
    progress.add_argument("--tenant", required=True)
    progress.add_argument("--json", action="store_true")
    progress.set_defaults(run=cmd_progress)

    schedule = commands.add_parser("schedule", help="register the per-tenant sweep schedules")
    schedule.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    schedule.add_argument("--tenants", help="tenant file (default: $WRITEBACK_TENANTS or the demo)")
    schedule.set_defaults(run=cmd_schedule)
