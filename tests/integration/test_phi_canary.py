"""PHI canary (issue 8, acceptance 1): writes carrying unique canary strings (patient id, names,
a note, a value) run through success and every failure path; then everything that is stored or
printed outside the encrypted payloads is scanned for them. The same history then decodes
through the codec server.

Scanned: the raw Temporal history (a client without the codec), visibility (search attributes,
memo), the worker's (at INFO, so WARNING too: failed activities) and the sandbox's logs, CLI
output, the audit ledger's files, and the worker's exported spans (their status text included)
and metrics (its OpenTelemetry console exporters write them into its log). Issue 17 adds canaries
the EHR sends back (an OperationOutcome echoing them in diagnostics, details and expression), a
made-up key in a command, and an EHR-planted command identifier whose finding workflow ids are
scanned.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from support.cli import ROOT, WRITEBACK, run_cli
from support.ports import free_port
from support.raw_history import payloads_in, raw_client, raw_history
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.worker_process import WorkerProcess
from temporalio.api.common.v1 import Payloads
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.ids import FINDING_PREFIX
from workers import samples
from workers.audit_cli import ledger_location
from workers.client import WritebackClient
from workers.codec_server import CodecTokens, create_app
from workers.devstack import wait_for_port
from workers.keys import load_key_provider
from workers.settings import Settings, venv_binary
from workflows.contract import Interaction, WriteCommand, WriteState, WriteStatus

pytestmark = pytest.mark.integration

TOKEN = f"CNRY{uuid.uuid4().hex[:10]}"  # every canary carries it; scanning for it finds them all
VALUE = 71.3917  # a canary value too


#: An EHR's answer echoing what it was sent, where EHRs do: diagnostics, details, expression.
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"value {TOKEN} for patient Zyxwo {TOKEN} is not allowed",
            "details": {"text": f"Zyxwo {TOKEN} Quillbert", "coding": [{"code": f"x{TOKEN}"}]},
            "expression": [f"Observation.x{TOKEN}", f"Patient.name.where(given='{TOKEN}')"],
        }
    ],
}


def canary_observation(path: str) -> dict[str, Any]:
    """A vital sign with the canary in the patient id, the names, a note and the unit text."""
    resource = samples.heart_rate(f"{TOKEN}-{path}", 71)
    resource["subject"]["display"] = f"Zyxwo {TOKEN} Quillbert"
    resource["performer"] = [{"display": f"Dr {TOKEN} Vantrell"}]
    resource["note"] = [{"text": f"patient {TOKEN} reports dizziness at home"}]
    resource["valueQuantity"]["value"] = VALUE
    resource["valueQuantity"]["unit"] = f"beats/min {TOKEN}"
    return resource


def scan_for_canaries(sinks: dict[str, bytes]) -> dict[str, list[str]]:
    """Where a canary (or the canary value) shows up: sink name -> excerpts."""
    hits: dict[str, list[str]] = {}
    for name, data in sinks.items():
        for needle in (TOKEN.encode(), str(VALUE).encode()):
            at = data.find(needle)
            if at >= 0:
                hits.setdefault(name, []).append(repr(data[max(0, at - 80) : at + 40]))
    return hits


@pytest.fixture
async def stack(
    dev_server: WorkflowEnvironment,
    tenants_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[WritebackClient, dict[str, str], Path]]:
    """A `writeback worker` process logging at INFO, and the CLI pointed at it."""
    address, queue = temporal_address(dev_server), f"canary-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("WRITEBACK_LOG_LEVEL", "INFO")
    log = tmp_path / "worker.log"
    # spans and metrics exported to the worker's stderr (its log), metrics every half second
    telemetry = {"WRITEBACK_TELEMETRY_CONSOLE": "1", "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    worker = WorkerProcess(address, queue, tenants_file, log, extra_env=telemetry)
    try:
        client = WritebackClient(dev_server.client, task_queue=queue)
        yield client, {"TEMPORAL_ADDRESS": address, "WRITEBACK_TASK_QUEUE": queue}, log
    finally:
        worker.stop()


async def exported_telemetry(worker_log: Path) -> bytes:
    """The worker's log once its console exporters have written EHR spans and the write metrics
    (so the scan covers them: without them this fails rather than passing vacuously)."""
    for _ in range(100):
        data = await asyncio.to_thread(worker_log.read_bytes)
        if b'"name": "EHR POST Observation"' in data and b'"name": "writeback.writes"' in data:
            return data
        await asyncio.sleep(0.3)
    raise AssertionError("the worker exported no EHR spans or write metrics")


async def finding_sinks(
    raw: Any, fhir: httpx.AsyncClient, cli_env: dict[str, str]
) -> dict[str, bytes]:
    """An orphan planted in the EHR with a command identifier carrying the canary (a token, so the
    sweep takes it as one of ours): the finding it raises is listed in visibility by its id.
    The sweep covers only the minute of the orphan: the tenant's lookback would also take in
    every write of the session to this tenant, and in one CI run that sweep outlasted the CLI's
    120 s."""
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    orphan = samples.heart_rate("orphan", 70)
    orphan["identifier"] = [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": f"demo-r4:x{TOKEN}"}]
    assert (await fhir.post("/fhir/demo-r4/Observation", json=orphan)).status_code == 201
    sweep = ("reconcile", "run", "--tenant", "demo-r4", "--since", since)
    swept = await asyncio.to_thread(run_cli, *sweep, env=cli_env)
    assert swept.returncode == 3, swept.stderr  # findings, the orphan among them
    query = f"WorkflowId STARTS_WITH '{FINDING_PREFIX}:demo-r4:'"
    found = [e async for e in raw.list_workflows(query)]
    assert found, "the sweep raised no finding"
    return {
        "finding workflow ids": "\n".join(e.id for e in found).encode(),
        "finding visibility": b"".join(e.raw_info.SerializeToString() for e in found),
    }


async def settle(client: WritebackClient, command: WriteCommand) -> WriteStatus:
    await client.submit(command)
    return await client.wait(command.workflow_id)


async def conflicting_update(
    client: WritebackClient, http: httpx.AsyncClient, key: str
) -> WriteStatus:
    """The chart's value changes after the user saw version 1; our update changes it too."""
    created = await http.post("/fhir/demo-r4/Observation", json=samples.heart_rate("cnf", 70))
    resource_id = created.headers["Location"].split("Observation/")[-1].split("/")[0]
    current = (await http.get(f"/fhir/demo-r4/Observation/{resource_id}")).json()
    theirs = {**current, "valueQuantity": {**current["valueQuantity"], "value": 99}}
    assert (await http.put(f"/fhir/demo-r4/Observation/{resource_id}", json=theirs)).is_success
    ours = {**canary_observation("conflict"), "id": resource_id}
    ours["subject"] = current["subject"]
    return await settle(
        client,
        WriteCommand(
            tenant="demo-r4",
            idempotency_key=key,
            resource=ours,
            interaction=Interaction.UPDATE,
            target=f"Observation/{resource_id}",
            base_version="1",
        ),
    )


async def test_no_canary_outside_encrypted_payloads_on_every_path(
    stack: tuple[WritebackClient, dict[str, str], Path],
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    client, cli_env, worker_log = stack
    run = uuid.uuid4().hex[:8]
    outputs: dict[str, bytes] = {}

    # success, through the CLI (its output is scanned too)
    success_file = tmp_path / "success.json"
    success_file.write_text(json.dumps(canary_observation("success")))
    submitted = run_cli(
        "submit",
        str(success_file),
        "--tenant",
        "demo-r4",
        "--key",
        f"ok-{run}",
        "--wait",
        env=cli_env,
    )
    assert submitted.returncode == 0, submitted.stderr
    outputs["cli submit"] = (submitted.stdout + submitted.stderr).encode()

    invalid = canary_observation("validation")
    invalid["valueQuantity"]["value"] = f"seventy {TOKEN}"
    invalid[f"x{TOKEN}"] = "a made-up key: its name must not be echoed (issue 17)"
    await faults.post(
        "/_admin/faults/demo-cerner",
        json={"queue": [{"kind": "status", "status": 422, "method": "POST", "outcome": OUTCOME}]},
    )
    await faults.post(
        "/_admin/faults/demo-epic",
        json={"queue": [{"kind": "status", "status": 503, "method": "POST"}]},
    )
    await faults.post(
        "/_admin/faults/fast-r4", json={"queue": [{"kind": "commit_then_drop", "method": "POST"}]}
    )
    paths = {
        "validation": ("demo-r4", invalid, WriteState.REJECTED),
        "4xx": ("demo-cerner", canary_observation("4xx"), WriteState.REJECTED),
        "5xx": ("demo-epic", canary_observation("5xx"), WriteState.VERIFIED),
        "ambiguous": ("fast-r4", canary_observation("ambiguous"), WriteState.VERIFIED),
    }
    statuses: dict[str, WriteStatus] = {}
    for path, (tenant, resource, expected) in paths.items():
        command = WriteCommand(tenant=tenant, idempotency_key=f"{path}-{run}", resource=resource)
        statuses[path] = await settle(client, command)
        assert statuses[path].state is expected, (path, statuses[path])
    assert statuses["validation"].error_class == "validation"
    assert statuses["4xx"].error_class in ("validation", "ehr_rejected")
    assert statuses["5xx"].attempts == 2
    assert any("ambiguous" in x.outcome for x in statuses["ambiguous"].ehr_log)
    statuses["conflict"] = await conflicting_update(client, faults, f"conflict-{run}")
    assert statuses["conflict"].state is WriteState.CONFLICT
    workflow_ids = [f"wb:demo-r4:ok-{run}", *(s.workflow_id for s in statuses.values())]

    # what a person with Temporal access sees: raw history and visibility, no codec
    raw = await raw_client(temporal_address(dev_server))
    sinks: dict[str, bytes] = {}
    for workflow_id in workflow_ids:
        history = await raw_history(raw, workflow_id)
        sinks[f"history {workflow_id}"] = b"".join(e.SerializeToString() for e in history.events)
        description = await raw.get_workflow_handle(workflow_id).describe()
        sinks[f"visibility {workflow_id}"] = description.raw_description.SerializeToString()
        status_cli = run_cli("status", workflow_id, env=cli_env)
        outputs[f"cli status {workflow_id}"] = status_cli.stdout.encode()
    listing = [
        e.raw_info.SerializeToString()
        async for e in raw.list_workflows(
            f"WritebackTenant = 'demo-r4' AND TaskQueue = '{cli_env['WRITEBACK_TASK_QUEUE']}'"
        )
    ]
    sinks["visibility list"] = b"".join(listing)
    review = run_cli("review", "list", env=cli_env)
    outputs["cli review list"] = review.stdout.encode() + review.stderr.encode()
    sinks["worker log, spans and metrics"] = await exported_telemetry(worker_log)
    sinks["sandbox log"] = ehr.log_path.read_bytes()
    ledger = Path(ledger_location())
    for part in (ledger, ledger.with_name(ledger.name + "-wal")):
        if part.exists():
            sinks[f"audit ledger {part.name}"] = part.read_bytes()
    sinks.update(outputs)

    sinks.update(await finding_sinks(raw, faults, cli_env))

    assert scan_for_canaries(sinks) == {}
    # control: the EHR itself holds the canaries, so the scan can see them where they are
    ehr_files = {p.name: p.read_bytes() for p in ehr.db.parent.glob(f"{ehr.db.name}*")}
    assert scan_for_canaries(ehr_files)

    # ...while the same history decodes through the codec server, for a token of its tenant
    tokens_file = tmp_path / "tokens.json"
    CodecTokens.write(
        tokens_file, [("r4", "r4-token", ["demo-r4"]), ("epic", "e-token", ["demo-epic"])]
    )
    app = create_app(
        load_key_provider(Settings.from_env().state_dir), CodecTokens.from_file(tokens_file), []
    )
    history = await raw_history(raw, f"wb:demo-r4:ok-{run}")
    body = json_format.MessageToDict(
        Payloads(
            payloads=[
                p
                for e in history.events
                for p in payloads_in(e)
                if "encryption-key-id" in p.metadata
            ]
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as codec:
        decoded = await codec.post(
            "/decode", json=body, headers={"Authorization": "Bearer r4-token"}
        )
        refused = await codec.post(
            "/decode", json=body, headers={"Authorization": "Bearer e-token"}
        )
    assert decoded.status_code == 200
    plain = b"".join(p.data for p in json_format.ParseDict(decoded.json(), Payloads()).payloads)
    assert TOKEN.encode() in plain and str(VALUE).encode() in plain
    assert refused.status_code == 403


async def test_the_temporal_cli_shows_decoded_payloads_only_through_the_codec_server(
    stack: tuple[WritebackClient, dict[str, str], Path],
    dev_server: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    """The real `temporal` CLI against a real `writeback codec-server` process (Temporal's remote
    codec protocol end to end): ciphertext without it, the canary with a token of the tenant."""
    command = WriteCommand(
        tenant="demo-r4",
        idempotency_key=f"cli-{uuid.uuid4().hex[:8]}",
        resource=canary_observation("cli"),
    )
    assert (await settle(stack[0], command)).state is WriteState.VERIFIED
    plain, decoded, foreign = await asyncio.to_thread(
        temporal_cli_views, command.workflow_id, temporal_address(dev_server), tmp_path
    )
    assert plain.returncode == 0, plain.stderr
    assert TOKEN.encode() not in payload_data(plain.stdout)
    assert base64.b64encode(b"binary/encrypted").decode() in plain.stdout  # metadata, as stored
    assert decoded.returncode == 0, decoded.stderr
    assert TOKEN.encode() in payload_data(decoded.stdout)  # the CLI prints data as base64
    assert TOKEN.encode() not in payload_data(foreign.stdout) + foreign.stderr.encode()


def temporal_cli_views(
    workflow_id: str, address: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], ...]:
    """`temporal workflow show` without a codec, through a `writeback codec-server` process with
    the tenant's token, and with another tenant's token."""
    tokens = tmp_path / "tokens.json"
    CodecTokens.write(tokens, [("r4", "r4-token", ["demo-r4"]), ("epic", "e-token", ["demo-epic"])])
    port = free_port()
    log = (tmp_path / "codec.log").open("wb")
    server = subprocess.Popen(
        [*WRITEBACK, "codec-server", "--port", str(port), "--tokens", str(tokens)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 30, server)

        def show(*codec: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    str(venv_binary("temporal")),
                    "workflow",
                    "show",
                    "-w",
                    workflow_id,
                    "--address",
                    address,
                    "-o",
                    "json",
                    *codec,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )

        endpoint = ("--codec-endpoint", f"http://127.0.0.1:{port}")
        plain = show()
        decoded = show(*endpoint, "--codec-auth", "Bearer r4-token")
        foreign = show(*endpoint, "--codec-auth", "Bearer e-token")
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    return plain, decoded, foreign


def payload_data(cli_json: str) -> bytes:
    """Every payload's data in `temporal … -o json` output, base64-decoded."""

    def walk(node: Any) -> list[bytes]:
        if isinstance(node, dict):
            found = [base64.b64decode(node["data"])] if isinstance(node.get("data"), str) else []
            return found + [b for value in node.values() for b in walk(value)]
        if isinstance(node, list):
            return [b for value in node for b in walk(value)]
        return []

    try:
        return b"".join(walk(json.loads(cli_json)))
    except ValueError:
        return b""
