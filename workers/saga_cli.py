"""``writeback saga``: write several resources as one unit (a referral, a note with its
Provenance, a vitals panel), or have the earlier ones withdrawn if a later one fails."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters.errors import EXIT_OK
from adapters.ids import content_key
from workers.cli_support import UsageError, add_caller_key, connect_client, exit_code_for, problems
from workers.keys import load_key_provider
from workers.render import as_json, saga_text, transition_printer
from workers.settings import Settings
from workflows.contract import Urgency
from workflows.saga_contract import SagaCommand


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(f'{path} must hold {{"kind": ..., "steps": [{{"name", "resource"}}]}}')
    return data


def _default_key(tenant: str, data: dict[str, Any]) -> str:
    """Same tenant + same file = same saga: keyed (adapters/ids.py ``content_key``)."""
    keys = load_key_provider(Settings.from_env().state_dir)
    return content_key(keys.id_secret(tenant), tenant, ["saga", data])


def build_saga(args: argparse.Namespace) -> SagaCommand:
    data = _read(Path(args.file))
    key = args.key or _default_key(args.tenant, data)
    try:
        return SagaCommand(
            tenant=args.tenant,
            idempotency_key=key,
            kind=data.get("kind", "custom"),
            steps=data["steps"],
            requested_by=args.requested_by,
            on_behalf_of=args.on_behalf_of,
            urgency=Urgency(args.urgency),
        )
    except ValidationError as exc:
        raise UsageError(f"invalid saga: {problems(exc, SagaCommand)}") from None


async def cmd_saga(args: argparse.Namespace) -> int:
    command = build_saga(args)
    client = await connect_client(args.caller_key)
    submission = await client.submit_saga(command)
    if not args.wait:
        print(
            as_json(await client.saga(submission.workflow_id))
            if args.json
            else f"submitted {submission.workflow_id}"
        )
        return EXIT_OK
    if not args.json:
        print(submission.workflow_id, flush=True)
    await client.wait(submission.workflow_id, on_change=None if args.json else transition_printer())
    saga = await client.saga(submission.workflow_id)
    print(as_json(saga) if args.json else saga_text(saga))
    return exit_code_for(saga.state)


def add_saga_commands(sub: Any) -> None:
    saga = sub.add_parser(
        "saga", help="write several resources as one unit (or withdraw the earlier ones)"
    )
    saga.add_argument("file", help='JSON: {"kind": "referral", "steps": [{"name", "resource"}]}')
    saga.add_argument("--tenant", required=True)
    saga.add_argument(
        "--key", help="idempotency key, opaque (default: keyed hash of tenant + file)"
    )
    saga.add_argument("--requested-by", default="cli")
    saga.add_argument("--on-behalf-of")
    saga.add_argument("--urgency", choices=[u.value for u in Urgency], default="routine")
    saga.add_argument("--wait", action="store_true", help="follow it until it settles")
    saga.add_argument("--json", action="store_true")
    add_caller_key(saga)
    saga.set_defaults(run=cmd_saga)
