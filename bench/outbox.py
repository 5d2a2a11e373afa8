"""A hand-built outbox: the minimal thing a user would build instead of writeback (issue #21).

What it is: one SQLite table (WAL) of pending writes, and a worker that polls it, in a process of
its own (``python -m bench.outbox``) so that /proc gives its CPU like the other processes'. The
submitter inserts a row (where to write, the resource, its command identifier, the time) and waits
for the row to be done. The worker claims pending rows in batches, sends each one's conditional
create (``If-None-Exist`` on the identifier) and read-back to the sandbox tenant over HTTP
(bench/exchange.py: the same two requests as the direct baseline and writeback's activities), and
marks the row done with the time. submit→done is read from the row's two timestamps, not from
when the submitter noticed.

Why: next to the Temporal baselines (bench/bare.py), writeback's figures say what the product
costs on top of Temporal; next to this one they say what it costs against doing without Temporal,
which is the choice a user has. It is built to be fast, not a straw man: one
``httpx.AsyncClient`` with keep-alive, as many exchanges at a time as the benchmark keeps in
flight (``--concurrency``), one transaction claiming every pending row there is room for, an
immediate re-poll after a claim that found rows, and a short poll when idle (``--idle-poll-ms``,
5 ms).

What it leaves out, which writeback does: retries and backoff (a failed exchange marks its row
failed), recovery of rows claimed by a worker that died, per-tenant rate limits, validation, an
audit trail and a record of the EHR exchanges, the one-copy check, the review of uncertain writes.
Its figures are a floor for a user's own code, not a like-for-like product.

    python -m bench.outbox --db PATH [--concurrency 1] [--idle-poll-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.exchange import create_and_read
from bench.procs import Child, spawn

_ROOT = Path(__file__).resolve().parents[1]
_READY = "outbox ready"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    identifier TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    submitted_at REAL NOT NULL,
    done_at REAL,
    resource_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE state = 'pending';
"""
_WAIT_SECONDS = 60.0
_starts = itertools.count()


def connect(path: Path) -> sqlite3.Connection:
    """Autocommit (each statement its own transaction), WAL, ``synchronous=normal``."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(_SCHEMA)
    return conn


# ---- the worker (its own process) ----


def _claim(conn: sqlite3.Connection, room: int) -> list[tuple[int, str, str, str]]:
    return conn.execute(
        "UPDATE outbox SET state = 'claimed' WHERE id IN "
        "(SELECT id FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?) "
        "RETURNING id, base_url, identifier, body",
        (room,),
    ).fetchall()


async def _deliver(
    conn: sqlite3.Connection, http: httpx.AsyncClient, row: tuple[int, str, str, str]
) -> None:
    row_id, base_url, identifier, body = row
    try:
        resource_id = await create_and_read(http, base_url, json.loads(body), identifier)
    except Exception as error:  # any failure fails the row: no retries (see the docstring)
        conn.execute(
            "UPDATE outbox SET state = 'failed', done_at = ?, error = ? WHERE id = ?",
            (time.time(), repr(error)[:500], row_id),
        )
        return
    conn.execute(
        "UPDATE outbox SET state = 'done', done_at = ?, resource_id = ? WHERE id = ?",
        (time.time(), resource_id, row_id),
    )


async def work(db: Path, concurrency: int, idle_poll: float, stop: asyncio.Event) -> None:
    """Claim and deliver rows, at most ``concurrency`` at a time, until ``stop``; then finish
    the ones in flight."""
    conn = connect(db)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    busy: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        print(_READY, flush=True)
        while not stop.is_set():
            room = concurrency - len(busy)
            if not room:
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
                continue
            rows = _claim(conn, room)
            for row in rows:
                task = asyncio.create_task(_deliver(conn, http, row))
                busy.add(task)
                task.add_done_callback(busy.discard)
            # rows found: look again at once (after letting the new exchanges start)
            await asyncio.sleep(0 if rows else idle_poll)
        await asyncio.gather(*busy)
    conn.close()


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await work(Path(args.db), args.concurrency, args.idle_poll_ms / 1000, stop)


# ---- the submitter (the benchmark's process) ----


@dataclass(frozen=True)
class Done:
    ok: bool
    seconds: float
    """submit→done, from the row's timestamps."""


class Outbox:
    """The submitting side of one running worker process. Database calls run on one thread of
    their own, off the event loop; one poller task reads which waited-for rows are finished."""

    def __init__(self, db: Path, child: Child, poll_seconds: float = 0.002) -> None:
        self.child = child
        self._conn = connect(db)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="outbox-db")
        self._poll_seconds = poll_seconds
        self._waiting: dict[int, asyncio.Future[Done]] = {}
        self._poller: asyncio.Task[None] | None = None

    def cpu(self) -> float:
        """CPU seconds the worker process has spent so far."""
        return self.child.cpu()

    async def write(self, base_url: str, body: dict[str, Any], identifier: str) -> Done:
        """Insert a pending write and wait until the worker has finished it (TimeoutError after
        ``_WAIT_SECONDS``: a worker that died leaves its rows claimed)."""
        loop = asyncio.get_running_loop()
        row_id = await loop.run_in_executor(
            self._thread, self._insert, base_url, json.dumps(body), identifier
        )
        done = self._waiting[row_id] = loop.create_future()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(done, _WAIT_SECONDS)
        finally:
            self._waiting.pop(row_id, None)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self._thread.shutdown()
        self._conn.close()

    def _insert(self, base_url: str, body: str, identifier: str) -> int:
        cursor = self._conn.execute(
            "INSERT INTO outbox (base_url, identifier, body, submitted_at) VALUES (?, ?, ?, ?)",
            (base_url, identifier, body, time.time()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _finished(self, ids: list[int]) -> list[tuple[int, str, float, float]]:
        return self._conn.execute(
            "SELECT id, state, submitted_at, done_at FROM outbox "
            "WHERE id IN (SELECT value FROM json_each(?)) AND state IN ('done', 'failed')",
            (json.dumps(ids),),
        ).fetchall()

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            rows = await loop.run_in_executor(self._thread, self._finished, list(self._waiting))
            for row_id, state, submitted_at, done_at in rows:
                done = self._waiting.pop(row_id, None)
                if done is not None and not done.done():
                    done.set_result(Done(state == "done", done_at - submitted_at))
            await asyncio.sleep(self._poll_seconds)
        self._poller = None


def _start(workdir: Path, db: Path, concurrency: int) -> Child:
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "bench.outbox", "--db", str(db)]
    command += ["--concurrency", str(concurrency)]
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    child = spawn(f"outbox-{next(_starts)}", command, logs, env, _ROOT)
    child.wait_for(_READY, 60)
    return child


@asynccontextmanager
async def running(workdir: Path, concurrency: int) -> AsyncIterator[Outbox]:
    """A worker process with ``concurrency`` exchanges at a time on ``workdir/outbox.db``, and
    the submitting side of it; the worker stops (finishing what it claimed) on exit."""
    db = workdir / "outbox.db"
    connect(db).close()
    child = await asyncio.to_thread(_start, workdir, db, concurrency)
    box = Outbox(db, child)
    try:
        yield box
    finally:
        box.close()
        await asyncio.to_thread(child.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the outbox's SQLite file")
    parser.add_argument("--concurrency", type=int, default=1, help="exchanges at a time")
    parser.add_argument("--idle-poll-ms", type=float, default=5.0, help="poll interval when idle")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
