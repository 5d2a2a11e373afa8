"""The payload codec and the local key provider: ciphertext only, per-tenant keys, rotation,
tampering and cross-tenant decoding refused. (The attacks of issue #17 are in tests/security/.)"""

from __future__ import annotations

import json
import os
import stat
import zlib
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from adapters.ids import tenant_of_workflow
from workers.codec import (
    KEY_ID,
    EncryptionCodec,
    PayloadRefused,
    WritebackPayloadConverter,
    is_encrypted,
    writeback_data_converter,
)
from workers.keys import (
    KEYS_FILE_ENV,
    KEYS_JSON_ENV,
    KeyFileError,
    LocalKeyProvider,
    UnknownKey,
    create_key_file,
    load_key_provider,
)
from workflows.write_start import REFUSED_CODE, REFUSED_ENCODING

CANARY = "CANARY-codec-7f3a Zzyzx Quuxley"


def plain(text: str = CANARY) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"name": text}).encode())


def in_workflow(codec: EncryptionCodec, workflow_id: str) -> EncryptionCodec:
    return codec.with_context(
        WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)
    )


@pytest.fixture
def keys() -> LocalKeyProvider:
    return LocalKeyProvider.generate()


async def test_encoded_payload_holds_no_plaintext_and_names_its_key(keys: LocalKeyProvider) -> None:
    codec = in_workflow(EncryptionCodec(keys), "wb:acme:k1")
    [encoded] = await codec.encode([plain()])
    assert is_encrypted(encoded)
    assert encoded.metadata[KEY_ID] == b"acme.r1"
    assert CANARY.encode() not in encoded.SerializeToString()
    assert b"json/plain" not in encoded.SerializeToString()  # inner metadata is sealed too
    [decoded] = await codec.decode([encoded])
    assert decoded == plain()


async def test_large_payloads_are_compressed_before_encryption(keys: LocalKeyProvider) -> None:
    big = plain(CANARY * 100)
    [compressed] = await EncryptionCodec(keys).encode([big])
    [uncompressed] = await EncryptionCodec(keys, compress=False).encode([big])
    assert compressed.metadata["compression"] == b"zlib"
    assert "compression" not in uncompressed.metadata
    assert len(compressed.data) < len(uncompressed.data) / 5
    assert (await EncryptionCodec(keys).decode([compressed])) == [big]


async def test_each_tenant_gets_its_own_key(keys: LocalKeyProvider) -> None:
    codec = EncryptionCodec(keys)
    [acme] = await in_workflow(codec, "wb:acme:k").encode([plain()])
    [beta] = await in_workflow(codec, "wb:beta:k").encode([plain()])
    assert keys.get("acme.r1").material != keys.get("beta.r1").material
    # swapping the key id makes authentication fail instead of decrypting under another key
    forged = Payload(metadata={**beta.metadata, KEY_ID: b"acme.r1"}, data=beta.data)
    with pytest.raises(PayloadRefused, match="fails authentication"):
        await codec.decode([forged])
    assert acme.metadata[KEY_ID] == b"acme.r1"


async def test_a_workflow_never_decodes_another_tenants_payload(keys: LocalKeyProvider) -> None:
    codec = EncryptionCodec(keys)
    [acme] = await in_workflow(codec, "wb:acme:k").encode([plain()])
    activity_of_beta = codec.with_context(
        ActivitySerializationContext(
            namespace="default",
            activity_id="1",
            activity_type="write",
            activity_task_queue="q",
            workflow_id="wb:beta:k",
            workflow_type="ClinicalWrite",
            is_local=False,
        )
    )
    with pytest.raises(PayloadRefused, match="does not belong to tenant 'beta'"):
        activity_of_beta.decrypt(acme)
    # in a workflow, a refused payload becomes a marker with no content (workers/codec.py)
    [marker] = await activity_of_beta.decode([acme])
    assert marker.metadata[REFUSED_CODE] == b"wrong_tenant" and not marker.data
    # payloads sealed without a workflow context use the system key: no tenant's workflow opens them
    [system] = await codec.encode([plain()])
    assert system.metadata[KEY_ID] == b"system.r1"
    with pytest.raises(PayloadRefused, match="does not belong to tenant 'beta'"):
        activity_of_beta.decrypt(system)
    # ...while a context-free reader (the codec server, whose tokens decide) opens both
    assert (await codec.decode([acme, system])) == [plain(), plain()]


async def test_tampered_ciphertext_is_refused(keys: LocalKeyProvider) -> None:
    [encoded] = await EncryptionCodec(keys).encode([plain()])
    data = bytearray(encoded.data)
    data[20] ^= 1
    with pytest.raises(PayloadRefused, match="fails authentication"):
        await EncryptionCodec(keys).decode([Payload(metadata=encoded.metadata, data=bytes(data))])


async def test_rotation_new_writes_use_the_new_key_and_old_payloads_still_decode(
    keys: LocalKeyProvider,
) -> None:
    [old] = await in_workflow(EncryptionCodec(keys), "wb:acme:k").encode([plain()])
    rotated = keys.rotated()
    [new] = await in_workflow(EncryptionCodec(rotated), "wb:acme:k").encode([plain()])
    assert (old.metadata[KEY_ID], new.metadata[KEY_ID]) == (b"acme.r1", b"acme.r2")
    assert (await EncryptionCodec(rotated).decode([old, new])) == [plain(), plain()]
    # a tenant with a keyring of its own: its own keys, versioned separately
    own = rotated.rotated("acme")
    [mine] = await in_workflow(EncryptionCodec(own), "wb:acme:k").encode([plain()])
    assert mine.metadata[KEY_ID] == b"acme.k1"
    assert (await EncryptionCodec(own).decode([old, new, mine])) == [plain()] * 3


async def test_a_payload_under_an_unknown_key_is_refused_by_name(keys: LocalKeyProvider) -> None:
    [encoded] = await EncryptionCodec(keys.rotated()).encode([plain()])
    with pytest.raises(PayloadRefused, match=r"no key 'system.r2'"):
        await EncryptionCodec(keys).decode([encoded])


async def test_unencrypted_payloads_pass_through_only_without_a_workflow(
    keys: LocalKeyProvider,
) -> None:
    assert (await EncryptionCodec(keys).decode([plain()])) == [plain()]
    with pytest.raises(PayloadRefused) as refused:
        in_workflow(EncryptionCodec(keys), "wb:acme:k").decrypt(plain())
    assert refused.value.code == "not_encrypted"


async def test_failure_messages_are_encrypted(keys: LocalKeyProvider) -> None:
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = writeback_data_converter(keys)
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"bad value {CANARY}"), failure)
    assert CANARY.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert CANARY in str(decoded)


def test_workflow_ids_name_their_tenant() -> None:
    assert tenant_of_workflow("wb:acme:key:with:colons") == "acme"
    assert tenant_of_workflow("wb-saga:acme:k1") == "acme"
    assert tenant_of_workflow("wb-sweep:acme:scheduled-2026-11-25T10:00:00Z") == "acme"
    assert tenant_of_workflow("wb-finding:acme:duplicate:k1") == "acme"
    assert tenant_of_workflow("other-workflow") is None
    assert tenant_of_workflow("other:acme:k1") is None
    assert tenant_of_workflow(None) is None


def test_key_file_is_created_once_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYS_FILE_ENV, raising=False)
    monkeypatch.delenv(KEYS_JSON_ENV, raising=False)
    path = tmp_path / "keys.json"
    assert create_key_file(path)
    assert not create_key_file(path)  # never over an existing one
    first = load_key_provider(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = load_key_provider(tmp_path)
    assert first.current("acme").material == second.current("acme").material
    assert repr(first.current("acme")) == "DataKey(acme.r1)"  # no key material in reprs


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = LocalKeyProvider.generate()
    monkeypatch.setenv(KEYS_JSON_ENV, keys.to_json())
    assert load_key_provider(tmp_path).current("x").material == keys.current("x").material
    assert not (tmp_path / "keys.json").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "expected"),
        ('{"keyrings": {}}', "needs a non-empty 'root' keyring"),
        ('{"keyrings": {"root": ["c2hvcnQ="]}}', "not 32 bytes"),
    ],
)
def test_malformed_key_files_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(KeyFileError, match=problem):
        LocalKeyProvider.from_json(text, "keys.json")


def test_unknown_or_malformed_key_ids(keys: LocalKeyProvider) -> None:
    for key_id in ("acme.r9", "acme.k1", "root.k1", "nonsense"):
        with pytest.raises(UnknownKey):
            keys.get(key_id)


async def test_keys_rotate_adds_a_newest_key_and_keeps_the_old(tmp_path: Path) -> None:
    from support.cli import run_cli

    path = tmp_path / "keys.json"
    env = {KEYS_FILE_ENV: str(path), KEYS_JSON_ENV: ""}
    assert run_cli("keys", "rotate", env=env).returncode == 2  # no key file yet: nothing to rotate
    before = LocalKeyProvider.generate()
    before.save(path)
    [old] = await in_workflow(EncryptionCodec(before), "wb:acme:k").encode([plain()])

    rotated = run_cli("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "new key system.r2" in rotated.stdout
    own = run_cli("keys", "rotate", "--tenant", "acme", env=env)
    assert "new key acme.k1 for tenant 'acme'" in own.stdout

    after = LocalKeyProvider.from_file(path)
    [new] = await in_workflow(EncryptionCodec(after), "wb:acme:k").encode([plain()])
    assert new.metadata[KEY_ID] == b"acme.k1"
    assert after.current("beta").key_id == "beta.r2"
    assert (await EncryptionCodec(after).decode([old, new])) == [plain(), plain()]


def sealed_by_scheme_1(keys: LocalKeyProvider, tenant: str, payload: Payload) -> Payload:
    """A payload as the codec wrote it before payloads were bound to their workflow."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from workers.codec import _associated_data

    key = keys.current(tenant)
    nonce = os.urandom(12)
    data = AESGCM(key.material).encrypt(
        nonce, payload.SerializeToString(), _associated_data(key.key_id.encode(), b"", None)
    )
    metadata = {
        "encoding": b"binary/encrypted",
        KEY_ID: key.key_id.encode(),
        "encryption-cipher": b"AES-256-GCM",
    }
    return Payload(metadata=metadata, data=nonce + data)


async def test_payloads_from_before_the_workflow_binding_still_open_for_their_tenant(
    keys: LocalKeyProvider,
) -> None:
    """Recorded histories keep replaying: scheme 1 (no encryption-scheme metadata) opens under
    the tenant rule, anywhere in the tenant's workflows; never for another tenant or as system."""
    old = sealed_by_scheme_1(keys, "acme", plain())
    assert in_workflow(EncryptionCodec(keys), "wb:acme:k1").decrypt(old) == plain()
    assert in_workflow(EncryptionCodec(keys), "wb:acme:k2").decrypt(old) == plain()
    for refused in ("wb:beta:k1", "elsewhere"):
        with pytest.raises(PayloadRefused):
            in_workflow(EncryptionCodec(keys), refused).decrypt(old)
    with pytest.raises(PayloadRefused):  # the system key, scheme 1, in a tenant's workflow
        in_workflow(EncryptionCodec(keys), "wb:acme:k1").decrypt(
            sealed_by_scheme_1(keys, "system", plain())
        )
    strict = EncryptionCodec(keys, accept_unbound=False)
    with pytest.raises(PayloadRefused) as refused_unbound:
        in_workflow(strict, "wb:acme:k1").decrypt(old)
    assert refused_unbound.value.code == "unbound"
    # downgrading a scheme-2 payload to scheme 1 (dropping its metadata) fails authentication
    [bound] = await in_workflow(EncryptionCodec(keys), "wb:acme:k1").encode([plain()])
    stripped = Payload()
    stripped.CopyFrom(bound)
    del stripped.metadata["encryption-scheme"]
    del stripped.metadata["encryption-workflow-id"]
    with pytest.raises(PayloadRefused, match="fails authentication"):
        in_workflow(EncryptionCodec(keys), "wb:acme:k1").decrypt(stripped)


async def test_a_payload_too_large_to_inflate_safely_is_stored_uncompressed(
    keys: LocalKeyProvider,
) -> None:
    """The codec never writes what it would refuse to read: past MAX_INFLATED_BYTES no zlib."""
    from workers.codec import MAX_INFLATED_BYTES

    huge = Payload(metadata={"encoding": b"json/plain"}, data=b"7" * (MAX_INFLATED_BYTES + 1))
    codec = in_workflow(EncryptionCodec(keys), "wb:acme:k1")
    [sealed] = await codec.encode([huge])
    assert "compression" not in sealed.metadata
    assert codec.decrypt(sealed) == huge


async def test_a_refusal_reads_as_the_refusal_through_the_data_converter(
    keys: LocalKeyProvider,
) -> None:
    """A client (or workflow code) converting a refused payload gets PayloadRefused with the
    reason and code, not a converter's 'unknown encoding'."""
    [acme] = await in_workflow(EncryptionCodec(keys), "wb:acme:k1").encode([plain()])
    converter = writeback_data_converter(keys.rotated("beta")).with_context(
        WorkflowSerializationContext(namespace="default", workflow_id="wb:beta:k1")
    )
    with pytest.raises(PayloadRefused, match="does not belong to tenant 'beta'") as refused:
        await converter.decode([acme], [dict])
    assert refused.value.code == "wrong_tenant"


@pytest.mark.parametrize("size", [300, 1_000, 5_000, 40_000, 1_000_000])
async def test_compression_sets_up_no_larger_window_than_the_payload_needs(
    keys: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """zlib.compress sets up a 32 KiB window whatever the size (tens of µs per small payload);
    the codec's window just holds the payload, compresses it as well, and any zlib reader
    takes it (payloads written before, with the full window, read the same way)."""
    from workers import codec as codec_module

    text = json.dumps([{"code": "8867-4", "value": n % 97, "note": "stable"} for n in range(size)])
    payload = plain(text[: size - 20])
    data = payload.SerializeToString()
    codec = in_workflow(EncryptionCodec(keys), "wb:acme:k1")
    [sealed] = await codec.encode([payload])
    streams: list[bytes] = []
    inflate = codec_module._inflate
    monkeypatch.setattr(
        "workers.codec._inflate", lambda packed, key: streams.append(packed) or inflate(packed, key)
    )
    assert codec.decrypt(sealed) == payload
    [packed] = streams  # the zlib stream inside the encryption
    window_bits = (packed[0] >> 4) + 8  # zlib header: CINFO is log2(window) - 8
    assert 2**window_bits >= min(len(data), 2**15)
    assert window_bits <= max(10, len(data).bit_length())
    assert len(packed) <= len(zlib.compress(data, 1)) * 1.02
    assert zlib.decompressobj().decompress(packed) == data
    assert zlib.decompress(zlib.compress(data, 1)) == data  # the old streams: the same reader


async def test_a_payload_compressed_with_the_full_window_still_opens(
    keys: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Histories hold payloads compressed before the window was sized (zlib.compress)."""
    big = plain(CANARY * 100)
    sealer = in_workflow(EncryptionCodec(keys), "wb:acme:k1")
    with monkeypatch.context() as patched:  # how payloads were written then
        patched.setattr("workers.codec.deflate", lambda data: zlib.compress(data, 1))
        [old] = await sealer.encode([big])
    assert old.metadata["compression"] == b"zlib"
    assert sealer.decrypt(old) == big


def test_a_data_converter_cloned_for_a_context_builds_no_new_json_converter() -> None:
    """The SDK clones the data converter for each serialization context (several per activation)
    and each clone constructs a payload converter, to throw it away: they share the first one's
    encoders (pydantic's serializer, the type-adapter cache), the refusal marker's first."""
    first, clone = WritebackPayloadConverter(), WritebackPayloadConverter()
    assert clone.converters[b"json/plain"] is first.converters[b"json/plain"]
    assert next(iter(clone.converters)) == REFUSED_ENCODING
