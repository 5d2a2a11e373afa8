"""Liveness and readiness over HTTP for a worker process (Kubernetes probes, compose healthchecks).

``GET /livez``  200 while the worker's event loop answers (a wedged loop fails the probe).
``GET /readyz`` 200 once every Temporal worker of the process polls its task queue; 503 before
that and once shutdown (SIGTERM) has begun, so no new traffic is routed to a draining pod.

A few lines of asyncio rather than a web framework: the worker must not depend on the sandbox's
server stack, and two fixed paths need no routing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

LIVE_PATH = "/livez"
READY_PATH = "/readyz"
HEALTH_PATHS = (LIVE_PATH, READY_PATH)


@dataclass
class Health:
    """What the probes report; the worker flips ``ready`` as it starts and drains."""

    ready: bool = False

    def answer(self, path: str) -> tuple[int, str]:
        if path == LIVE_PATH:
            return 200, "live"
        if path == READY_PATH:
            return (200, "ready") if self.ready else (503, "not ready")
        return 404, "not found"


async def _handle(
    health: Health, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request_line = await asyncio.wait_for(reader.readline(), timeout=5)
        parts = request_line.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        status, body = health.answer(path) if parts and parts[0] == "GET" else (405, "GET only")
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
            status, "Service Unavailable"
        )
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
        )
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@asynccontextmanager
async def serving_health(health: Health, port: int, host: str = "0.0.0.0") -> AsyncIterator[int]:
    """Serve the probes on ``port`` (0: any free port); yields the bound port."""
    server = await asyncio.start_server(lambda r, w: _handle(health, r, w), host=host, port=port)
    bound = int(server.sockets[0].getsockname()[1])
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
