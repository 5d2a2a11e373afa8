"""What the tests' server subprocesses share: waiting for the line that says where one listens,
and stopping one."""

from __future__ import annotations

import select
import subprocess
import time


def announced(proc: subprocess.Popen[str], prefix: str, within: float) -> str | None:
    """What ``proc`` prints after ``prefix`` on stdout (its URL, once it listens); None when it
    exits or ``within`` seconds pass first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
        if proc.poll() is not None:
            return None
    return None


def stop(proc: subprocess.Popen[str], within: float = 15) -> int:
    """SIGTERM, then SIGKILL if it is still running ``within`` seconds later; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
