"""``writeback audit verify|checkpoint|install``: check the audit ledger, anchor its heads outside
the database, install its PostgreSQL tables as their owner (where things live:
workers/audit_config.py)."""

from __future__ import annotations

import argparse

from activities.audit_anchor import CheckpointError
from activities.audit_ledger import AuditLedger
from activities.audit_schema import install_postgres
from adapters.errors import EXIT_FAILED, EXIT_OK
from workers.audit_config import AUDIT_DB_ENV as AUDIT_DB_ENV  # re-exported
from workers.audit_config import ledger_location as ledger_location  # re-exported
from workers.audit_config import open_configured
from workers.audit_config import shared_ledger as shared_ledger  # re-exported
from workers.cli_support import UsageError


def _verify(ledger: AuditLedger, only: str | None) -> bool:
    try:
        checkpoints = ledger.anchors.all()
    except CheckpointError as err:
        print(f"TAMPERED  checkpoint {err}")
        return False
    tenants = ledger.tenants()
    if only and only not in tenants:
        raise UsageError(f"the ledger has no records for tenant '{only}'")
    intact = True
    for tenant in [only] if only else tenants:
        result = ledger.verify(tenant, checkpoints)
        if result.ok:
            legacy = f" ({result.unkeyed} from before the keyed chain)" if result.unkeyed else ""
            print(f"ok        {tenant}: {result.records} records{legacy}, chain intact")
        else:
            intact = False
            print(f"TAMPERED  {tenant}: first bad record {result.first_bad}: {result.problem}")
    if not tenants:
        print("the ledger is empty")
    return intact


def cmd_verify(args: argparse.Namespace) -> int:
    ledger = open_configured(args.db or ledger_location(), read_only=True)
    try:
        return EXIT_OK if _verify(ledger, args.tenant) else EXIT_FAILED
    finally:
        ledger.close()


def cmd_checkpoint(args: argparse.Namespace) -> int:
    ledger = open_configured(args.db or ledger_location())
    try:
        path = ledger.checkpoint()
    except (ValueError, CheckpointError) as err:
        print(f"TAMPERED  no checkpoint written: {err}")
        return EXIT_FAILED
    finally:
        ledger.close()
    print(f"checkpoint written: {path}")
    return EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    location = args.db or ledger_location()
    if not location.startswith(("postgresql://", "postgres://")):
        raise UsageError("install is for a PostgreSQL ledger (--db postgresql://…)")
    install_postgres(location, args.owner or None, args.schema, args.writer, args.reader)
    print(f"installed the audit ledger in schema {args.schema}, owned by {args.owner}")
    return EXIT_OK


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit ledger")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    where = f"ledger (default: ${AUDIT_DB_ENV} or <state dir>/audit.db)"
    verify = commands.add_parser(
        "verify",
        help="check every tenant's chain against its key, head and checkpoints; exit 1 naming "
        "the first bad record",
    )
    verify.add_argument("--tenant", help="only this tenant")
    verify.add_argument("--db", help=where)
    verify.set_defaults(run=cmd_verify)
    checkpoint = commands.add_parser(
        "checkpoint", help="write a checkpoint of every verified head (run it on a schedule)"
    )
    checkpoint.add_argument("--db", help=where)
    checkpoint.set_defaults(run=cmd_checkpoint)
    install = commands.add_parser(
        "install",
        help="PostgreSQL: create the tables and guards as their owner, grant the worker's role "
        "append only (deploy/postgres/audit-roles.sql makes the roles)",
    )
    install.add_argument("--db", help="an administrator's URL (it must be able to SET ROLE)")
    install.add_argument("--owner", default="writeback_audit_owner", help="'' for the login role")
    install.add_argument("--schema", default="audit")
    install.add_argument("--writer", default="writeback_audit_writer")
    install.add_argument("--reader", default="writeback_audit_reader")
    install.set_defaults(run=cmd_install)
