"""``writeback``: run the stack, submit writes, follow them, resolve the ones waiting for a person.

Exit codes (adapters/errors.py): 0 done (verified, or accepted without --wait); 1 rejected or
abandoned; 2 bad input or unreachable service; 3 waiting for a person (pending_confirmation,
conflict).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters.errors import EXIT_FAILED, EXIT_OK, WritebackError
from adapters.ids import content_key
from adapters.tenants import load_tenants, resolve_tenants_path
from workers.api_cli import add_api_commands
from workers.audit_cli import add_audit_commands
from workers.callers_cli import add_callers_commands
from workers.cli_support import UsageError, add_caller_key, connect_client, exit_code_for, problems
from workers.client import WriteNotFound
from workers.codec_server import add_codec_server_command
from workers.devstack import StackConfig, running_stack, sandbox_command
from workers.hygiene import install_log_filters
from workers.keys import load_key_provider
from workers.keys_cli import add_keys_commands
from workers.reconcile_cli import add_reconcile_commands
from workers.render import as_json, status_text, transition_printer
from workers.review_cli import add_review_commands
from workers.saga_cli import add_saga_commands
from workers.schedules import register_sweep_schedules
from workers.settings import Settings
from workers.temporal_client import connect
from workers.tenants_cli import add_tenants_commands
from workers.webhooks_cli import add_webhooks_commands
from workflows.contract import (
    Interaction,
    Urgency,
    WriteCommand,
)
from workflows.input_limits import check_command


def default_idempotency_key(tenant: str, resource: dict[str, Any]) -> str:
    """Same tenant + same content = same command, so resubmitting a file never writes twice: an
    HMAC under the tenant's id secret from the key file (adapters/ids.py ``content_key``), so
    the workflow id does not let anyone guess the content back."""
    keys = load_key_provider(Settings.from_env().state_dir)
    return content_key(keys.id_secret(tenant), tenant, resource)


def read_resource(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold one FHIR resource (a JSON object)")
    return data


def build_command(args: argparse.Namespace) -> WriteCommand:
    resource = read_resource(Path(args.file))
    key = args.key or default_idempotency_key(args.tenant, resource)
    try:
        command = WriteCommand(
            tenant=args.tenant,
            idempotency_key=key,
            resource=resource,
            requested_by=args.requested_by,
            on_behalf_of=args.on_behalf_of,
            role=args.role,
            purpose=args.purpose,
            urgency=Urgency(args.urgency),
            interaction=Interaction.UPDATE if args.update else Interaction.CREATE,
            target=args.update,
            base_version=args.base_version,
        )
    except ValidationError as exc:
        raise UsageError(f"invalid command: {problems(exc, WriteCommand)}") from None
    check_command(command)  # the client checks again; here it is said before connecting
    return command


async def cmd_submit(args: argparse.Namespace) -> int:
    command = build_command(args)
    client = await connect_client(args.caller_key)
    submission = await client.submit(command)
    if not args.wait:
        status = await client.status(submission.workflow_id)
        print(as_json(status) if args.json else f"submitted {submission.workflow_id}")
        return EXIT_OK
    if not args.json:
        print(f"{submission.workflow_id}", flush=True)
    status = await client.wait(
        submission.workflow_id, on_change=None if args.json else transition_printer()
    )
    if args.json:
        print(as_json(status))
    elif status.resource:
        print(f"{status.state.value}: {status.resource} version {status.version}")
    else:
        print(f"{status.state.value}: {status.reason or ''}")
    return exit_code_for(status.state)


async def cmd_status(args: argparse.Namespace) -> int:
    client = await connect_client()
    try:
        status = await client.status(args.workflow_id)
    except WriteNotFound:
        raise UsageError(f"no write with workflow id {args.workflow_id}") from None
    if args.json:
        print(as_json(status))
    else:
        print(status_text(status))
    return exit_code_for(status.state)


def _tenants_path(args: argparse.Namespace) -> Path:
    path = resolve_tenants_path(args.tenants)
    load_tenants(path)  # fail fast, with the file's own error message
    return path


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import run_worker

    tenants = load_tenants(resolve_tenants_path(args.tenants))
    asyncio.run(run_worker(Settings.from_env(), tenants))
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    db = Path(args.db) if args.db else Settings.from_env().state_dir / "sandbox.db"
    return subprocess.call(sandbox_command(args.port, db))


def _stack_config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        state_dir=Path(args.state_dir or Settings.from_env().state_dir),
        tenants_path=_tenants_path(args),
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        sandbox_port=args.sandbox_port,
        codec_port=args.codec_port,
        api_port=args.api_port,
        codec_token_in_url=args.codec_token_in_url,
    )


def cmd_dev(args: argparse.Namespace) -> int:
    config = _stack_config(args)
    os.environ.update(config.environment())  # this process registers the sweeps
    with running_stack(config) as stack:
        sweeps = asyncio.run(_register_sweeps(config))
        print(f"Temporal   {config.temporal_address}")
        print(f"Web UI     {config.ui_url}")
        print(f"Codec      {config.codec_url} (token in {config.state_dir / 'codec_dev_token'})")
        if config.codec_token_in_url:
            print("           the Web UI's codec URL holds the token (--codec-token-in-url)")
        else:
            print(f"           Web UI: sign in once at {config.codec_url}/wb-codec/login, then in")
            print("           the UI's codec settings turn on 'Include cross-origin credentials'")
        print(f"Sandbox    {config.sandbox_url}/fhir/<tenant>")
        print(f"API        {config.api_url}  (docs {config.api_url}/docs; a token: writeback")
        print("           api-token --client dev-app --scope system/Observation.cu)")
        print(f"Tenants    {config.tenants_path}")
        print(f"Logs       {config.state_dir / 'logs'}")
        print(f"Sweeps     {len(sweeps)} reconciliation schedules (`writeback reconcile run`)")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while all(process.poll() is None for _name, process in stack.processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)
            return EXIT_OK
        dead = [name for name, process in stack.processes if process.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited (see {config.state_dir / 'logs'})")
        return EXIT_FAILED


async def _register_sweeps(config: StackConfig) -> list[str]:
    """The per-tenant reconciliation sweeps, as Temporal Schedules (visible in the Web UI)."""
    settings = Settings.from_env()
    client = await connect(config.temporal_address, settings.namespace)
    tenants = load_tenants(config.tenants_path)
    return await register_sweep_schedules(client, tenants, settings.task_queue)


def cmd_demo(args: argparse.Namespace) -> int:
    from workers.demo import run_demo

    config = _stack_config(args)
    os.environ.update(config.environment())
    with running_stack(config):
        return asyncio.run(run_demo(config))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="writeback", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    def with_tenants(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenants", help="tenant file (default: $WRITEBACK_TENANTS or the demo)")

    def with_stack(p: argparse.ArgumentParser) -> None:
        with_tenants(p)
        p.add_argument("--state-dir", help="where databases and logs go (default ./state)")
        p.add_argument("--temporal-port", type=int, default=7233)
        p.add_argument("--ui-port", type=int, default=8233)
        p.add_argument(
            "--sandbox-port", type=int, default=8090, help="the tenants' base URLs must match"
        )
        p.add_argument("--codec-port", type=int, default=8234, help="codec server for the UI")
        p.add_argument("--api-port", type=int, default=8235, help="the HTTP API (README)")
        p.add_argument(
            "--codec-token-in-url",
            action="store_true",
            help="give the Web UI a codec URL holding the dev token (no sign-in; the token then "
            "shows in process arguments and URLs)",
        )

    dev = sub.add_parser("dev", help="run the embedded stack in the foreground")
    with_stack(dev)
    dev.set_defaults(run=cmd_dev)

    demo = sub.add_parser("demo", help="start the stack, write sample Observations, show outcomes")
    with_stack(demo)
    demo.set_defaults(run=cmd_demo)

    worker = sub.add_parser("worker", help="run a worker (Temporal at $TEMPORAL_ADDRESS)")
    with_tenants(worker)
    worker.set_defaults(run=cmd_worker)

    sandbox = sub.add_parser("sandbox", help="run the sandbox EHR")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument("--db", help="SQLite file (default ./state/sandbox.db)")
    sandbox.set_defaults(run=cmd_sandbox)

    submit = sub.add_parser("submit", help="write a FHIR resource from a JSON file")
    submit.add_argument("file")
    submit.add_argument("--tenant", required=True)
    submit.add_argument(
        "--key", help="idempotency key, opaque (default: keyed hash of tenant + content)"
    )
    submit.add_argument("--urgency", choices=[u.value for u in Urgency], default="routine")
    submit.add_argument("--requested-by", default="cli", help="calling service id")
    submit.add_argument("--on-behalf-of", help="user reference, e.g. Practitioner/123")
    submit.add_argument("--role", help="the on-behalf-of user's role code (tenant policy)")
    submit.add_argument("--purpose", help="purpose of use, e.g. TREAT (tenant policy)")
    submit.add_argument("--update", metavar="REFERENCE", help="update e.g. Observation/123")
    submit.add_argument("--base-version", help="with --update: the version the user saw")
    submit.add_argument("--wait", action="store_true", help="follow until settled")
    submit.add_argument("--json", action="store_true", help="print one final JSON object")
    add_caller_key(submit)
    submit.set_defaults(run=cmd_submit)

    status = sub.add_parser("status", help="what happened to a write")
    status.add_argument("workflow_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    add_review_commands(sub)
    add_reconcile_commands(sub)
    add_saga_commands(sub)
    add_tenants_commands(sub)
    add_codec_server_command(sub)
    add_audit_commands(sub)
    add_keys_commands(sub)
    add_callers_commands(sub)
    add_webhooks_commands(sub)
    add_api_commands(sub)
    return top


def run() -> None:
    """Console-script entry point. Exits with ``os._exit`` after flushing: the Temporal core
    bridge has been seen to abort the interpreter during finalization (docs/toolchain.md), which
    would turn a successful command into exit code 134 for the scripts that call it."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("WRITEBACK_LOG_LEVEL", "WARNING"))
    install_log_filters()
    args = parser().parse_args(argv)
    try:
        result = args.run(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except WritebackError as exc:  # each says what to print and what to exit with
        print(f"error: {exc.for_terminal()}", file=sys.stderr)
        return exc.exit_code
