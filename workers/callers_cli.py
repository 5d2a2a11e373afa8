"""``writeback callers``: make a caller's key pair, and show the registry a worker would load
(README: Security, Callers)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from adapters.caller_keys import (
    CALLER_KEYS_ENV,
    Capability,
    load_callers,
    new_private_key,
    private_pem,
    registry_entry,
)
from adapters.errors import EXIT_OK
from workers.cli_support import UsageError


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write ``ID.pem`` (the private key, mode 0600: it stays with the caller) and print the
    ``[[caller]]`` table to add to the worker's registry (its public half)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.id}.pem"
    if path.exists():
        raise UsageError(f"{path} exists: a caller's key is never overwritten (choose --out)")
    key = new_private_key()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private_pem(key))
    signs: list[Capability] = ["decisions"] if args.operator else ["commands"]
    print(
        f"# private key: {path} (give it to {args.id} only: --caller-key, or $WRITEBACK_CALLER_KEY)"
    )
    print(f"# add to the caller key registry (${CALLER_KEYS_ENV}) and restart the workers:")
    print(registry_entry(args.id, key, signs), end="")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    registry = load_callers(args.registry)
    print(f"{len(registry)} caller key(s) from {registry.source}")
    for caller in registry.callers:
        print(f"  {caller}")
    return EXIT_OK


def add_callers_commands(sub: Any) -> None:
    callers = sub.add_parser("callers", help="caller keys: who may start writes and decide")
    commands = callers.add_subparsers(dest="callers_command", required=True)

    keygen = commands.add_parser("keygen", help="a new key pair for a calling service or operator")
    keygen.add_argument("id", help="the caller id: a service's requested_by, an operator's --by")
    keygen.add_argument("--out", default=".", help="directory for ID.pem (default: here)")
    keygen.add_argument(
        "--operator", action="store_true", help="the key signs decisions, not commands"
    )
    keygen.set_defaults(run=cmd_keygen)

    listing = commands.add_parser("list", help="the caller ids a worker would accept")
    listing.add_argument("--registry", help=f"file or directory (default: ${CALLER_KEYS_ENV})")
    listing.set_defaults(run=cmd_list)
