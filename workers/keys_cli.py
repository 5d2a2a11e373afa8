"""``writeback keys rotate [--tenant T]``: add a newest payload key. New payloads use it once the
processes reload the key file (restart workers, codec server, CLI); every older key stays in the
file, so histories written under it still decode."""

from __future__ import annotations

import argparse

from adapters.errors import EXIT_OK
from workers.cli_support import UsageError
from workers.keys import ROOT_RING, keys_file_path, load_key_provider
from workers.settings import Settings


def cmd_rotate(args: argparse.Namespace) -> int:
    state_dir = Settings.from_env().state_dir
    path = keys_file_path(state_dir)
    if not path.exists():
        raise UsageError(f"no key file at {path} (set WRITEBACK_KEYS_FILE or run `writeback dev`)")
    ring = args.tenant or ROOT_RING
    rotated = load_key_provider(state_dir, create=False).rotated(ring)
    rotated.save(path)
    scope = f"tenant '{args.tenant}'" if args.tenant else "every tenant without its own keyring"
    print(f"new key {rotated.current(args.tenant or 'system').key_id} for {scope} in {path}")
    print("restart workers, codec server and clients to start using it")
    return EXIT_OK


def add_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="payload encryption keys")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = commands.add_parser("rotate", help="add a newest key (old ones stay for decoding)")
    rotate.add_argument("--tenant", help="give this tenant its own keyring (default: the root)")
    rotate.set_defaults(run=cmd_rotate)
