"""Fixtures running the sandbox EHR as a real subprocess (``python -m sandbox``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.sandbox_process import SandboxProcess


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """Factory: start a sandbox over a db file (restartable on the same file)."""
    started: list[SandboxProcess] = []

    def start(db: Path | None = None, *extra: str) -> SandboxProcess:
        sp = SandboxProcess(db or tmp_path / "s.db", tmp_path / "sandbox.log", *extra)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox shared by the tests of one module (tests use unique identifiers)."""
    tmp = tmp_path_factory.mktemp("sandbox")
    sp = SandboxProcess(tmp / "s.db", tmp / "sandbox.log")
    yield sp
    sp.stop()


@pytest.fixture
def client(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as c:
        yield c


@pytest.fixture
def tenant(client: httpx.Client) -> Iterator[str]:
    """A fresh tenant (strict r4 personality); its faults are cleared afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name
    client.delete(f"/_admin/faults/{name}")
