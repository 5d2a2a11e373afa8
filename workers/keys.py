"""Payload encryption keys: the provider interface a KMS can implement, and the local key file.

Every tenant has its own keys; payloads without a tenant (no workflow context) use the ``system``
tenant's. Keys are versioned: new payloads use a tenant's newest version, older versions stay
available so old histories still decode (rotation never re-encrypts history).

The local key file (JSON, mode 0600, never committed) holds *keyrings*: a list of 32-byte keys
per name. A tenant with a keyring of its own uses it (key ids ``{tenant}.k{n}``); every other
tenant uses a key derived from the ``root`` keyring with HKDF-SHA256 and the tenant id as info
(key ids ``{tenant}.r{n}``), so adding a tenant needs no key ceremony in dev while a production
tenant can still get keys nobody else's derive from.

The same file holds each tenant's *id secret*: the HMAC key that turns a command's content into its
default idempotency key (adapters/ids.py ``content_key``), so that workflow ids, ledger lines,
``X-Request-Id`` and the EHR identifier carry a value nobody can recompute by guessing the
content. It is derived (HKDF, its own info label) from the *first* root key, which rotation never
removes or replaces: the same content keeps the same key across rotations and across every process
that shares the file.

No process generates keys on its own: without ``$WRITEBACK_KEYS`` or a key file it fails, naming
both (a worker that made up its own keys would write history no other process can read). The key
file is created explicitly, by ``writeback keys init`` or, for the local stack only, by
``writeback dev`` / ``writeback demo`` (workers/devstack.py), which say so.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from adapters.errors import WritebackError
from adapters.tenant_ids import RESERVED_TENANT_IDS as RESERVED_TENANT_IDS  # re-exported

#: Owner of the payloads that belong to no tenant, and the keyring tenants' keys derive from:
#: neither may be a tenant's id (adapters/tenant_ids.py ``RESERVED_TENANT_IDS``).
SYSTEM_TENANT = "system"
ROOT_RING = "root"
KEYS_FILE_ENV = "WRITEBACK_KEYS_FILE"
KEYS_JSON_ENV = "WRITEBACK_KEYS"
_KEY_ID = re.compile(r"^(?P<tenant>[A-Za-z0-9][A-Za-z0-9._-]{0,127})\.(?P<kind>[kr])(?P<n>[0-9]+)$")


class UnknownKey(WritebackError):
    """A payload names a key this process does not have (message names the key id only)."""


class KeyFileError(WritebackError):
    """The key file is missing, unreadable or malformed; the message says which and where."""


@dataclass(frozen=True)
class DataKey:
    key_id: str
    tenant: str
    material: bytes  # 32 bytes, AES-256

    def __repr__(self) -> str:  # never print key material
        return f"DataKey({self.key_id})"


class KeyProvider(Protocol):
    """Where payload keys come from. A KMS-backed provider returns data keys it unwrapped."""

    def current(self, tenant: str) -> DataKey:
        """The key new payloads of ``tenant`` are encrypted with (its newest version)."""
        ...

    def get(self, key_id: str) -> DataKey:
        """The key named in a payload's metadata; ``UnknownKey`` when there is none."""
        ...

    def id_secret(self, tenant: str) -> bytes:
        """The tenant's HMAC key for content-derived idempotency keys: the same for every process
        of a deployment and for ever (changing it makes resubmitted content a new command)."""
        ...


def tenant_of_key(key_id: str) -> str:
    """The tenant a key id belongs to (key ids are ``{tenant}.{k|r}{version}``)."""
    match = _KEY_ID.match(key_id)
    if match is None:
        raise UnknownKey(f"malformed key id '{key_id}'")
    return match["tenant"]


def _derive(root: bytes, tenant: str, purpose: str = "") -> bytes:
    """Payload keys use info ``writeback/{tenant}`` (unchanged since the first release); other
    purposes ``writeback/{purpose}/{tenant}``, so no two uses share key material."""
    info = f"writeback/{purpose}/{tenant}" if purpose else f"writeback/{tenant}"
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(root)


class LocalKeyProvider:
    """Keys from a JSON document ``{"keyrings": {"root": ["<base64>", ...], "<tenant>": [...]}}``
    (oldest first)."""

    def __init__(self, keyrings: dict[str, list[bytes]], source: str) -> None:
        if not keyrings.get(ROOT_RING):
            raise KeyFileError(f"{source}: needs a non-empty '{ROOT_RING}' keyring")
        for name, ring in keyrings.items():
            if any(len(key) != 32 for key in ring):
                raise KeyFileError(f"{source}: keyring '{name}' holds a key that is not 32 bytes")
        self._rings = keyrings
        self.source = source
        self._derived_keys: dict[tuple[str, int], DataKey] = {}
        self._id_secrets: dict[str, bytes] = {}

    # --- KeyProvider ---------------------------------------------------------------------------

    def current(self, tenant: str) -> DataKey:
        if tenant != ROOT_RING and tenant in self._rings:
            return self._own(tenant, len(self._rings[tenant]))
        return self._derived(tenant, len(self._rings[ROOT_RING]))

    def get(self, key_id: str) -> DataKey:
        match = _KEY_ID.match(key_id)
        if match is None:
            raise UnknownKey(f"malformed key id '{key_id}'")
        tenant, version = match["tenant"], int(match["n"])
        ring = self._rings.get(tenant if match["kind"] == "k" else ROOT_RING, [])
        if not 1 <= version <= len(ring) or (match["kind"] == "k" and tenant == ROOT_RING):
            raise UnknownKey(f"no key '{key_id}' in {self.source}")
        if match["kind"] == "k":
            return self._own(tenant, version)
        return self._derived(tenant, version)

    def id_secret(self, tenant: str) -> bytes:
        """From the first root key, which every rotation keeps (``rotated`` only appends)."""
        secret = self._id_secrets.get(tenant)
        if secret is None:
            secret = _derive(self._rings[ROOT_RING][0], tenant, purpose="idempotency")
            self._id_secrets[tenant] = secret
        return secret

    # --- the file -------------------------------------------------------------------------------

    def _own(self, tenant: str, version: int) -> DataKey:
        return DataKey(f"{tenant}.k{version}", tenant, self._rings[tenant][version - 1])

    def _derived(self, tenant: str, version: int) -> DataKey:
        """Derived once per process (HKDF would otherwise cost more than the encryption)."""
        key = self._derived_keys.get((tenant, version))
        if key is None:
            root = self._rings[ROOT_RING][version - 1]
            key = DataKey(f"{tenant}.r{version}", tenant, _derive(root, tenant))
            self._derived_keys[(tenant, version)] = key
        return key

    def rotated(self, ring: str = ROOT_RING) -> LocalKeyProvider:
        """A provider with a new newest key in ``ring`` (a tenant id, or root for all tenants
        without their own keyring); every older key stays."""
        rings = {name: list(keys) for name, keys in self._rings.items()}
        rings.setdefault(ring, []).append(secrets.token_bytes(32))
        return LocalKeyProvider(rings, self.source)

    def to_json(self) -> str:
        encoded = {
            name: [base64.b64encode(key).decode() for key in keys]
            for name, keys in self._rings.items()
        }
        return json.dumps({"keyrings": encoded}, indent=2)

    def save(self, path: Path) -> None:
        """Write the key file readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.to_json())
        temporary.replace(path)

    @classmethod
    def generate(cls, source: str = "generated") -> LocalKeyProvider:
        return cls({ROOT_RING: [secrets.token_bytes(32)]}, source)

    @classmethod
    def from_json(cls, text: str, source: str) -> LocalKeyProvider:
        try:
            raw = json.loads(text)
            rings = {
                str(name): [base64.b64decode(key, validate=True) for key in keys]
                for name, keys in raw["keyrings"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFileError(
                f'{source}: expected {{"keyrings": {{"root": ["<base64 32 bytes>", ...]}}}} '
                f"({type(exc).__name__})"
            ) from None
        return cls(rings, source)

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyProvider:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise KeyFileError(f"key file not found: {path}") from None
        return cls.from_json(text, str(path))


def keys_file_path(state_dir: Path) -> Path:
    """``$WRITEBACK_KEYS_FILE``, else ``<state dir>/keys.json``."""
    return Path(os.environ.get(KEYS_FILE_ENV) or state_dir / "keys.json")


def load_key_provider(state_dir: Path) -> LocalKeyProvider:
    """``$WRITEBACK_KEYS`` (the JSON itself, e.g. from a secret store), else the key file. Never
    generates one: a missing key file is an error that says how to provide it."""
    if text := os.environ.get(KEYS_JSON_ENV):
        return LocalKeyProvider.from_json(text, f"${KEYS_JSON_ENV}")
    path = keys_file_path(state_dir)
    if not path.exists():
        raise KeyFileError(
            f"no payload key file at {path}: set ${KEYS_JSON_ENV} (the key JSON, e.g. from a "
            f"secret store) or ${KEYS_FILE_ENV} (its path), or create one with `writeback keys "
            "init`; every process of a deployment needs the same keys (none are generated)"
        )
    return LocalKeyProvider.from_file(path)


def create_key_file(path: Path) -> bool:
    """Generate a key file at ``path`` unless one exists (also when another process creates it at
    the same moment: link is atomic and never overwrites). True when this call created it."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    LocalKeyProvider.generate(str(path)).save(draft)
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    finally:
        draft.unlink()
    return True
