"""``writeback webhooks``: the deliveries of webhook events (README: Webhooks) — list them (the
failed ones: ``--failed``) and send a failed one again once its receiver is fixed.

A delivery is a ``WebhookDelivery`` workflow (workflows/webhook_delivery.py) whose execution status
says how it ended; a resend is a new run under the same id, allowed only after a failed one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.webhook_events import DELIVERY_WORKFLOW, DeliveryOrder, start_delivery
from adapters.errors import EXIT_OK
from workers.cli_support import UsageError, connect_client
from workflows.webhook_delivery import WebhookDelivery


async def _failure(client: Client, delivery_id: str) -> str:
    """Why the delivery's latest run failed (its failure's message: status codes, no content)."""
    try:
        await client.get_workflow_handle(delivery_id).result(follow_runs=False)
    except WorkflowFailureError as err:
        return str(err.cause)
    return ""


async def deliveries(client: Client, failed_only: bool) -> list[dict[str, Any]]:
    """The latest run of each delivery, newest first; ``failed_only``: of those, the failed."""
    query = f"WorkflowType = '{DELIVERY_WORKFLOW}'"
    if failed_only:
        query += " AND ExecutionStatus = 'Failed'"
    latest: dict[str, Any] = {}
    async for execution in client.list_workflows(query):
        known = latest.get(execution.id)
        if known is None or execution.start_time > known.start_time:
            latest[execution.id] = execution
    found = []
    for execution in sorted(latest.values(), key=lambda e: e.start_time, reverse=True):
        if failed_only:  # a resent one that was delivered since is not failed any more
            current = await client.get_workflow_handle(execution.id).describe()
            if current.status is not WorkflowExecutionStatus.FAILED:
                continue
        status = execution.status.name.lower() if execution.status else "unknown"
        entry = {"delivery_id": execution.id, "status": status, "started": execution.start_time}
        if execution.status is WorkflowExecutionStatus.FAILED:
            entry["failure"] = await _failure(client, execution.id)
        found.append(entry)
    return found


async def cmd_list(args: argparse.Namespace) -> int:
    client = (await connect_client()).temporal
    found = await deliveries(client, args.failed)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return EXIT_OK
    for entry in found:
        failure = f"  {entry['failure']}" if entry.get("failure") else ""
        started = f"{entry['started']:%Y-%m-%d %H:%M:%S}"
        print(f"{entry['status']:<10} {started}  {entry['delivery_id']}{failure}")
    if not found:
        print("no failed deliveries" if args.failed else "no deliveries")
    return EXIT_OK


async def cmd_resend(args: argparse.Namespace) -> int:
    writeback = await connect_client()
    handle = writeback.temporal.get_workflow_handle(args.delivery_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no webhook delivery with id {args.delivery_id}") from None
        raise
    if described.workflow_type != DELIVERY_WORKFLOW:
        raise UsageError(f"{args.delivery_id} is not a webhook delivery")
    if described.status is not WorkflowExecutionStatus.FAILED:
        state = described.status.name.lower() if described.status else "unknown"
        raise UsageError(f"delivery {args.delivery_id} is {state}: only a failed one is resent")
    order: DeliveryOrder = await handle.query(WebhookDelivery.order)
    await start_delivery(
        writeback.temporal,
        writeback.task_queue,
        order,
        WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    )
    print(f"resent {args.delivery_id}")
    return EXIT_OK


def add_webhooks_commands(sub: Any) -> None:
    webhooks = sub.add_parser("webhooks", help="deliveries of webhook events: list, resend")
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)

    listing = commands.add_parser("list", help="each delivery's latest run, newest first")
    listing.add_argument("--failed", action="store_true", help="only the failed deliveries")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)

    resend = commands.add_parser("resend", help="send a failed delivery again")
    resend.add_argument("delivery_id")
    resend.set_defaults(run=cmd_resend)
