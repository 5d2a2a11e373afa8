"""Record ClinicalWrite histories from the current release, for the replay tests.

Run on a release commit (``.venv/bin/python tests/replay/record_histories.py [NAME ...]``): it
starts the sandbox EHR and the time-skipping test server, runs a few writes that cover the
workflow's main paths, and writes each history as JSON under ``tests/replay/histories/``. The
replay test then checks that the current workflow code still replays them (i.e. that a changed
command sequence is guarded by ``workflow.patched``). Synthetic data only.

With names, only those are recorded (the others stay as their release recorded them):
``waited_then_resolved`` (a write that spent its budget, waited for a person and was resolved)
and ``sweep`` (a reconciliation sweep that raised a finding, and the finding a person settled,
under ``tests/replay/sweep_histories/``; a sweep needs visibility: the dev server) and
``shape_2026_11`` (writes of the shape started since 2026-11: one marker, one pure step, the
read-back in the attempt; ``shape_2026_11_*.json``). Payloads are
recorded unencrypted (plain pydantic converter) so that any checkout can replay them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

import httpx  # noqa: E402
from record_saga_histories import decision, settled  # noqa: E402
from support.callers import write_test_callers  # noqa: E402
from support.sandbox_process import SandboxProcess  # noqa: E402
from support.temporal import time_skipping_environment  # noqa: E402
from support.tenants import personality_args, write_tenants_file  # noqa: E402
from support.workers import running_worker  # noqa: E402
from support.workflow_runs import command, run_to_end  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from adapters.caller_keys import CALLER_KEYS_ENV  # noqa: E402
from adapters.callers import CALLER_KEY_ENV  # noqa: E402
from adapters.interactions import Interaction  # noqa: E402
from adapters.tenants import load_tenants  # noqa: E402
from workers import samples  # noqa: E402
from workers.audit_config import AUDIT_DB_ENV, AUDIT_KEY_FILE_ENV, CHECKPOINTS_ENV  # noqa: E402
from workers.client import WritebackClient  # noqa: E402
from workers.keys import KEYS_FILE_ENV, create_key_file  # noqa: E402
from workers.settings import venv_binary  # noqa: E402
from workflows import search_attributes as sa  # noqa: E402
from workflows.contract import ResolutionAction, Urgency  # noqa: E402
from workflows.reconcile_contract import SweepRequest  # noqa: E402
from workflows.reconcile_sweep import ReconcileSweep  # noqa: E402

HISTORIES = HERE / "histories"
SWEEP_HISTORIES = HERE / "sweep_histories"
UNAVAILABLE_OBSERVATION = {"kind": "status", "status": 503, "method": "POST", "type": "Observation"}


def _scenarios() -> dict[str, tuple[str, dict[str, Any]]]:
    invalid = samples.heart_rate("replay-patient", 72)
    invalid["valueQuantity"]["code"] = "kg"
    pressure = samples.blood_pressure("replay-patient", 120, 80)
    return {
        "verified_blood_pressure_r4": ("demo-r4", pressure),
        "verified_heart_rate_epic": ("demo-epic", samples.heart_rate("replay-patient", 64)),
        "rejected_wrong_unit": ("demo-r4", invalid),
    }


async def record(out: Path) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        ehr = SandboxProcess(Path(tmp) / "ehr.db", Path(tmp) / "ehr.log", *personality_args())
        env = await time_skipping_environment()
        try:
            tenants = load_tenants(write_tenants_file(Path(tmp) / "tenants.toml", ehr.url))
            async with running_worker(env.client, tenants) as client:
                for name, (tenant, resource) in _scenarios().items():
                    cmd = command(tenant, f"replay-{name}".replace("_", "-"), resource)
                    await run_to_end(client, cmd)
                    history = await client.temporal.get_workflow_handle(
                        cmd.workflow_id
                    ).fetch_history()
                    path = out / f"{name}.json"
                    path.write_text(history.to_json())
                    written.append(path)
        finally:
            await env.shutdown()
            ehr.stop()
    return written


async def _waited_then_resolved(client: WritebackClient, admin: httpx.AsyncClient) -> Path:
    """A stat write whose budget the EHR's 503s spend: it waits for a person, who retries."""
    cmd = command(
        "fast-r4",
        "replay-waited-then-resolved",
        samples.heart_rate("replay-patient", 66),
        urgency=Urgency.STAT,
        reconcile=False,
    )
    await admin.post("/_admin/faults/fast-r4", json={"queue": [UNAVAILABLE_OBSERVATION] * 5})
    await client.submit(cmd)
    await settled(client, cmd.workflow_id)
    await admin.delete("/_admin/faults/fast-r4")
    await client.resolve(cmd.workflow_id, decision(ResolutionAction.RETRY), "replay-retry")
    handle = client.temporal.get_workflow_handle(cmd.workflow_id)
    print(f"waited_then_resolved: {(await handle.result())['state']}")
    path = HISTORIES / "waited_then_resolved.json"
    path.write_text((await handle.fetch_history()).to_json())
    return path


async def _shape_2026_11(client: WritebackClient, admin: httpx.AsyncClient) -> list[Path]:
    """Writes of the shape started since 2026-11 (workflows/write_kernel.py CURRENT_SHAPE): one
    verified with its read-back and count made in the attempt, one that backed off after a 503
    (its ledger lines handed over before the wait), one refused after validation."""
    refused_once = {"kind": "status", "status": 503, "method": "POST"}
    update = {"interaction": Interaction.UPDATE, "target": "Observation/obs-1", "base_version": "1"}
    scenarios: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = {
        "shape_2026_11_verified_r4": ("demo-r4", samples.heart_rate("replay-patient", 71), [], {}),
        "shape_2026_11_backed_off_r4": (
            "demo-r4",
            samples.heart_rate("replay-patient", 73),
            [refused_once],
            {},
        ),
        "shape_2026_11_refused_after_validation_epic": (
            "demo-epic",
            samples.heart_rate("replay-patient", 75),
            [],
            update,
        ),
    }
    paths = []
    for name, (tenant, resource, faults, extra) in scenarios.items():
        await admin.post(f"/_admin/faults/{tenant}", json={"queue": faults})
        cmd = command(tenant, f"replay-{name}".replace("_", "-"), resource, **extra)
        print(f"{name}: {(await run_to_end(client, cmd)).state}")
        path = HISTORIES / f"{name}.json"
        path.write_text(
            (await client.temporal.get_workflow_handle(cmd.workflow_id).fetch_history()).to_json()
        )
        paths.append(path)
    return paths


async def _sweep(client: WritebackClient, ehr: SandboxProcess) -> list[Path]:
    """A verified write changed in the EHR behind our back: a sweep raises a drift finding, and
    a person acknowledges it."""
    cmd = command(
        "sweep-r4", "replay-sweep-drift", samples.heart_rate("replay-patient", 70), reconcile=False
    )
    written = await run_to_end(client, cmd)
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-r4") as fhir:
        changed = (await fhir.get(str(written.resource))).json()
        changed["valueQuantity"]["value"] = 99
        (await fhir.put(str(written.resource), json=changed)).raise_for_status()
    sweep = await client.temporal.start_workflow(
        ReconcileSweep.run,
        SweepRequest(tenant="sweep-r4"),
        id="wb-sweep:sweep-r4:replay",
        task_queue=client.task_queue,
    )
    report = await sweep.result()
    assert report.raised, f"the sweep raised nothing: {report}"
    finding = report.raised[0]
    await settled(client, finding)
    await client.resolve(finding, decision(ResolutionAction.CONFIRM), "replay-confirm")
    handles = {
        "sweep_found_drift": sweep,
        "finding_acknowledged": client.temporal.get_workflow_handle(finding),
    }
    paths = []
    for name, handle in handles.items():
        print(f"{name}: {await handle.result()}")
        path = SWEEP_HISTORIES / f"{name}.json"
        path.write_text((await handle.fetch_history()).to_json())
        paths.append(path)
    return paths


async def record_more(names: list[str]) -> list[Path]:
    """The named recordings, on the dev server (visibility for the sweep; real timers)."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        ehr = SandboxProcess(Path(tmp) / "ehr.db", Path(tmp) / "ehr.log", *personality_args())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(venv_binary("temporal")),
            data_converter=pydantic_data_converter,
            search_attributes=list(sa.ALL),
            dev_server_log_level="error",
        )
        try:
            tenants = load_tenants(write_tenants_file(Path(tmp) / "tenants.toml", ehr.url))
            async with (
                running_worker(env.client, tenants) as client,
                httpx.AsyncClient(base_url=ehr.url) as admin,
            ):
                if "waited_then_resolved" in names:
                    written.append(await _waited_then_resolved(client, admin))
                if "sweep" in names:
                    written += await _sweep(client, ehr)
                if "shape_2026_11" in names:
                    written += await _shape_2026_11(client, admin)
        finally:
            await env.shutdown()
            ehr.stop()
    return written


def test_process_environment(state: Path) -> None:
    """What the test suite's conftest gives every process: caller keys the workers know (the
    client signs with them), the payload key file, and an audit ledger, all under ``state``."""
    registry, caller_key = write_test_callers(state)
    os.environ[CALLER_KEYS_ENV] = str(registry)
    os.environ[CALLER_KEY_ENV] = str(caller_key)
    os.environ[KEYS_FILE_ENV] = str(state / "keys.json")
    os.environ[AUDIT_DB_ENV] = str(state / "audit.db")
    os.environ[AUDIT_KEY_FILE_ENV] = str(state / "audit-key.json")
    os.environ[CHECKPOINTS_ENV] = str(state / "audit-checkpoints")
    create_key_file(state / "keys.json")


if __name__ == "__main__":
    test_process_environment(Path(tempfile.mkdtemp(prefix="wb-record-")))
    HISTORIES.mkdir(parents=True, exist_ok=True)
    SWEEP_HISTORIES.mkdir(parents=True, exist_ok=True)
    named = sys.argv[1:]
    for path in asyncio.run(record_more(named) if named else record(HISTORIES)):
        print(path)
