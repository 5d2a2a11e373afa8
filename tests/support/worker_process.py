"""A `writeback worker` as a child process, so a test can SIGKILL it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m workers worker`` as a child process (so a test can SIGKILL it)."""

    def __init__(
        self,
        address: str,
        task_queue: str,
        tenants_file: Path,
        log: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            **(extra_env or {}),
            "TEMPORAL_ADDRESS": address,
            "WRITEBACK_TASK_QUEUE": task_queue,
            "PYTHONPATH": str(ROOT),
        }
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--tenants", str(tenants_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until ready (or the process dies)
        if "worker ready" not in line:
            self.stop()
            raise RuntimeError(f"worker did not start: {line!r}; see {log}")

    @property
    def identity(self) -> str:
        """The Temporal worker identity this process polls with (the SDK's default)."""
        return f"{self.proc.pid}@{socket.gethostname()}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
