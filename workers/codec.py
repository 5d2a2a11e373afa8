"""The payload codec: every payload Temporal stores is AES-256-GCM ciphertext under a tenant key.

Temporal history is a durable copy of every workflow/activity input and result, update and signal
argument and failure detail: without this codec it would be a PHI store readable by anyone with
UI access. The tenant of a payload comes from the serialization context (workflow ids are
``wb:{tenant}:{key}``); payloads without one use the ``system`` tenant's key. The key id travels in
the payload metadata, so old histories decode after a rotation. Search attributes, workflow ids
and type names are not payloads: they are kept PHI-free by construction (adapters/ids.py).

Encoded payload: metadata ``encoding=binary/encrypted``, ``encryption-key-id``,
``encryption-cipher`` and ``compression`` (``zlib`` or absent); data is ``nonce(12)`` followed by
AES-GCM of the serialized inner payload, with key id and compression as associated data, so
neither can be swapped for another's.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from adapters.errors import WritebackError
from adapters.ids import tenant_of_workflow
from workers.keys import SYSTEM_TENANT, KeyProvider, UnknownKey, tenant_of_key

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
#: Below this size compression rarely pays for its header.
COMPRESS_FROM_BYTES = 256


class PayloadRefused(WritebackError):
    """A payload this codec must not or cannot decode (wrong tenant, unknown key, tampered).
    The message names key ids and tenants only, never content."""


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _associated_data(key_id: bytes, compression: bytes) -> bytes:
    return b"writeback-payload\x00" + key_id + b"\x00" + compression


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Encrypts with the context tenant's current key; decodes any key the provider has, but
    only for the context tenant (or ``system``): a workflow never opens another tenant's
    payload."""

    def __init__(self, keys: KeyProvider, tenant: str | None = None, compress: bool = True) -> None:
        self._keys = keys
        self._tenant = tenant
        self._compress = compress

    @property
    def tenant(self) -> str:
        return self._tenant or SYSTEM_TENANT

    def with_context(self, context: SerializationContext) -> Self:
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        return type(self)(self._keys, tenant_of_workflow(workflow_id), self._compress)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key = self._keys.current(self.tenant)
        plain = payload.SerializeToString()
        compression = b""
        if self._compress and len(plain) >= COMPRESS_FROM_BYTES:
            packed = zlib.compress(plain, 1)  # fast: payloads are small JSON
            if len(packed) < len(plain):
                plain, compression = packed, b"zlib"
        key_id = key.key_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.material).encrypt(nonce, plain, _associated_data(key_id, compression))
        metadata = {"encoding": ENCODING, KEY_ID: key_id, "encryption-cipher": CIPHER}
        if compression:
            metadata["compression"] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            return payload  # e.g. written before the codec was introduced
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        owner = self.owner(payload)
        if self._tenant is not None and owner not in (self._tenant, SYSTEM_TENANT):
            raise PayloadRefused(
                f"payload under key '{key_id}' does not belong to tenant '{self._tenant}'"
            )
        try:
            key = self._keys.get(key_id)
        except UnknownKey as exc:
            raise PayloadRefused(str(exc)) from None
        compression = payload.metadata.get("compression", b"")
        try:
            plain = AESGCM(key.material).decrypt(
                payload.data[:NONCE_BYTES],
                payload.data[NONCE_BYTES:],
                _associated_data(key_id.encode(), compression),
            )
        except InvalidTag:
            raise PayloadRefused(f"payload under key '{key_id}' fails authentication") from None
        if compression == b"zlib":
            plain = zlib.decompress(plain)
        inner = Payload()
        inner.ParseFromString(plain)
        return inner

    @staticmethod
    def owner(payload: Payload) -> str:
        """The tenant whose key sealed an encrypted payload."""
        try:
            return tenant_of_key(payload.metadata.get(KEY_ID, b"").decode(errors="replace"))
        except UnknownKey as exc:
            raise PayloadRefused(str(exc)) from None


def writeback_data_converter(keys: KeyProvider, compress: bool = True) -> DataConverter:
    """Pydantic JSON, encrypted per tenant, failure messages and stack traces encrypted too."""
    return DataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=EncryptionCodec(keys, compress=compress),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
