"""Payload encryption keys: the provider interface a KMS can implement, and the local key file.

Every tenant has its own keys; payloads without a tenant (no workflow context) use the ``system``
tenant's. Keys are versioned: new payloads use a tenant's newest version, older versions stay
available so old histories still decode (rotation never re-encrypts history).

The local key file (JSON, mode 0600, never committed) holds *keyrings*: a list of 32-byte keys
per name. A tenant with a keyring of its own uses it (key ids ``{tenant}.k{n}``); every other
tenant uses a key derived from the ``root`` keyring with HKDF-SHA256 and the tenant id as info
(key ids ``{tenant}.r{n}``), so adding a tenant needs no key ceremony in dev while a production
tenant can still get keys nobody else's derive from.
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


def tenant_of_key(key_id: str) -> str:
    """The tenant a key id belongs to (key ids are ``{tenant}.{k|r}{version}``)."""
    match = _KEY_ID.match(key_id)
    if match is None:
        raise UnknownKey(f"malformed key id '{key_id}'")
    return match["tenant"]


def _derive(root: bytes, tenant: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"writeback/{tenant}".encode()
    ).derive(root)


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


def load_key_provider(state_dir: Path, create: bool = True) -> LocalKeyProvider:
    """``$WRITEBACK_KEYS`` (the JSON itself, e.g. from a secret store), else the key file; in dev
    a missing key file is generated on first use."""
    if text := os.environ.get(KEYS_JSON_ENV):
        return LocalKeyProvider.from_json(text, f"${KEYS_JSON_ENV}")
    path = keys_file_path(state_dir)
    if not path.exists() and create:
        _create_once(path)
    return LocalKeyProvider.from_file(path)


def _create_once(path: Path) -> None:
    """Generate a key file unless another process just did (link is atomic, never overwrites)."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    LocalKeyProvider.generate(str(path)).save(draft)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
