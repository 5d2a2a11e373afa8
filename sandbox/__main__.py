"""``python -m sandbox --host 127.0.0.1 --port 8090 --db state/sandbox.db``.

Prints exactly one line, ``sandbox listening on http://HOST:PORT``, once the
socket accepts connections (``--port 0`` picks a free port and prints it).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from sandbox.app import create_app
from sandbox.personalities import parse_mapping


class _Server(uvicorn.Server):
    """uvicorn Server that announces the bound address after startup."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        host, port = self.config.host, self.config.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                port = sock.getsockname()[1]
                break
        print(f"sandbox listening on http://{host}:{port}", flush=True)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the captured signal after a graceful shutdown; exit 0.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", default="state/sandbox.db")
    parser.add_argument(
        "--personality",
        action="append",
        default=[],
        metavar="TENANT=NAME",
        help="map a tenant to a personality (r4, epic, cerner); repeatable",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        mapping = parse_mapping(args.personality)
    except ValueError as exc:
        parser.error(str(exc))
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    app = create_app(args.db, mapping)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_level=args.log_level,
        timeout_graceful_shutdown=2,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        _Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
