"""A webhook receiver as a separate process, as a subscriber would run one: every request is
checked with ``standardwebhooks.Webhook(secret).verify`` and recorded (one JSON line per request:
whether it verified, its headers and its body); a verified one is answered 204, any other 401.
``--answer STATUS`` answers every request with STATUS instead (a receiver that refuses).

Run: ``python tests/support/webhook_receiver.py --port P --secret whsec_… --record FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

READY = "receiver ready"


def serve(port: int, secret: str, record: Path, answer: int | None) -> None:
    webhook = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            entry = {"verified": verified, "headers": headers, "body": body.decode()}
            with record.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            status = answer if answer is not None else (204 if verified else 401)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(READY, flush=True)
    server.serve_forever()


class ReceiverProcess:
    """The receiver as a child process of a test."""

    def __init__(self, port: int, secret: str, record: Path, answer: int | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}/hooks"
        self.record = record
        command = [sys.executable, __file__, "--port", str(port), "--secret", secret]
        command += ["--record", str(record)] + (["--answer", str(answer)] if answer else [])
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if READY not in self.proc.stdout.readline():
            self.stop()
            raise RuntimeError("the webhook receiver did not start")

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


async def eventually(check: Any, within: float = 60.0) -> Any:
    """Await ``check()`` (sync or async) returning something truthy: polled, never a fixed sleep
    as synchronisation."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--answer", type=int)
    args = parser.parse_args()
    serve(args.port, args.secret, args.record, args.answer)
