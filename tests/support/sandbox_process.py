"""The sandbox EHR as a real subprocess for tests, and request builders for it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


class SandboxProcess:
    """One ``python -m sandbox`` process; ``url`` is known once it is listening."""

    def __init__(self, db: Path, log: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.db = db
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", "--db", str(db), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("sandbox listening on "):
                    return line.removeprefix("sandbox listening on ").strip()
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("sandbox did not start; see its stderr log")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def observation(command_id: str | None = None, patient: str = "example") -> dict[str, Any]:
    """Vital-sign heart-rate Observation carrying a write-back command identifier."""
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:writeback:command", "value": command_id or new_cmd()}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2024-05-01T10:30:00Z",
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def new_cmd() -> str:
    return uuid.uuid4().hex


def ident(cmd: str) -> str:
    return f"identifier=urn:writeback:command|{cmd}"
