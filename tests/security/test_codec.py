"""Issue #17, finding 4 (the codec fails open) and the Low "keys rotate" finding, as attacks.

Each test is one way in: a plain payload from a client without the codec, a payload sealed under
the ``system`` key injected into a tenant's workflow, a workflow id without our prefixes opening a
tenant's payload, an ``acme`` payload re-sealed as ``system`` through the codec server, a payload
copied into another workflow of the same tenant, a zlib bomb, a tenant named ``system``, a process
that makes up its own keys, and ``keys rotate`` overwriting the key file from ``$WRITEBACK_KEYS``.
"""

from __future__ import annotations

import json
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from support.audit import resources_for_command
from support.cli import run_cli
from support.raw_history import raw_client
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.workers import running_worker
from support.workflow_runs import command, result_of
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment

from adapters.ids import command_identifier
from adapters.tenants import TenantConfigError, TenantRegistry, load_tenants
from workers import samples
from workers.codec import EncryptionCodec, PayloadRefused, writeback_data_converter
from workers.codec_server import CodecTokens, create_app
from workers.keys import KEYS_FILE_ENV, KEYS_JSON_ENV, KeyFileError, LocalKeyProvider
from workflows.clinical_saga import ClinicalSaga
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteState
from workflows.saga_contract import SagaCommand

CANARY = "CANARY-codec-attack-5e1b Zzyzx Quuxley"


def plain(text: str = CANARY) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"name": text}).encode())


def context(workflow_id: str) -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)


def in_workflow(keys: LocalKeyProvider, workflow_id: str) -> EncryptionCodec:
    return EncryptionCodec(keys).with_context(context(workflow_id))


def opened(codec: EncryptionCodec, payload: Payload) -> Payload | None:
    """What the codec hands over for ``payload``: the inner payload, or None when refused."""
    try:
        return codec.decrypt(payload)
    except PayloadRefused:
        return None


async def converted(keys: LocalKeyProvider, workflow_id: str, payload: Payload) -> Any:
    """What workflow code would get for ``payload`` (the worker's data converter, end to end)."""
    converter = writeback_data_converter(keys).with_context(context(workflow_id))
    [value] = await converter.decode([payload], [dict])
    return value


@pytest.fixture
def keys() -> LocalKeyProvider:
    return LocalKeyProvider.generate()


# --- a plain payload: a client without the codec ----------------------------------------------


async def test_a_plain_payload_is_not_opened_for_a_tenants_workflow(keys: LocalKeyProvider) -> None:
    assert opened(in_workflow(keys, "wb:acme:k1"), plain()) is None
    with pytest.raises(PayloadRefused):
        await converted(keys, "wb:acme:k1", plain())


async def test_a_write_started_without_the_codec_is_refused_and_nothing_is_written(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, ehr: SandboxProcess, key: str
) -> None:
    """What `temporal workflow start --input …` or any client without the codec sends: PHI in
    clear in Temporal, and (on main) a write the worker carried out."""
    cmd = command("demo-r4", key, samples.heart_rate("p-canary", 91))
    async with running_worker(time_skipping.client, tenants) as writeback:
        by_hand = await raw_client(temporal_address(time_skipping))
        await by_hand.start_workflow(
            "ClinicalWrite",
            cmd.model_dump(mode="json"),
            id=cmd.workflow_id,
            task_queue=writeback.task_queue,
        )
        status = await result_of(
            writeback.temporal.get_workflow_handle_for(ClinicalWrite.run, cmd.workflow_id)
        )
    assert status.state is WriteState.REJECTED
    assert status.reason == "command: not_encrypted"
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 0


async def test_a_saga_started_without_the_codec_is_refused_not_stuck(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, ehr: SandboxProcess, key: str
) -> None:
    """The same for a saga: its argument failed to decode before any saga code ran, which
    failed the workflow task, and the server retried that forever (Running, no state)."""
    saga = SagaCommand(
        tenant="demo-r4", idempotency_key=key, kind="referral", steps=samples.referral("p-canary")
    )
    async with running_worker(time_skipping.client, tenants) as writeback:
        by_hand = await raw_client(temporal_address(time_skipping))
        await by_hand.start_workflow(
            "ClinicalSaga",
            saga.model_dump(mode="json"),
            id=saga.workflow_id,
            task_queue=writeback.task_queue,
        )
        status = await result_of(
            writeback.temporal.get_workflow_handle_for(ClinicalSaga.run, saga.workflow_id)
        )
    assert status.state is WriteState.REJECTED
    assert status.reason == "command: not_encrypted"
    for step in saga.steps:
        identifier = command_identifier("demo-r4", saga.step_key(step.name))
        assert resources_for_command(ehr.db, "demo-r4", identifier) == 0


# --- the system key in a tenant's workflow --------------------------------------------------------


async def test_a_payload_sealed_with_the_system_key_is_not_opened_for_a_tenant(
    keys: LocalKeyProvider,
) -> None:
    [system] = await EncryptionCodec(keys).encode([plain()])  # no context: the system key
    assert system.metadata["encryption-key-id"] == b"system.r1"
    for workflow_id in ("wb:acme:k1", "wb-saga:acme:k1", "wb-finding:acme:duplicate:k1"):
        assert opened(in_workflow(keys, workflow_id), system) is None, workflow_id
    with pytest.raises(PayloadRefused):
        await converted(keys, "wb:acme:k1", system)


# --- a workflow id without our prefixes ---------------------------------------------------------


async def test_a_workflow_id_without_our_prefixes_opens_no_tenants_payload(
    keys: LocalKeyProvider,
) -> None:
    [acme] = await in_workflow(keys, "wb:acme:k1").encode([plain()])
    for foreign in ("evil", "other:acme:k1", "wb:system:k1", "wb:root:k1", "wb-acme:k1"):
        assert opened(in_workflow(keys, foreign), acme) is None, foreign
        with pytest.raises(PayloadRefused):
            await converted(keys, foreign, acme)


# --- an acme payload re-sealed as system ---------------------------------------------------------


@pytest.fixture
async def codec_server(keys: LocalKeyProvider, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The codec server, with an all-tenant token as an operator holds one."""
    tokens = tmp_path / "tokens.json"
    CodecTokens.write(tokens, [("ops", "ops-token", ["*"])])
    app = create_app(keys, CodecTokens.from_file(tokens), [])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


async def test_an_acme_payload_re_sealed_as_system_is_not_accepted_by_acme(
    keys: LocalKeyProvider, codec_server: httpx.AsyncClient
) -> None:
    """Decode a payload of acme's history with the codec server, have the server seal it again
    without a tenant (the system key), put it into acme's workflow."""
    [acme] = await in_workflow(keys, "wb:acme:k1").encode([plain()])
    auth = {"Authorization": "Bearer ops-token"}
    decoded = await codec_server.post(
        "/decode", json=json_format.MessageToDict(Payloads(payloads=[acme])), headers=auth
    )
    assert decoded.status_code == 200
    resealed = await codec_server.post("/encode", json=decoded.json(), headers=auth)
    assert resealed.status_code in (400, 403)  # no sealing for no workflow, and not by this token
    # and however it was re-sealed without a tenant, acme's workflows do not take it
    inner = json_format.ParseDict(decoded.json(), Payloads()).payloads[0]
    [system] = await EncryptionCodec(keys).encode([inner])
    assert opened(in_workflow(keys, "wb:acme:k1"), system) is None


# --- a payload copied into another workflow of the same tenant ---------------------------------


async def test_a_payload_copied_into_another_workflow_of_its_tenant_is_refused(
    keys: LocalKeyProvider,
) -> None:
    """E.g. an operator's decision (an update argument) or a command replayed into another write:
    the associated data binds each payload to the workflow it was sealed for."""
    [sealed] = await in_workflow(keys, "wb:acme:k1").encode([plain()])
    assert opened(in_workflow(keys, "wb:acme:k1"), sealed) is not None
    for other in ("wb:acme:k2", "wb-saga:acme:k1", "wb:acme:k1-2026-11-25T10:00:00Z"):
        assert opened(in_workflow(keys, other), sealed) is None, other
    # naming another workflow in the metadata fails authentication
    forged = Payload()
    forged.CopyFrom(sealed)
    forged.metadata["encryption-workflow-id"] = b"wb:acme:k2"
    assert opened(in_workflow(keys, "wb:acme:k2"), forged) is None
    # a schedule's runs take what the schedule sealed for its action's id
    [scheduled] = await in_workflow(keys, "wb-sweep:acme:scheduled").encode([plain()])
    run = "wb-sweep:acme:scheduled-2026-11-25T10:00:00Z"
    assert opened(in_workflow(keys, run), scheduled) == plain()


# --- a zlib bomb ------------------------------------------------------------------------------


def zlib_bomb(inflated: int) -> bytes:
    """A zlib stream of ``inflated`` zero bytes, made without ever holding them."""
    packer, chunk, parts = zlib.compressobj(9), b"\0" * (1 << 20), []
    for _ in range(inflated >> 20):
        parts.append(packer.compress(chunk))
    parts.append(packer.flush())
    return b"".join(parts)


async def test_a_zlib_bomb_is_refused_before_it_fills_memory(
    keys: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload sealed by a writer holding the key (a buggy or compromised encoder) whose
    compressed data inflates to 512 MiB: on every replay the worker would inflate it again."""
    bomb = zlib_bomb(512 << 20)
    big = Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(len(bomb) * 2))
    monkeypatch.setattr("workers.codec.deflate", lambda data: bomb)
    [sealed] = await in_workflow(keys, "wb:acme:k1").encode([big])
    monkeypatch.undo()
    assert sealed.metadata["compression"] == b"zlib"

    tracemalloc.start()
    try:
        with pytest.raises(PayloadRefused) as refused:
            in_workflow(keys, "wb:acme:k1").decrypt(sealed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == "too_large"
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated"


# --- a tenant named system ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["system", "System", "root"])
def test_a_tenant_may_not_be_named_system(tmp_path: Path, name: str) -> None:
    """Its workflows would be sealed with, and open, the system key."""
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[[tenant]]\nid = "{name}"\nvendor = "generic_r4"\nfhir_base_url = "http://ehr.test"\n'
    )
    with pytest.raises(TenantConfigError, match="reserved"):
        load_tenants(path)


# --- a process without the key file ------------------------------------------------------------


def test_a_process_without_a_key_file_fails_instead_of_making_up_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with keys of its own writes history no other worker, client or codec server can
    read (three replicas, three key files)."""
    from workers.temporal_client import default_data_converter

    missing = tmp_path / "keys.json"
    monkeypatch.setenv(KEYS_FILE_ENV, str(missing))
    monkeypatch.delenv(KEYS_JSON_ENV, raising=False)
    with pytest.raises(KeyFileError, match=f"no payload key file at {missing}"):
        default_data_converter()
    assert not missing.exists()


# --- Low: keys rotate over $WRITEBACK_KEYS -----------------------------------------------------


def test_keys_rotate_does_not_overwrite_the_key_file_from_the_environment(tmp_path: Path) -> None:
    """The processes read $WRITEBACK_KEYS; rotating wrote those keys (plus a new one) over the
    key file, silently replacing the file's own keys and whatever history needs them."""
    path = tmp_path / "keys.json"
    LocalKeyProvider.generate().save(path)
    before = path.read_text()
    from_env = LocalKeyProvider.generate()
    env = {KEYS_FILE_ENV: str(path), KEYS_JSON_ENV: from_env.to_json()}
    refused = run_cli("keys", "rotate", env=env)
    assert refused.returncode == 2
    assert "WRITEBACK_KEYS" in refused.stderr
    assert path.read_text() == before
    # the way that works: the rotated environment keys, printed to store back
    printed = run_cli("keys", "rotate", "--print", env=env)
    assert printed.returncode == 0, printed.stderr
    rotated = LocalKeyProvider.from_json(printed.stdout, "printed")
    assert rotated.current("acme").key_id == "acme.r2"
    assert rotated.get("acme.r1").material == from_env.get("acme.r1").material
    assert path.read_text() == before
