"""The chaos run's moving parts: the Temporal dev server it restarts, the monkey that SIGKILLs
workers and revokes SMART tokens, and the EHR's configuration (faults, index lag, SMART client)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from chaos_plan import SMART_CLIENT, SMART_TENANT, TOKEN_TTL, fault_mix
from support.ports import free_port
from support.worker_process import WorkerProcess

from workers.devstack import temporal_dev_server_command, wait_for_port

if TYPE_CHECKING:
    from run_chaos import ChaosConfig, ChaosReport


class TemporalServer:
    """The dev server on a file database, so that a restart keeps every workflow."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._command = temporal_dev_server_command(
            self.port, free_port(), workdir / "temporal.db", log_level="error"
        )
        self._log = (workdir / "temporal.log").open("ab")
        self.process = self._start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self._command, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 60, process)
        return process

    def restart(self) -> None:
        self.stop()
        self.process = self._start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def chaos_monkey(
    config: ChaosConfig,
    rng: random.Random,
    workers: list[WorkerProcess],
    start_worker: Callable[[], WorkerProcess],
    admin: httpx.AsyncClient,
    report: ChaosReport,
    stop: asyncio.Event,
) -> None:
    """At random intervals: SIGKILL a random worker and start a replacement (its start-up time is
    recorded), and revoke every SMART token of the auth tenant (the next requests meet a 401)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*config.kill_every))
        if stop.is_set():
            return
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        report.worker_kills += 1
        if any(t.smart for t in config.tenants):
            revoked = await admin.post(f"/_admin/tenants/{SMART_TENANT}/revoke-tokens", json={})
            report.tokens_revoked += int(revoked.json().get("revoked", 0))
        started = time.monotonic()
        workers.append(await asyncio.to_thread(start_worker))
        report.worker_startups.append(round(time.monotonic() - started, 1))


async def configure_ehr(
    admin: httpx.AsyncClient, config: ChaosConfig, jwk: dict[str, object]
) -> None:
    """Faults (seeded per tenant), index lag, and the SMART tenant's client: after seeding."""
    for index, tenant in enumerate(config.tenants):
        faults: dict[str, object] = {
            "random": {
                "seed": config.seed + index,
                "rate": config.fault_rate,
                "kinds": fault_mix(tenant, config.late_commit_seconds, config.index_lag_seconds),
            }
        }
        if tenant.index_lag:
            faults["index_delay_seconds"] = config.index_lag_seconds
        (await admin.post(f"/_admin/faults/{tenant.id}", json=faults)).raise_for_status()
        if tenant.smart:
            client = {
                "client_id": SMART_CLIENT,
                "jwks": {"keys": [jwk]},
                "scopes": ["system/Observation.cruds"],
            }
            body = {"token_ttl_seconds": TOKEN_TTL, "clients": [client]}
            (await admin.post(f"/_admin/tenants/{tenant.id}/auth", json=body)).raise_for_status()
