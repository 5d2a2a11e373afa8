"""Record ClinicalWrite histories from the current release, for the replay tests.

Run on a release commit (``.venv/bin/python tests/replay/record_histories.py``): it starts the
sandbox EHR and the time-skipping test server, runs a few writes that cover the workflow's main
paths, and writes each history as JSON under ``tests/replay/histories/``. The replay test then
checks that the current workflow code still replays them (i.e. that a changed command sequence is
guarded by ``workflow.patched``). Synthetic data only.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

from support.sandbox_process import SandboxProcess  # noqa: E402
from support.temporal import time_skipping_environment  # noqa: E402
from support.tenants import personality_args, write_tenants_file  # noqa: E402
from support.workers import running_worker  # noqa: E402
from support.workflow_runs import command, run_to_end  # noqa: E402

from adapters.tenants import load_tenants  # noqa: E402
from workers import samples  # noqa: E402

HISTORIES = HERE / "histories"


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


if __name__ == "__main__":
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(record(HISTORIES)):
        print(path)
