"""``writeback review``: the exception queue — writes waiting for a person, what happened to each,
and the decision that settles it."""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from adapters.errors import EXIT_OK
from workers.cli_support import UsageError, add_caller_key, connect_client, exit_code_for, problems
from workers.client import DecisionRefused, WriteNotFound
from workers.render import as_json, record_text, waiting_table
from workflows.contract import Resolution, ResolutionAction, WriteDetails


async def cmd_list(args: argparse.Namespace) -> int:
    client = await connect_client()
    entries = await client.waiting(tenant=args.tenant, error_class=args.error_class)
    if args.json:
        print(json.dumps([asdict(entry) for entry in entries], indent=2, default=str))
    else:
        print(waiting_table(entries))
    return EXIT_OK


async def cmd_show(args: argparse.Namespace) -> int:
    client = await connect_client()
    try:
        details = await client.details(args.workflow_id)
    except WriteNotFound:
        raise UsageError(f"no write with workflow id {args.workflow_id}") from None
    print(as_json(details) if args.json else record_text(details))
    status = details.status if isinstance(details, WriteDetails) else details
    return exit_code_for(status.state)


async def cmd_resolve(args: argparse.Namespace) -> int:
    try:
        resolution = Resolution(
            action=ResolutionAction(args.action),
            by=args.by,
            reason=args.reason,
            reference=args.reference,
        )
    except ValidationError as exc:
        raise UsageError(f"invalid decision: {problems(exc, Resolution)}") from None
    client = await connect_client(args.caller_key)
    try:
        status = await client.resolve(
            args.workflow_id, resolution, args.decision_id or str(uuid.uuid4())
        )
    except DecisionRefused as exc:
        raise UsageError(f"decision not accepted: {exc}") from None
    print(as_json(status) if args.json else f"{status.workflow_id}: {status.state.value}")
    return exit_code_for(status.state)


def add_review_commands(sub: Any) -> None:
    review = sub.add_parser("review", help="the queue of writes waiting for a person")
    commands = review.add_subparsers(dest="review_command", required=True)

    listing = commands.add_parser("list", help="writes waiting for a person, oldest first")
    listing.add_argument("--tenant")
    listing.add_argument("--error-class", help="e.g. transient, mismatch, conflict, duplicate")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)

    show = commands.add_parser("show", help="everything about one write")
    show.add_argument("workflow_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)

    resolve = commands.add_parser("resolve", help="decide on a waiting write")
    resolve.add_argument("workflow_id")
    resolve.add_argument("--action", required=True, choices=[a.value for a in ResolutionAction])
    resolve.add_argument("--by", required=True, help="your operator id")
    resolve.add_argument("--reason", required=True)
    resolve.add_argument("--reference", help="for confirm: e.g. Observation/123")
    resolve.add_argument("--decision-id", help="makes a resent decision a no-op")
    resolve.add_argument("--json", action="store_true")
    add_caller_key(resolve)
    resolve.set_defaults(run=cmd_resolve)
