"""The payload codec: every payload Temporal stores is AES-256-GCM ciphertext under a tenant key,
bound to the workflow it belongs to, and nothing else is opened for a workflow.

Temporal history is a durable copy of every workflow/activity input and result, update and signal
argument and failure detail: without this codec it would be a PHI store readable by anyone with
UI access. The tenant of a payload comes from the serialization context (workflow ids are
``wb:{tenant}:{key}``, adapters/ids.py). Search attributes, workflow ids and type names are not
payloads: they are kept PHI-free by construction (adapters/ids.py).

Encoded payload: metadata ``encoding=binary/encrypted``, ``encryption-key-id``,
``encryption-cipher``, ``compression`` (``zlib`` or absent), and since scheme 2
``encryption-scheme=2`` and ``encryption-workflow-id``; data is ``nonce(12)`` followed by AES-GCM
of the serialized inner payload. The associated data authenticates the key id and compression
(scheme 1, payloads written before scheme 2) and, in scheme 2, the workflow id the payload was
sealed for: none of them can be swapped for another's, and a payload cannot be copied into
another workflow, not even one of its own tenant.

What a codec working for a workflow (any serialization context: the worker, a client talking to
that workflow) opens, and refuses:

- a payload that is not ours (plain JSON from a client without the codec, ``temporal workflow
  start --input``): refused (``not_encrypted``): the content never reaches workflow code;
- a payload under another tenant's key, or the ``system`` key (what is sealed without a tenant):
  refused (``wrong_tenant``); a workflow id without our prefixes (or naming a reserved tenant)
  opens ``system`` payloads only, never a tenant's;
- a scheme-2 payload sealed for another workflow, or for none (``wrong_workflow``); the runs our
  Schedules start are ``{action id}-{start time}`` and take what was sealed for the action id;
- scheme-1 payloads open under the tenant rule only, for histories written before scheme 2
  (``accept_unbound=False`` refuses them, ``unbound``, once those are gone);
- tampering (``unauthenticated``), unknown keys (``unknown_key``) and compressed payloads that
  inflate past ``MAX_INFLATED_BYTES`` (``too_large``: a zlib bomb, refused before it fills memory).

A refused payload reaches the workflow as a marker (``workflows.write_start.REFUSED_ENCODING``,
with the code), so ClinicalWrite ends such a start ``rejected`` instead of failing its workflow task
for ever, and converting a marker anywhere else raises ``PayloadRefused`` with the reason
(``WritebackPayloadConverter``). Without any context (the codec server showing payloads to a
person, whose token says which tenants) plain payloads pass through unchanged and any key opens.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    EncodingPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from adapters.errors import WritebackError
from adapters.ids import discovery_workflow_id, sweep_workflow_id, tenant_of_workflow
from adapters.tenant_ids import RESERVED_TENANT_IDS
from workers.keys import SYSTEM_TENANT, KeyProvider, UnknownKey, tenant_of_key
from workflows.write_start import REFUSED_CODE, REFUSED_ENCODING

log = logging.getLogger("writeback.codec")

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
KEY_ID = "encryption-key-id"
SCHEME = "encryption-scheme"
WORKFLOW_ID = "encryption-workflow-id"
#: Scheme 2: the associated data names the workflow the payload was sealed for.
BOUND_SCHEME = b"2"
NONCE_BYTES = 12
#: Below this size compression rarely pays for its header.
COMPRESS_FROM_BYTES = 256
#: The most a compressed payload may inflate to. Temporal refuses payloads over 2 MB, and JSON
#: compresses some 5-20x: a legitimate payload stays far below; a zlib bomb (2 MB of ciphertext
#: inflating to ~2 GB) is refused after allocating at most this much. Payloads larger than this
#: are stored uncompressed, so the codec never writes what it would refuse to read.
MAX_INFLATED_BYTES = 16 * 1024 * 1024
#: zlib's smallest window used: 9 bits (with the smallest memLevel) left a 750-byte payload
#: twice as large as 10 bits did.
_SMALLEST_WINDOW = 10
#: What Temporal appends to a schedule action's workflow id for each run it starts.
_SCHEDULED_RUN = re.compile(r"-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_CODE = re.compile(r"^[a-z_]{1,32}$")
REASON = "writeback-refused-reason"


class PayloadRefused(WritebackError):
    """A payload this codec must not or cannot decode (not ours, another tenant's or workflow's,
    unknown key, tampered, too large). The message names key ids, tenants, workflow ids and the
    refusal's ``code`` only, never content."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _associated_data(key_id: bytes, compression: bytes, workflow_id: bytes | None) -> bytes:
    if workflow_id is None:  # scheme 1
        return b"writeback-payload\x00" + key_id + b"\x00" + compression
    return b"writeback-payload/2\x00" + key_id + b"\x00" + compression + b"\x00" + workflow_id


def owning_tenant(workflow_id: str | None) -> str | None:
    """The tenant whose keys a workflow's payloads use: the one its id names, unless that is not
    one of our ids or names a reserved tenant (then ``system``'s keys, and no tenant's)."""
    tenant = tenant_of_workflow(workflow_id)
    return None if tenant is None or tenant.casefold() in RESERVED_TENANT_IDS else tenant


def _schedule_action(workflow_id: str) -> bool:
    """One of the workflow ids our Schedules start runs of (workers/schedules.py,
    workers/discovery_schedule.py): Temporal appends ``-{start time}`` to it for each run."""
    tenant = tenant_of_workflow(workflow_id)
    return tenant is not None and workflow_id in (
        sweep_workflow_id(tenant, "scheduled"),
        discovery_workflow_id(tenant, "run"),
    )


def sealed_for(bound: str, workflow_id: str) -> bool:
    """Whether a payload sealed for workflow ``bound`` belongs to ``workflow_id``: the same id, or
    a run one of our Schedules started from the action id the payload was sealed for."""
    if bound == workflow_id:
        return True
    suffix = workflow_id.removeprefix(bound)
    return (
        suffix != workflow_id
        and _SCHEDULED_RUN.fullmatch(suffix) is not None
        and _schedule_action(bound)
    )


def refused_marker(refusal: PayloadRefused) -> Payload:
    """What a workflow gets instead of a refused payload: no content, the code and the reason."""
    return Payload(
        metadata={
            "encoding": REFUSED_ENCODING,
            REFUSED_CODE: refusal.code.encode(),
            REASON: str(refusal).encode(),
        }
    )


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Encrypts with the context tenant's current key, sealed for the context's workflow; decodes
    per the rules in this module's docstring. Without a context: the ``system`` key, any key and
    plain payloads on decoding (for the codec server, whose tokens decide)."""

    def __init__(
        self,
        keys: KeyProvider,
        compress: bool = True,
        *,
        accept_unbound: bool = True,
        context: SerializationContext | None = None,
    ) -> None:
        self._keys = keys
        self._compress = compress
        self._accept_unbound = accept_unbound
        self._context = context
        self._workflow_id: str | None = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            self._workflow_id = context.workflow_id
        self._tenant = owning_tenant(self._workflow_id)

    @property
    def for_workflow(self) -> bool:
        """Working for a workflow (a serialization context): the strict rules apply."""
        return self._context is not None

    @property
    def tenant(self) -> str:
        """Whose key new payloads are sealed with."""
        return self._tenant or SYSTEM_TENANT

    def with_context(self, context: SerializationContext) -> Self:
        return type(self)(
            self._keys, self._compress, accept_unbound=self._accept_unbound, context=context
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        try:
            return self.decrypt(payload)
        except PayloadRefused as refusal:
            if not self.for_workflow:
                raise
            log.warning("payload refused for workflow %s: %s", self._workflow_id, refusal)
            return refused_marker(refusal)

    def encrypt(self, payload: Payload) -> Payload:
        key = self._keys.current(self.tenant)
        plain = payload.SerializeToString()
        compression = b""
        if self._compress and COMPRESS_FROM_BYTES <= len(plain) <= MAX_INFLATED_BYTES:
            packed = deflate(plain)
            if len(packed) < len(plain):
                plain, compression = packed, b"zlib"
        key_id = key.key_id.encode()
        bound = (self._workflow_id or "").encode()  # empty: sealed for no workflow
        metadata = {
            "encoding": ENCODING,
            KEY_ID: key_id,
            "encryption-cipher": CIPHER,
            SCHEME: BOUND_SCHEME,
        }
        if bound:
            metadata[WORKFLOW_ID] = bound
        if compression:
            metadata["compression"] = compression
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.material).encrypt(
            nonce, plain, _associated_data(key_id, compression, bound)
        )
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """The inner payload, or ``PayloadRefused`` (with a ``code``) per the module's rules."""
        if not is_encrypted(payload):
            if self.for_workflow:
                raise PayloadRefused(
                    f"a payload that is not encrypted was refused for workflow "
                    f"'{self._workflow_id}'",
                    "not_encrypted",
                )
            return payload  # shown as stored (the codec server: the UI sends plain ones too)
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        owner = self.owner(payload)
        scheme = payload.metadata.get(SCHEME, b"1")
        if scheme not in (b"1", BOUND_SCHEME):
            raise PayloadRefused(f"payload under key '{key_id}': unknown scheme", "unknown_scheme")
        bound = payload.metadata.get(WORKFLOW_ID, b"") if scheme == BOUND_SCHEME else None
        if self.for_workflow:
            self._check_belongs(key_id, owner, bound)
        try:
            key = self._keys.get(key_id)
        except UnknownKey as exc:
            raise PayloadRefused(str(exc), "unknown_key") from None
        compression = payload.metadata.get("compression", b"")
        try:
            plain = AESGCM(key.material).decrypt(
                payload.data[:NONCE_BYTES],
                payload.data[NONCE_BYTES:],
                _associated_data(key_id.encode(), compression, bound),
            )
        except InvalidTag:
            raise PayloadRefused(
                f"payload under key '{key_id}' fails authentication", "unauthenticated"
            ) from None
        if compression == b"zlib":
            plain = _inflate(plain, key_id)
        elif compression:
            raise PayloadRefused(f"payload under key '{key_id}': unknown compression", "malformed")
        inner = Payload()
        try:
            inner.ParseFromString(plain)
        except DecodeError:
            raise PayloadRefused(f"payload under '{key_id}' is malformed", "malformed") from None
        return inner

    def _check_belongs(self, key_id: str, owner: str, bound: bytes | None) -> None:
        """Refuse another tenant's (or the system's, in a tenant's workflow) payload, and a
        payload sealed for another workflow (or for none)."""
        if owner != self.tenant:
            whose = f"tenant '{self._tenant}'" if self._tenant else f"'{self._workflow_id}'"
            raise PayloadRefused(
                f"payload under key '{key_id}' does not belong to {whose}", "wrong_tenant"
            )
        if bound is None:
            if not self._accept_unbound:
                raise PayloadRefused(
                    f"payload under key '{key_id}' is sealed for no workflow (scheme 1)", "unbound"
                )
            return
        sealed = bound.decode(errors="replace")
        if self._workflow_id is None:
            if bound:
                raise PayloadRefused(
                    f"payload under key '{key_id}' was sealed for workflow '{sealed}'",
                    "wrong_workflow",
                )
            return
        if not sealed_for(sealed, self._workflow_id):
            raise PayloadRefused(
                f"payload under key '{key_id}' was sealed for "
                + (f"workflow '{sealed}'" if sealed else "no workflow")
                + f", not '{self._workflow_id}'",
                "wrong_workflow",
            )

    @staticmethod
    def owner(payload: Payload) -> str:
        """The tenant whose key sealed an encrypted payload."""
        try:
            return tenant_of_key(payload.metadata.get(KEY_ID, b"").decode(errors="replace"))
        except UnknownKey as exc:
            raise PayloadRefused(str(exc), "unknown_key") from None


def deflate(plain: bytes) -> bytes:
    """zlib at level 1, with a window and hash table just large enough for ``plain``.

    ``zlib.compress`` sets up its whole 32 KiB window and 128 KiB of hash tables for every call:
    about 30 µs in a fresh process on these machines whatever the size (about 8 µs once the
    allocator keeps those tables warm), against about 5 µs here for the few-hundred-byte payloads
    a write is made of. A window that holds the whole payload finds the same matches, so the
    output is as small; any zlib reader (``_inflate``, an older worker) takes a stream with a
    smaller window."""
    window = max(_SMALLEST_WINDOW, min(zlib.MAX_WBITS, len(plain).bit_length()))
    packer = zlib.compressobj(1, zlib.DEFLATED, window, max(2, min(8, window - 7)))
    return packer.compress(plain) + packer.flush()


def _inflate(packed: bytes, key_id: str) -> bytes:
    """zlib, stopping at ``MAX_INFLATED_BYTES`` instead of inflating whatever it was given."""
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(packed, MAX_INFLATED_BYTES)
    except zlib.error:
        raise PayloadRefused(f"payload under key '{key_id}' is malformed", "malformed") from None
    if inflater.unconsumed_tail:
        raise PayloadRefused(
            f"payload under key '{key_id}' inflates past {MAX_INFLATED_BYTES} bytes", "too_large"
        )
    if not inflater.eof:
        raise PayloadRefused(f"payload under key '{key_id}' is malformed", "malformed")
    return plain


class _RefusedPayloadConverter(EncodingPayloadConverter):
    """Turns the codec's refusal marker into ``PayloadRefused`` wherever a value is expected."""

    @property
    def encoding(self) -> str:
        return REFUSED_ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        code = payload.metadata.get(REFUSED_CODE, b"").decode(errors="replace")
        reason = payload.metadata.get(REASON, b"").decode(errors="replace")
        raise PayloadRefused(reason or "payload refused", code if _CODE.match(code) else "refused")


class WritebackPayloadConverter(PydanticPayloadConverter):
    """Pydantic JSON, and the codec's refusal marker read as the refusal it stands for.

    The SDK clones its data converter for every serialization context it encodes or decodes in
    (several per workflow activation and activity) and each clone constructs one of these, only
    to replace it with the original's at once (``DataConverter.with_context``). Its encoding
    converters hold no state of their own but caches, so every instance shares the first one's:
    a clone costs a dictionary, not a pydantic serializer and a type-adapter cache."""

    _shared: ClassVar[dict[bytes, EncodingPayloadConverter]] = {}

    def __init__(self) -> None:
        if not WritebackPayloadConverter._shared:
            super().__init__()
            refused = _RefusedPayloadConverter()
            WritebackPayloadConverter._shared = {
                refused.encoding.encode(): refused,
                **self.converters,
            }
        self.converters = WritebackPayloadConverter._shared


def writeback_data_converter(
    keys: KeyProvider, compress: bool = True, accept_unbound: bool = True
) -> DataConverter:
    """Pydantic JSON, encrypted per tenant and workflow, failure messages and stack traces
    encrypted too."""
    return DataConverter(
        payload_converter_class=WritebackPayloadConverter,
        payload_codec=EncryptionCodec(keys, compress=compress, accept_unbound=accept_unbound),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
