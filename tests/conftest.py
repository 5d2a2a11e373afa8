"""Shared fixtures: a real sandbox EHR process, tenant files pointing at it, Temporal servers."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.callers import write_test_callers
from support.sandbox_process import SandboxProcess
from support.smart_keys import make_key
from support.temporal import dev_server_environment, time_skipping_environment
from support.tenants import TEST_TENANTS, personality_args, write_tenants_file
from temporalio.testing import WorkflowEnvironment

from adapters.caller_keys import CALLER_KEYS_ENV
from adapters.callers import CALLER_KEY_ENV
from adapters.tenants import TenantRegistry, load_tenants
from workers.audit_config import AUDIT_DB_ENV, AUDIT_KEY_FILE_ENV, CHECKPOINTS_ENV
from workers.keys import KEYS_FILE_ENV, create_key_file

#: One payload key file and one audit ledger (with its key and checkpoints) for the test process
#: and every worker or CLI process it starts (they inherit the environment). The payload key file
#: is made here, as `writeback keys init` would: no process generates one on its own.
_STATE = Path(tempfile.mkdtemp(prefix="wb-test-state-"))
os.environ.setdefault(KEYS_FILE_ENV, str(_STATE / "keys.json"))
os.environ.setdefault(AUDIT_DB_ENV, str(_STATE / "audit.db"))
#: every test client signs its commands and decisions with a key the workers know
#: (tests/support/callers.py)
if CALLER_KEYS_ENV not in os.environ:
    _registry, _caller_key = write_test_callers(_STATE)
    os.environ[CALLER_KEYS_ENV] = str(_registry)
    os.environ.setdefault(CALLER_KEY_ENV, str(_caller_key))
os.environ.setdefault(AUDIT_KEY_FILE_ENV, str(_STATE / "audit-key.json"))
os.environ.setdefault(CHECKPOINTS_ENV, str(_STATE / "audit-checkpoints"))
create_key_file(Path(os.environ[KEYS_FILE_ENV]))


@pytest.fixture(scope="session")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox EHR for the session; tests isolate by unique idempotency keys."""
    tmp = tmp_path_factory.mktemp("ehr")
    process = SandboxProcess(tmp / "ehr.db", tmp / "ehr.log", *personality_args())
    yield process
    process.stop()


@pytest.fixture(scope="session")
def smart_jwks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One key pair per SMART test client: (directory of private PEMs, client id -> public JWK)."""
    keys_dir = tmp_path_factory.mktemp("keys")
    jwks = {t.smart[0]: make_key(keys_dir, t.smart[0], t.smart[1]) for t in TEST_TENANTS if t.smart}
    return keys_dir, jwks


@pytest.fixture(scope="session")
def tenants_file(
    ehr: SandboxProcess,
    smart_jwks: tuple[Path, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    path = tmp_path_factory.mktemp("config") / "tenants.toml"
    return write_tenants_file(path, ehr.url, keys_dir=smart_jwks[0])


@pytest.fixture(scope="session")
def tenants(tenants_file: Path) -> TenantRegistry:
    return load_tenants(tenants_file)


@pytest.fixture
async def faults(ehr: SandboxProcess) -> AsyncIterator[httpx.AsyncClient]:
    """Admin client for the sandbox's fault injection; every tenant's faults are cleared after."""
    async with httpx.AsyncClient(base_url=ehr.url, timeout=10) as client:
        yield client
        for tenant in TEST_TENANTS:
            await client.delete(f"/_admin/faults/{tenant.id}")


@pytest.fixture
def key() -> str:
    """A fresh idempotency key."""
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server per test module: its clock is one lock shared by everything on
    it, and a module that leaves it locked (tests/support/temporal.py says how that happened)
    must not make every later module's timers run in real time."""
    env = await time_skipping_environment()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await dev_server_environment()
    yield env
    await env.shutdown()


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process without interpreter finalization, after every report is written:
    the Temporal core bridge has been seen to abort finalization (exit 134) after heavy load
    (docs/toolchain.md), which would turn a green run red."""
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
