"""How a ClinicalWrite (and a ClinicalSaga) opens its start argument.

Temporal decodes a workflow's arguments before any workflow code runs, and a decoding failure
fails the workflow *task*, which the server retries forever: the write would stay Running, with
no state to report, holding a worker slot on every retry. So ClinicalWrite takes its argument raw
(``RawValue``: decrypted by the codec, not parsed) and opens it here, as its first step: limits
(workflows/input_limits.py) before parsing, then validation into the command. Whatever fails ends
the write ``rejected`` (error class ``validation``) with a reason made of element paths and error
codes, never of the input's values: the reason is kept in the write's status and visible to
anyone who may read the review queue, the worker's log shows none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.converter import PayloadConverter

from adapters.ids import key_of_workflow, tenant_of_workflow
from workflows.contract import WriteCommand
from workflows.input_limits import ROOT, CommandRefused, check_json, problems_of
from workflows.saga_contract import SagaCommand

#: What ClinicalWrite receives when it was started with no argument at all.
NO_ARGUMENT = RawValue(Payload())

JSON_ENCODING = b"json/plain"
#: What the payload codec (workers/codec.py) hands a workflow instead of a payload it refused (not
#: encrypted, another tenant's or workflow's, tampered...): no content, a code under REFUSED_CODE.
REFUSED_ENCODING = b"binary/writeback-refused"
REFUSED_CODE = "writeback-refused"

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class Refused:
    """The start argument is not a command the write can run; ``reason`` says why."""

    reason: str


def open_write(
    raw: RawValue,
    carried: type[C],
    converter: PayloadConverter,
    *,
    limits: bool,
    continued_run: bool,
) -> WriteCommand | C | Refused:
    """The command of a first run (within the limits), the ``carried`` state of a run started by
    continue-as-new (written by the previous run: no limits, and nothing else may start a write
    that way), or why it cannot be opened. Without ``limits`` (histories recorded before they
    existed) either is taken, as Temporal decoded it then."""
    if limits:
        if continued_run:
            return _open(raw, carried, converter, limits=False)
        return _open(raw, WriteCommand, converter, limits=True)
    command = _open(raw, WriteCommand, converter, limits=False)
    if isinstance(command, Refused):
        resumed = _open(raw, carried, converter, limits=False)
        return command if isinstance(resumed, Refused) else resumed
    return command


def _open(raw: RawValue, model: type[M], converter: PayloadConverter, limits: bool) -> M | Refused:
    payload = raw.payload
    if not payload.metadata and not payload.data:
        return Refused(f"{ROOT}: missing")
    if payload.metadata.get("encoding") == REFUSED_ENCODING:  # made by the codec, never the sender
        code = payload.metadata.get(REFUSED_CODE, b"").decode(errors="replace")
        return Refused(f"{ROOT}: {code if code.isidentifier() and len(code) <= 32 else 'refused'}")
    if payload.metadata.get("encoding") != JSON_ENCODING:
        return Refused(f"{ROOT}: not_json")  # the encoding is not named: anyone can set it
    if limits:
        try:
            check_json(payload.data)
        except CommandRefused as exc:
            return Refused(str(exc))
    try:
        opened: M = converter.from_payload(payload, model)
    except ValidationError as exc:
        return Refused(problems_of(exc))
    except Exception as exc:  # the converter's own failures: name the kind, not the text
        return Refused(f"{ROOT}: undecodable ({type(exc).__name__})")
    return opened


def open_saga(raw: RawValue, converter: PayloadConverter, *, limits: bool) -> SagaCommand | Refused:
    """A saga's command, opened as a write's is (``limits``: histories recorded before sagas
    opened their argument replay without them)."""
    return _open(raw, SagaCommand, converter, limits=limits)


def unread_saga(workflow_id: str) -> SagaCommand:
    """Stands in for the command of a saga whose argument was refused, for its status."""
    tenant = tenant_of_workflow(workflow_id) or "unknown"
    return SagaCommand.model_construct(
        tenant=tenant,
        idempotency_key=key_of_workflow(workflow_id),
        kind="unknown",
        steps=[],
        requested_by="unknown",
        credential=None,
    )


def unread_command(workflow_id: str) -> WriteCommand:
    """Stands in for the command of a write whose argument was refused, for its status and its
    audit lines: the tenant and key its workflow id names, an unknown caller, no resource."""
    tenant = tenant_of_workflow(workflow_id) or "unknown"
    key = key_of_workflow(workflow_id)
    return WriteCommand.model_construct(
        tenant=tenant, idempotency_key=key, resource={}, requested_by="unknown"
    )
