"""Every workflow id, schedule id and command identifier the product makes, built and read here.

Workflow ids are plain text on the Temporal server (and in the Web UI, logs and metrics), so they
are made only of the tenant id, the caller's idempotency key and fixed words: opaque tokens
(``TOKEN_PATTERN`` in workflows/contract.py), never patient data. The tenant always comes second,
after a prefix naming the kind of workflow; the payload codec picks the tenant's key by it
(workers/codec.py) and activities refuse to run for any other tenant (workers/tenant_isolation.py).

=====================  ==========================================  ==============================
what                   form                                        made by
=====================  ==========================================  ==============================
command identifier     ``{tenant}:{key}``                          ``command_identifier``
write                  ``wb:{tenant}:{key}``                       ``workflow_id_for``
saga                   ``wb-saga:{tenant}:{key}``                  ``saga_workflow_id``
saga step's write key  ``saga.{saga key}.{step}``                  ``saga_step_key``
batch entry's key      ``batch.{Bundle's key}.e{entry index}``     ``batch_entry_key``
reconciliation sweep   ``wb-sweep:{tenant}:{run}``                 ``sweep_workflow_id``
its Schedule           ``wb-reconcile:{tenant}``                   ``sweep_schedule_id``
a sweep's finding      ``wb-finding:{tenant}:{kind}:{digest}``     ``finding_workflow_id``
capability discovery   ``wb-discovery:{tenant}:{run}``             ``discovery_workflow_id``
its Schedule           ``wb-discovery:{tenant}``                   ``discovery_schedule_id``
=====================  ==========================================  ==============================

The command identifier is the value stamped on every resource a write creates, under the system
``COMMAND_IDENTIFIER_SYSTEM`` (the second idempotency layer, adapters/fhir_r4.py); a write's
workflow id is ``wb:`` and its command identifier (the first layer).

A key the caller does not bring is made from the command's content (``content_key``): an HMAC
under the tenant's id secret (workers/keys.py), never a plain hash. A plain hash of a vital sign
is as good as the value itself: 221 heart rates times the seconds of a few minutes are some 10^5
guesses, checked against a workflow id in well under a second. Keyed, the same content still
makes the same key (deduplication) for every process that holds the key file, and nobody without
it can test a guess. Whatever the key is, it is what the workflow id, the command identifier (the
EHR's identifier value and the ledger's correlation id) and ``X-Request-Id`` carry (issue 17,
finding 2).

A finding's id holds a digest of its command, not the command: the sweep reads commands from
identifiers in the EHR, which anyone who can edit a chart can set (issue 17, finding 6); such
values are also checked against ``is_command_of`` before anything uses them.

Pure functions of strings (standard library only: ``re``, ``hashlib``, ``hmac``, ``json``): usable
in workflow code (the sandbox), activities, adapters and the processes in workers/ alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, Protocol

#: FHIR identifier system of the command identifier stamped on the resources we create.
COMMAND_IDENTIFIER_SYSTEM = "urn:writeback:command"

WRITE_PREFIX = "wb"
SAGA_PREFIX = "wb-saga"
SWEEP_PREFIX = "wb-sweep"
FINDING_PREFIX = "wb-finding"
DISCOVERY_PREFIX = "wb-discovery"
WEBHOOK_PREFIX = "wb-webhook"
#: Prefixes of every workflow id the product starts; the tenant always comes second.
WORKFLOW_ID_PREFIXES = frozenset(
    {WRITE_PREFIX, SAGA_PREFIX, SWEEP_PREFIX, FINDING_PREFIX, DISCOVERY_PREFIX, WEBHOOK_PREFIX}
)
#: Tenant ids and idempotency keys: opaque tokens (``TOKEN_PATTERN`` in workflows/contract.py).
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A saga step's write key: ``saga.{saga key}.{step}``.
SAGA_STEP_PREFIX = "saga."
#: A batch Bundle entry's write key: ``batch.{Bundle's key}.e{index}``.
BATCH_ENTRY_PREFIX = "batch."


#: Starts an idempotency key made by ``content_key`` (keyed: 128 bits of HMAC-SHA256, in hex).
CONTENT_KEY_PREFIX = "hk-"


def content_key(id_secret: bytes, tenant: str, content: Any) -> str:
    """The idempotency key of a command whose caller brought none: HMAC-SHA256, under the
    tenant's id secret, of the tenant and the content's canonical JSON. Same tenant + same
    content (+ same key file) = same key, so resubmitting a file never writes twice."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(id_secret, f"{tenant}\n{canonical}".encode(), hashlib.sha256)
    return CONTENT_KEY_PREFIX + mac.hexdigest()[:32]


def command_identifier(tenant: str, idempotency_key: str) -> str:
    """``{tenant}:{key}``: stamped on the resources a command creates."""
    return f"{tenant}:{idempotency_key}"


def is_command_of(tenant: str, value: object) -> bool:
    """Whether ``value`` (read from an EHR) is a command identifier of ``tenant``: the tenant
    itself, then a token. Anything else is not ours, whatever it looks like."""
    if not isinstance(value, str):
        return False
    owner, _, key = value.partition(":")
    return owner == tenant and TOKEN.fullmatch(key) is not None


def split_command(command: str) -> tuple[str, str]:
    """``(tenant, key)`` of a command identifier."""
    tenant, key = command.split(":", 1)
    return tenant, key


def workflow_id_for(tenant: str, idempotency_key: str) -> str:
    """``wb:{tenant}:{key}``: the first idempotency layer (one workflow per command)."""
    return write_id_of(command_identifier(tenant, idempotency_key))


def write_id_of(command: str) -> str:
    """The workflow id of the write that stamps ``command`` (a command identifier)."""
    return f"{WRITE_PREFIX}:{command}"


def command_of(write_id: str) -> str:
    """The command identifier of a write's workflow id: ``write_id_of`` read backwards."""
    return write_id.removeprefix(f"{WRITE_PREFIX}:")


def saga_workflow_id(tenant: str, key: str) -> str:
    return f"{SAGA_PREFIX}:{tenant}:{key}"


def saga_step_key(saga_key: str, step: str) -> str:
    """Idempotency key of a saga step's own write."""
    return f"{SAGA_STEP_PREFIX}{saga_key}.{step}"


def saga_step_of(idempotency_key: str) -> tuple[str, str] | None:
    """``(saga key, step)`` of a saga step's write key; None for a key no saga made."""
    if not idempotency_key.startswith(SAGA_STEP_PREFIX):
        return None
    saga_key, step = idempotency_key.removeprefix(SAGA_STEP_PREFIX).rsplit(".", 1)
    return saga_key, step


def batch_entry_key(bundle_key: str, index: int) -> str:
    """Idempotency key of the write of a batch Bundle's ``entry[index]`` (workers/api/bundles.py):
    the same Bundle under the same key is the same writes, entry by entry."""
    return f"{BATCH_ENTRY_PREFIX}{bundle_key}.e{index}"


def sweep_workflow_id(tenant: str, run: str) -> str:
    """A reconciliation sweep: ``run`` is ``scheduled`` (its Schedule appends the start time) or
    a random token (``writeback reconcile run``)."""
    return f"{SWEEP_PREFIX}:{tenant}:{run}"


def sweep_schedule_id(tenant: str) -> str:
    return f"wb-reconcile:{tenant}"


class FindingLike(Protocol):
    @property
    def tenant(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def command(self) -> str: ...

    @property
    def evidence(self) -> list[str]: ...


def finding_workflow_id(finding: FindingLike) -> str:
    """``wb-finding:{tenant}:{kind}:{digest}``: one per write, kind of difference and evidence
    (what the sweep saw); the digest (SHA-256, 128 bits) names them without showing them."""
    seen = "".join(f"\n{item}" for item in finding.evidence)
    digest = hashlib.sha256(f"{finding.tenant}\n{finding.command}{seen}".encode()).hexdigest()[:32]
    return f"{FINDING_PREFIX}:{finding.tenant}:{finding.kind}:{digest}"


def discovery_workflow_id(tenant: str, run: str) -> str:
    return f"{DISCOVERY_PREFIX}:{tenant}:{run}"


def webhook_delivery_id(tenant: str, endpoint: str, event_id: str) -> str:
    """``wb-webhook:{tenant}:{endpoint}:{event id}``: one delivery per endpoint and event, so a
    repeated hand-over of the same event never delivers it twice."""
    return f"{WEBHOOK_PREFIX}:{tenant}:{endpoint}:{event_id}"


def discovery_schedule_id(tenant: str) -> str:
    return f"{DISCOVERY_PREFIX}:{tenant}"


def tenant_of_workflow(workflow_id: str | None) -> str | None:
    """The tenant of one of our workflow ids (``wb:{tenant}:{key}`` …); None for others."""
    if workflow_id:
        parts = workflow_id.split(":", 2)
        if len(parts) == 3 and parts[0] in WORKFLOW_ID_PREFIXES and parts[1]:
            return parts[1]
    return None


def key_of_workflow(workflow_id: str) -> str:
    """What follows the tenant in one of our workflow ids (a write's idempotency key)."""
    return workflow_id.split(":", 2)[-1]
