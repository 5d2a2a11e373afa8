"""``writeback keys init`` and ``writeback keys rotate [--tenant T]``.

``init`` creates the key file (never over an existing one). ``rotate`` adds a newest payload key;
new payloads use it once the processes reload the keys (restart workers, codec server, CLI); every
older key stays, so histories written under it still decode.

Where the keys come from decides where a rotation goes. When ``$WRITEBACK_KEYS`` holds them (a
secret store), the key file is not what the processes read: ``rotate`` refuses to write it (it
used to overwrite the file with the environment's keys, silently) and ``rotate --print`` prints
the rotated JSON to store back into the secret store instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from adapters.errors import EXIT_OK
from workers.cli_support import UsageError
from workers.keys import (
    KEYS_FILE_ENV,
    KEYS_JSON_ENV,
    RESERVED_TENANT_IDS,
    ROOT_RING,
    LocalKeyProvider,
    create_key_file,
    keys_file_path,
    load_key_provider,
)
from workers.settings import Settings


def cmd_init(args: argparse.Namespace) -> int:
    if os.environ.get(KEYS_JSON_ENV):
        raise UsageError(f"${KEYS_JSON_ENV} is set: the keys come from there, not from a file")
    path = keys_file_path(Settings.from_env().state_dir)
    if not create_key_file(path):
        raise UsageError(f"a key file already exists at {path} (rotate it, never replace it)")
    print(f"new payload key file {path} (owner-only); give every process of this deployment the")
    print(f"same file (${KEYS_FILE_ENV}) or its content (${KEYS_JSON_ENV}); back it up: history")
    print("written under its keys cannot be read without them")
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    state_dir = Settings.from_env().state_dir
    if args.tenant in RESERVED_TENANT_IDS:
        raise UsageError(f"'{args.tenant}' is not a tenant (reserved); omit --tenant for the root")
    ring = args.tenant or ROOT_RING
    scope = f"tenant '{args.tenant}'" if args.tenant else "every tenant without its own keyring"
    if args.print:
        rotated = load_key_provider(state_dir).rotated(ring)
        print(rotated.to_json())
        newest = rotated.current(args.tenant or "system").key_id
        print(
            f"new key {newest} for {scope}: store this JSON where the keys come from",
            file=sys.stderr,
        )
        return EXIT_OK
    if os.environ.get(KEYS_JSON_ENV):
        raise UsageError(
            f"${KEYS_JSON_ENV} is set: the processes read their keys from it, not from "
            f"{keys_file_path(state_dir)}; rotate with `writeback keys rotate --print` and store "
            "the printed JSON back where the variable comes from"
        )
    path = keys_file_path(state_dir)
    if not path.exists():
        raise UsageError(
            f"no key file at {path} (set {KEYS_FILE_ENV} or run `writeback keys init`)"
        )
    rotated = LocalKeyProvider.from_file(path).rotated(ring)
    rotated.save(path)
    print(f"new key {rotated.current(args.tenant or 'system').key_id} for {scope} in {path}")
    print("restart workers, codec server and clients to start using it")
    return EXIT_OK


def add_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="payload encryption keys")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    init = commands.add_parser("init", help="create the key file (never over an existing one)")
    init.set_defaults(run=cmd_init)
    rotate = commands.add_parser("rotate", help="add a newest key (old ones stay for decoding)")
    rotate.add_argument("--tenant", help="give this tenant its own keyring (default: the root)")
    rotate.add_argument(
        "--print",
        action="store_true",
        help=f"print the rotated key JSON instead of writing the file (keys in ${KEYS_JSON_ENV})",
    )
    rotate.set_defaults(run=cmd_rotate)
