"""Caller keys (README, Security: "Callers"): the registry of caller public keys a worker checks
credentials against, and the key pairs callers sign with (adapters/callers.py).

The registry is ``$WRITEBACK_CALLER_KEYS``: a TOML file, or a directory of ``*.toml`` files (one per
caller, say, each a mounted secret), or several of these joined by ``:``, each holding
``[[caller]]`` tables:

    [[caller]]
    id = "nursing-app"                      # the caller id: requested_by, or an operator's --by
    signs = ["commands"]                    # commands (writes, sagas) and/or decisions
    public_key_file = "nursing-app.pub.pem" # or public_key = (the PEM text itself)

Keys are Ed25519 (EdDSA) or EC P-256 (ES256); a credential names its key by the RFC 7638
thumbprint (``kid``). One key may be registered for several ids; an id may have several keys
(rotation: register the new one, move the caller to it, remove the old one). Workers read the
registry when they start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.errors import WritebackError
from adapters.tenants import validation_problems

#: the registry of caller public keys the worker loads (a TOML file, or a directory of them)
CALLER_KEYS_ENV = "WRITEBACK_CALLER_KEYS"

Capability = Literal["commands", "decisions"]

_ALGORITHM = {ed25519.Ed25519PublicKey: "EdDSA", ec.EllipticCurvePublicKey: "ES256"}


class CallerKeysError(WritebackError):
    """The caller key registry (or a caller's private key) cannot be read; the message says why."""


def thumbprint(public_key: Any) -> str:
    """RFC 7638 JWK thumbprint (base64url SHA-256): the ``kid`` of a caller's key."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        numbers = public_key.public_numbers()
        members = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
    else:
        raise CallerKeysError("caller keys are Ed25519 or EC P-256 (ES256)")
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def algorithm_of(key: Any) -> str:
    for kind, name in _ALGORITHM.items():
        if isinstance(key, kind):
            return name
    raise CallerKeysError("caller keys are Ed25519 or EC P-256 (ES256)")


# --- the registry --------------------------------------------------------------------------------


class CallerKey(BaseModel):
    """One registered caller key: ``[[caller]]`` in a registry file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    public_key: str | None = Field(default=None, description="PEM (SubjectPublicKeyInfo)")
    public_key_file: str | None = Field(default=None, description="relative to the registry file")
    signs: list[Capability] = Field(
        default_factory=lambda: list[Capability](["commands"]),
        min_length=1,
        description="commands (writes and sagas) and/or decisions (operators)",
    )


class RegisteredKey(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    caller: str
    key_id: str
    signs: frozenset[str]
    public_key: Any


class CallerRegistry:
    """Caller public keys by ``(kid, caller id)``; one key may be registered for several ids."""

    def __init__(self, keys: Iterable[RegisteredKey] = (), source: str = "(none)") -> None:
        self.source = source
        self._keys = {(key.key_id, key.caller): key for key in keys}

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def callers(self) -> list[str]:
        return sorted({caller for _kid, caller in self._keys})

    def key(self, key_id: str, caller: str) -> RegisteredKey | None:
        return self._keys.get((key_id, caller))


def load_callers(location: str | Path | None = None) -> CallerRegistry:
    """The registry at ``location``, else ``$WRITEBACK_CALLER_KEYS``; empty when neither is set
    (then only tenants that accept unauthenticated callers can be written to). Several registries
    (files or directories) may be given separated by ``os.pathsep`` (``:``): e.g. your own and
    the one ``writeback api-callers`` prints for the HTTP API's clients."""
    where = location or os.environ.get(CALLER_KEYS_ENV)
    if not where:
        return CallerRegistry()
    files = []
    for part in str(where).split(os.pathsep):
        path = Path(part)
        if path.is_dir():
            files += sorted(path.glob("*.toml"))
        elif path.is_file():
            files.append(path)
        else:
            raise CallerKeysError(f"caller key registry not found: {path}")
    keys = [key for file in files for key in _read_registry(file)]
    return CallerRegistry(keys, source=str(where))


def _read_registry(path: Path) -> list[RegisteredKey]:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CallerKeysError(f"{path}: not valid TOML: {exc}") from None
    keys = []
    for index, entry in enumerate(raw.get("caller", [])):
        where = f"{path}: caller #{index + 1}"
        try:
            spec = CallerKey.model_validate(entry)
        except ValidationError as exc:
            raise CallerKeysError(f"{where}: {validation_problems(exc)}") from None
        if (spec.public_key is None) == (spec.public_key_file is None):
            raise CallerKeysError(f"{where}: give one of public_key, public_key_file")
        pem = spec.public_key.encode() if spec.public_key else _read(path.parent, spec)
        try:
            public_key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise CallerKeysError(f"{where}: public key is not a PEM public key") from None
        keys.append(
            RegisteredKey(
                caller=spec.id,
                key_id=thumbprint(public_key),
                signs=frozenset(spec.signs),
                public_key=public_key,
            )
        )
    return keys


def _read(base: Path, spec: CallerKey) -> bytes:
    assert spec.public_key_file is not None
    try:
        return (base / spec.public_key_file).read_bytes()
    except OSError as exc:
        raise CallerKeysError(f"caller '{spec.id}': cannot read its public key: {exc}") from None


def new_private_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public_pem(key: Any) -> str:
    public = key.public_key() if hasattr(key, "public_key") else key
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()


def registry_entry(caller: str, key: Any, signs: Iterable[Capability] = ("commands",)) -> str:
    """A ``[[caller]]`` table registering ``key``'s public half for ``caller``."""
    listed = ", ".join(f'"{capability}"' for capability in signs)
    return (
        f'[[caller]]\nid = "{caller}"\nsigns = [{listed}]\npublic_key = """\n{public_pem(key)}"""\n'
    )
