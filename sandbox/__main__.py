"""``python -m sandbox --host 127.0.0.1 --port 8090 --db state/sandbox.db [--config FILE]``.

Prints exactly one line, ``sandbox listening on http://HOST:PORT``, once the
socket accepts connections (``--port 0`` picks a free port and prints it).
SIGTERM and SIGINT stop it gracefully with exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from types import FrameType

from sandbox.app import create_app
from sandbox.config import SandboxConfig, load_config
from sandbox.personalities import REGISTRY, parse_mapping
from sandbox.server import Server, config


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the captured signal after a graceful shutdown; exit 0.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", default="state/sandbox.db")
    parser.add_argument("--config", type=Path, help="TOML config file (see sandbox/README.md)")
    parser.add_argument(
        "--personality",
        action="append",
        default=[],
        metavar="TENANT=NAME",
        help=f"map a tenant to a personality ({', '.join(REGISTRY)}); repeatable",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        mapping = parse_mapping(args.personality)
        cfg = load_config(args.config) if args.config else SandboxConfig()
    except ValueError as exc:
        parser.error(str(exc))
    # built-in demo tenants first, then the config file, then explicit CLI flags
    explicit = dict(p.split("=", 1) for p in args.personality)
    defaults = {t: n for t, n in mapping.items() if t not in cfg.tenants or t in explicit}
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    app = create_app(args.db, defaults, cfg)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        Server(config(app, args.host, args.port, args.log_level)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
