"""Proof of who is asking: caller credentials (README, Security: "Callers").

Whoever can reach Temporal can start a workflow and fill in its fields, so a command's
``requested_by`` / ``on_behalf_of`` / ``role`` / ``purpose`` and a decision's ``by`` are only
claims. Each command and decision therefore carries a **credential**: a short-lived JWS (compact
JWT, EdDSA/Ed25519 or ES256) signed by the caller's private key, whose claims bind

- ``iss`` = ``sub`` = the caller id (a command's ``requested_by``, a decision's ``by``);
- ``aud`` = the deployment (``$WRITEBACK_CALLER_AUDIENCE``, default ``writeback``);
- ``use`` = ``command`` | ``saga`` | ``decision``; ``tenant``; ``wid`` = the workflow id it is for;
- ``cmd`` = the SHA-256 of the command's (or decision's) canonical content (``digest``), so a
  credential cannot be replayed onto another command;
- ``obo`` / ``role`` / ``pou``: the on-behalf-of user, role and purpose the policy decides on;
- ``iat``, ``exp`` (at most ``MAX_LIFETIME`` later), ``jti``.

The header's ``kid`` is the RFC 7638 thumbprint of the signing public key. The worker keeps a
registry of caller public keys (``CallerRegistry``, ``$WRITEBACK_CALLER_KEYS``: a TOML file, or a
directory of them) and verifies a credential before a write is validated and authorized, and before
a decision is acted on. Refusals name what failed, never a value.

Pure functions and models (no Temporal): used by the worker's activities and by clients alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, Field

from adapters.caller_keys import (
    CallerKeysError,
    CallerRegistry,
    Capability,
    RegisteredKey,
    algorithm_of,
    thumbprint,
)
from adapters.errors import WritebackError
from adapters.ids import SAGA_STEP_PREFIX, saga_workflow_id

#: the private key (PEM) a client signs with (``--caller-key`` overrides it)
CALLER_KEY_ENV = "WRITEBACK_CALLER_KEY"
#: the deployment's audience: a credential made for staging is refused in production
AUDIENCE_ENV = "WRITEBACK_CALLER_AUDIENCE"
DEFAULT_AUDIENCE = "writeback"
#: a credential lives at most this long (``exp - iat``); clients make them for ``LIFETIME``
MAX_LIFETIME = timedelta(minutes=15)
LIFETIME = timedelta(minutes=5)
#: clock skew allowed between the caller and Temporal
LEEWAY = timedelta(seconds=30)
#: the longest credential accepted (an ES256 JWS with these claims is ~600 characters)
MAX_CREDENTIAL_CHARS = 4096

Use = Literal["command", "saga", "decision"]
_CAPABILITY: dict[str, Capability] = {
    "command": "commands",
    "saga": "commands",
    "decision": "decisions",
}

#: What each credential binds, field by field (``digest``). A field added to a command later is
#: added here on purpose: a client built before it must not sign over a default it never saw.
WRITE_FIELDS = (
    "tenant",
    "idempotency_key",
    "interaction",
    "resource",
    "target",
    "base_version",
    "requested_by",
    "on_behalf_of",
    "role",
    "purpose",
    "urgency",
)
SAGA_FIELDS = (
    "tenant",
    "idempotency_key",
    "kind",
    "steps",
    "requested_by",
    "on_behalf_of",
    "urgency",
)
DECISION_FIELDS = ("action", "by", "reason", "reference")


class CredentialRefused(WritebackError):
    """The credential does not prove the caller; the message names what failed (no values)."""


def digest(content: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``content`` as canonical JSON: keys sorted, no whitespace, UTF-8."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def signed_content(model: BaseModel, fields: Iterable[str]) -> dict[str, Any]:
    """The fields of a command or decision a credential binds, as JSON values."""
    return model.model_dump(mode="json", include=set(fields))


def audience() -> str:
    return os.environ.get(AUDIENCE_ENV) or DEFAULT_AUDIENCE


# --- what a credential must prove ------------------------------------------------------------


class Binding(BaseModel):
    """What a credential is bound to: made from the command or decision, by the client that
    signs it and by the workflow that has it verified."""

    use: Use
    caller: str = Field(description="requested_by, or a decision's by")
    tenant: str
    workflow_id: str
    digest: str | None = Field(description="None: a saga's step, bound to its saga (``via``)")
    on_behalf_of: str | None = None
    role: str | None = None
    purpose: str | None = None

    def claims(self) -> dict[str, Any]:
        bound: dict[str, Any] = {"use": self.use, "tenant": self.tenant, "wid": self.workflow_id}
        bound["cmd"] = self.digest
        if self.use != "decision":
            bound.update(obo=self.on_behalf_of, role=self.role, pou=self.purpose)
        return bound


class Expected(Binding):
    """A binding as the worker checks it: when, and for a saga's step, through which saga."""

    at: datetime = Field(description="when the command reached Temporal: validity is judged then")
    via: str | None = Field(
        default=None,
        description="a saga step: the workflow id of the saga that started it (its parent, as "
        "Temporal records it); the saga's own credential proves the step",
    )


def expected(binding: Binding, workflow_id: str, at: datetime, via: str | None = None) -> Expected:
    """``binding`` as the worker checks it, in workflow ``workflow_id`` (the one it runs in,
    whatever the command says) at ``at``; a saga's step (``via``) is bound to its saga instead
    of its own content."""
    fields = binding.model_dump() | {"workflow_id": workflow_id}
    if via is not None:
        fields["digest"] = None
    return Expected(**fields, at=at, via=via)


def write_binding(command: Any) -> Binding:
    """A WriteCommand's binding (workflows/contract.py)."""
    return Binding(
        use="command",
        caller=command.requested_by,
        tenant=command.tenant,
        workflow_id=command.workflow_id,
        digest=digest(signed_content(command, WRITE_FIELDS)),
        on_behalf_of=command.on_behalf_of,
        role=command.role,
        purpose=command.purpose,
    )


def saga_binding(command: Any) -> Binding:
    """A SagaCommand's binding (workflows/saga_contract.py); its steps have no role or purpose."""
    return Binding(
        use="saga",
        caller=command.requested_by,
        tenant=command.tenant,
        workflow_id=command.workflow_id,
        digest=digest(signed_content(command, SAGA_FIELDS)),
        on_behalf_of=command.on_behalf_of,
    )


def saga_of_step(tenant: str, idempotency_key: str, parent: Any) -> str | None:
    """The saga that started this write, when the write is one of its steps and Temporal
    records that saga as the write's parent (``workflow.info().parent``, which no client can
    set); else None."""
    if parent is None or not idempotency_key.startswith(SAGA_STEP_PREFIX):
        return None
    saga_key, _, step = idempotency_key.removeprefix(SAGA_STEP_PREFIX).rpartition(".")
    saga = saga_workflow_id(tenant, saga_key)
    return saga if saga_key and step and parent.workflow_id == saga else None


def decision_binding(workflow_id: str, tenant: str, resolution: Any) -> Binding:
    """A Resolution's binding: the decision and the workflow it is for."""
    return Binding(
        use="decision",
        caller=resolution.by,
        tenant=tenant,
        workflow_id=workflow_id,
        digest=digest(signed_content(resolution, DECISION_FIELDS)),
    )


class Proof(BaseModel):
    """A verified credential: who, by which key, and its ``jti`` (decisions refuse a reuse)."""

    caller: str
    key_id: str
    jti: str

    @property
    def summary(self) -> str:
        return f"caller-credential:{self.caller}@{self.key_id[:12]}"


# --- verifying ---------------------------------------------------------------------------------


def verify(registry: CallerRegistry, credential: str | None, expected: Expected) -> Proof:
    """The proof, or CredentialRefused naming what failed."""
    if not credential:
        raise CredentialRefused("no caller credential")
    if len(credential) > MAX_CREDENTIAL_CHARS:
        raise CredentialRefused("credential too long")
    try:
        header = jwt.get_unverified_header(credential)
        unverified = jwt.decode(credential, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CredentialRefused("credential malformed") from None
    key_id, issuer = header.get("kid"), unverified.get("iss")
    if not isinstance(key_id, str) or not isinstance(issuer, str):
        raise CredentialRefused("credential names no key or no issuer")
    registered = registry.key(key_id, issuer)
    if registered is None:
        raise CredentialRefused("credential key not registered for its issuer")
    algorithm = algorithm_of(registered.public_key)
    try:
        claims = jwt.decode(
            credential,
            registered.public_key,
            algorithms=[algorithm],
            audience=audience(),
            options={
                "require": ["iss", "sub", "aud", "iat", "exp", "jti"],
                "verify_exp": False,  # judged below against when the command reached Temporal
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise CredentialRefused("credential is for another deployment (aud)") from None
    except jwt.InvalidAlgorithmError:
        raise CredentialRefused("credential algorithm does not match its key") from None
    except jwt.InvalidSignatureError:
        raise CredentialRefused("credential signature invalid") from None
    except jwt.PyJWTError:
        raise CredentialRefused("credential malformed or incomplete") from None
    _check_use(claims, expected, registered)
    _check_time(claims, expected)
    _check_binding(claims, expected)
    return Proof(caller=registered.caller, key_id=key_id, jti=str(claims["jti"]))


def _check_use(claims: dict[str, Any], expected: Expected, key: RegisteredKey) -> None:
    use = "saga" if expected.via else expected.use
    if claims.get("use") != use:
        raise CredentialRefused(f"credential is not for a {use}")
    if _CAPABILITY[use] not in key.signs:
        raise CredentialRefused(f"caller key may not sign {_CAPABILITY[use]}")
    if claims.get("sub") != claims.get("iss") or claims.get("iss") != expected.caller:
        who = "decision's by" if use == "decision" else "command's requested_by"
        raise CredentialRefused(f"credential issuer is not the {who}")


def _check_time(claims: dict[str, Any], expected: Expected) -> None:
    try:
        issued = datetime.fromtimestamp(int(claims["iat"]), UTC)
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (TypeError, ValueError, OverflowError):
        raise CredentialRefused("credential times malformed") from None
    if expires - issued > MAX_LIFETIME:
        raise CredentialRefused(f"credential lifetime over {MAX_LIFETIME.seconds // 60} minutes")
    if expected.via:
        return  # a saga's step: its saga judged the credential when the saga was started
    if issued > expected.at + LEEWAY:
        raise CredentialRefused("credential issued after the command reached Temporal")
    if expires < expected.at - LEEWAY:
        raise CredentialRefused("credential expired")


def _check_binding(claims: dict[str, Any], expected: Expected) -> None:
    if claims.get("tenant") != expected.tenant:
        raise CredentialRefused("credential is for another tenant")
    if claims.get("wid") != (expected.via or expected.workflow_id):
        raise CredentialRefused("credential is for another workflow")
    if expected.digest is not None and claims.get("cmd") != expected.digest:
        raise CredentialRefused(f"credential is for another {expected.use}")
    if expected.use != "decision":
        for claim, value, name in (
            ("obo", expected.on_behalf_of, "on_behalf_of"),
            ("role", expected.role, "role"),
            ("pou", expected.purpose, "purpose"),
        ):
            if claims.get(claim) != value:
                raise CredentialRefused(f"credential names another {name}")


# --- signing (clients) -------------------------------------------------------------------------


class CallerSigner:
    """Signs commands and decisions with one caller private key (PEM, Ed25519 or P-256)."""

    def __init__(self, private_key: Any, lifetime: timedelta = LIFETIME) -> None:
        self._key = private_key
        self._algorithm = algorithm_of(private_key.public_key())
        self.key_id = thumbprint(private_key.public_key())
        self._lifetime = min(lifetime, MAX_LIFETIME)

    @classmethod
    def from_pem(cls, pem: bytes) -> CallerSigner:
        try:
            return cls(serialization.load_pem_private_key(pem, password=None))
        except (ValueError, TypeError):
            raise CallerKeysError("caller key is not an unencrypted PEM private key") from None

    @classmethod
    def from_file(cls, path: str | Path) -> CallerSigner:
        try:
            return cls.from_pem(Path(path).read_bytes())
        except OSError as exc:
            raise CallerKeysError(f"cannot read the caller key {path}: {exc}") from None

    @classmethod
    def from_env(cls) -> CallerSigner | None:
        path = os.environ.get(CALLER_KEY_ENV)
        return cls.from_file(path) if path else None

    def sign(self, binding: Binding, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": binding.caller,
            "sub": binding.caller,
            "aud": audience(),
            "iat": int(issued.timestamp()),
            "exp": int((issued + self._lifetime).timestamp()),
            "jti": uuid.uuid4().hex,
            **binding.claims(),
        }
        headers = {"kid": self.key_id, "typ": "wb-caller+jwt"}
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)
