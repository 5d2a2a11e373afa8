"""uvicorn, tuned for speed, with a hook that lets the app drop a connection unanswered.

Faults such as ``connection_reset`` and ``commit_then_drop`` must close the TCP
connection without any HTTP response, which ASGI cannot express. The HTTP
protocol below puts ``scope["extensions"]["sandbox.abort"]`` into every request:
calling it (``reset=True`` sends an RST via SO_LINGER 0) aborts the transport,
and marks the request cycle disconnected so uvicorn sends nothing afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandbox.pipeline import ABORT_KEY


class AbortableHttpToolsProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions: Any = {ABORT_KEY: self._sandbox_abort}
        self.scope["extensions"] = extensions

    def _sandbox_abort(self, reset: bool) -> None:
        if reset:
            sock: Any = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.abort()


class Server(uvicorn.Server):
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


def config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=AbortableHttpToolsProtocol,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        backlog=4096,
    )
