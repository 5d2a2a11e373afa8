"""Record ClinicalSaga histories from the current release, for tests/replay/test_saga_replay.py.

Run on a release commit (``.venv/bin/python tests/replay/record_saga_histories.py``): it starts
the sandbox EHR and the time-skipping test server, runs sagas down each of their paths (verified,
compensated, a withdrawal refused then retried, confirmed or abandoned by a person, a step the
EHR holds although its write did not verify, a step whose write was abandoned after an unanswered
attempt), and writes each saga's history as JSON under ``tests/replay/saga_histories/``. Payloads
are recorded unencrypted (plain pydantic converter) so that any checkout can replay them.
Synthetic data only. With names (``record_saga_histories.py NAME ...``), only those scenarios are
recorded: the others stay as their release recorded them (``compensated_notify_refused``: the
compensated referral again, on the code of the workflow-kernel refactor's start).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

import httpx  # noqa: E402
from support.sandbox_process import SandboxProcess  # noqa: E402
from support.tenants import personality_args, write_tenants_file  # noqa: E402
from support.workers import running_worker  # noqa: E402
from temporalio.api.enums.v1 import IndexedValueType  # noqa: E402
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from adapters.tenants import load_tenants  # noqa: E402
from workers import samples  # noqa: E402
from workers.client import WritebackClient  # noqa: E402
from workers.settings import venv_binary  # noqa: E402
from workflows import search_attributes as sa  # noqa: E402
from workflows.contract import Resolution, ResolutionAction, Urgency  # noqa: E402
from workflows.saga_contract import SagaCommand, SagaStep  # noqa: E402

HISTORIES = HERE / "saga_histories"
LEGACY_EXTENSION = "http://example.org/fhir/StructureDefinition/legacy-flag"
REFUSE_NOTIFY = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}
REFUSE_REVOKE = {"kind": "status", "status": 403, "method": "PUT", "type": "ServiceRequest"}
UNANSWERED_TASK = {"kind": "connection_reset", "method": "POST", "type": "Task"}
UNAVAILABLE_TASK = {"kind": "status", "status": 503, "method": "POST", "type": "Task"}

Settle = Callable[[WritebackClient, SagaCommand], Awaitable[None]]


def decision(action: ResolutionAction) -> Resolution:
    return Resolution(action=action, by="op-replay", reason=f"recorded {action.value}")


async def settled(client: WritebackClient, workflow_id: str) -> None:
    for _ in range(600):
        try:
            if (await client.status(workflow_id)).state.is_settled:
                return
        except Exception:  # not started yet, or a query that timed out: ask again
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never settled")


def deciding(*actions: ResolutionAction) -> Settle:
    async def settle(client: WritebackClient, command: SagaCommand) -> None:
        for n, action in enumerate(actions):
            await settled(client, command.workflow_id)
            await client.resolve(command.workflow_id, decision(action), f"replay-{n}")

    return settle


async def abandon_task_write(client: WritebackClient, command: SagaCommand) -> None:
    """The Task's own write waits for a person; they abandon it, and the saga goes on."""
    task_write = f"wb:{command.tenant}:{command.step_key('task')}"
    await settled(client, task_write)
    await client.resolve(task_write, decision(ResolutionAction.ABANDON), "replay-task")


@dataclass
class Scenario:
    tenant: str
    steps: list[SagaStep]
    faults: dict[str, Any] = field(default_factory=dict)
    urgency: Urgency = Urgency.ROUTINE
    settle: Settle | None = None


def _scenarios() -> dict[str, Scenario]:
    request, task, notify = samples.referral("replay-saga-pt")
    drifting = SagaStep(
        name="task",
        resource=task.resource | {"extension": [{"url": LEGACY_EXTENSION, "valueBoolean": True}]},
    )
    first, second, third = samples.vitals_panel("replay-saga-pt")
    broken = SagaStep(name=third.name, resource=third.resource | {"status": "not-a-status"})
    return {
        "verified_referral": Scenario("demo-r4", [request, task, notify]),
        "compensated_referral": Scenario(
            "demo-r4", [request, task, notify], {"queue": [REFUSE_NOTIFY]}
        ),
        "compensated_notify_refused": Scenario(
            "demo-r4", [request, task, notify], {"queue": [REFUSE_NOTIFY]}
        ),
        "refused_withdrawal_retried": Scenario(
            "demo-r4",
            [request, task, notify],
            {"queue": [REFUSE_NOTIFY, REFUSE_REVOKE]},
            settle=deciding(ResolutionAction.RETRY),
        ),
        "refused_withdrawal_abandoned": Scenario(
            "demo-r4",
            [request, task, notify],
            {"queue": [REFUSE_NOTIFY, REFUSE_REVOKE]},
            settle=deciding(ResolutionAction.ABANDON),
        ),
        "create_only_tenant_confirmed": Scenario(
            "demo-epic", [first, second, broken], settle=deciding(ResolutionAction.CONFIRM)
        ),
        "drifted_task_not_verified": Scenario(
            "demo-r4",
            [request, drifting, notify],
            {"drift": {"removed_extensions": [LEGACY_EXTENSION]}},
        ),
        "unanswered_task_abandoned": Scenario(
            "fast-r4",  # its breaker stays closed through the 503s
            [request, task, notify],
            {"queue": [UNANSWERED_TASK] + [UNAVAILABLE_TASK] * 4},
            urgency=Urgency.STAT,
            settle=abandon_task_write,
        ),
    }


async def _environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in sa.ALL
            },
        )
    )
    return env


async def record(out: Path, names: list[str] | None = None) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        ehr = SandboxProcess(Path(tmp) / "ehr.db", Path(tmp) / "ehr.log", *personality_args())
        env = await _environment()
        try:
            tenants = load_tenants(write_tenants_file(Path(tmp) / "tenants.toml", ehr.url))
            async with (
                running_worker(env.client, tenants) as client,
                httpx.AsyncClient(base_url=ehr.url) as admin,
            ):
                for name, scenario in _scenarios().items():
                    if names and name not in names:
                        continue
                    await admin.post(f"/_admin/faults/{scenario.tenant}", json=scenario.faults)
                    command = SagaCommand(
                        tenant=scenario.tenant,
                        idempotency_key=f"replay-saga-{name}".replace("_", "-"),
                        kind="replay",
                        steps=scenario.steps,
                        urgency=scenario.urgency,
                        on_behalf_of="Practitioner/dr-synthetic",
                    )
                    await client.submit_saga(command)
                    if scenario.settle:
                        await scenario.settle(client, command)
                    handle = client.temporal.get_workflow_handle(command.workflow_id)
                    final = await handle.result()
                    await admin.delete(f"/_admin/faults/{scenario.tenant}")
                    history = await handle.fetch_history()
                    path = out / f"{name}.json"
                    path.write_text(history.to_json())
                    written.append(path)
                    print(f"{path.name}: {final['state'] if isinstance(final, dict) else final}")
        finally:
            await env.shutdown()
            ehr.stop()
    return written


if __name__ == "__main__":
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(record(HISTORIES, sys.argv[1:])):
        print(path)
