"""``writeback audit verify [--tenant T]``: check the audit ledger's hash chains, and where the
ledger lives (``$WRITEBACK_AUDIT_DB``: a SQLite path or a ``postgresql://`` URL; default
``<state dir>/audit.db``)."""

from __future__ import annotations

import argparse
import functools
import os

from activities.audit_ledger import AuditLedger, open_ledger
from adapters.errors import EXIT_FAILED, EXIT_OK
from workers.cli_support import UsageError
from workers.settings import Settings

AUDIT_DB_ENV = "WRITEBACK_AUDIT_DB"


def ledger_location() -> str:
    return os.environ.get(AUDIT_DB_ENV) or str(Settings.from_env().state_dir / "audit.db")


@functools.cache
def shared_ledger(location: str) -> AuditLedger:
    """One ledger connection per location and process (workers of one process share it)."""
    return open_ledger(location)


def cmd_verify(args: argparse.Namespace) -> int:
    location = args.db or ledger_location()
    ledger = open_ledger(location)
    try:
        tenants = [args.tenant] if args.tenant else ledger.tenants()
        if args.tenant and args.tenant not in ledger.tenants():
            raise UsageError(f"the ledger has no records for tenant '{args.tenant}'")
        failed = False
        for tenant in tenants:
            result = ledger.verify(tenant)
            if result.ok:
                print(f"ok        {tenant}: {result.records} records, chain intact")
            else:
                failed = True
                print(f"TAMPERED  {tenant}: first bad record {result.first_bad}: {result.problem}")
        if not tenants:
            print("the ledger is empty")
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        ledger.close()


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit ledger")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser(
        "verify", help="check every tenant's hash chain; exit 1 naming the first bad record"
    )
    verify.add_argument("--tenant", help="only this tenant")
    verify.add_argument("--db", help=f"ledger (default: ${AUDIT_DB_ENV} or <state dir>/audit.db)")
    verify.set_defaults(run=cmd_verify)
