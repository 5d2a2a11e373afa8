"""Webhook subscriptions: who is told when a write, a saga or a finding settles, and how.

Loaded from a TOML file (``--webhooks PATH`` or ``$WRITEBACK_WEBHOOKS``; none: no webhooks)::

    [[endpoint]]
    id = "crm"                                 # opaque token; part of delivery ids
    url = "https://hooks.example.org/writeback"
    secret_env = "CRM_WEBHOOK_SECRET"          # or secret = "whsec_..." (Standard Webhooks)
    tenants = ["acme-epic"]                    # "*": every tenant
    events = ["verified", "rejected"]          # default: every event (EVENTS)
    retry = { attempts = 15, first_delay_seconds = 30, max_delay_seconds = 7200 }

A malformed file stops the worker with the file, the endpoint's position and the field at fault;
a secret never appears in an error (it is a ``SecretStr``, and only the variable's name is said).
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from adapters.errors import WritebackError
from adapters.tenants import validation_problems

WEBHOOKS_ENV = "WRITEBACK_WEBHOOKS"
SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a secret of 24 to 64 random bytes.
SECRET_BYTES = (24, 64)

#: What a subscriber can be told. ``waiting``: parked for a person (pending_confirmation,
#: conflict, compensation_failed), with the error class and the reason.
Event = Literal[
    "verified", "rejected", "waiting", "mismatch", "compensated", "abandoned", "reconciled"
]
EVENTS: tuple[Event, ...] = (
    "verified",
    "rejected",
    "waiting",
    "mismatch",
    "compensated",
    "abandoned",
    "reconciled",
)
#: The event a move into each state is (states not named here are not told).
EVENT_OF_STATE: dict[str, Event] = {
    "verified": "verified",
    "rejected": "rejected",
    "pending_confirmation": "waiting",
    "conflict": "waiting",
    "compensation_failed": "waiting",
    "mismatch": "mismatch",
    "compensated": "compensated",
    "abandoned": "abandoned",
    "reconciled": "reconciled",
}


class RetrySettings(BaseModel):
    """Attempts at one event: full jitter between them, each wait drawn from 0 up to
    ``first_delay_seconds`` doubled per attempt, at most ``max_delay_seconds``. The defaults
    spread 15 attempts over about seven hours; then the delivery ends ``failed``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=15, ge=1, le=100)
    first_delay_seconds: float = Field(default=30.0, gt=0, le=86_400)
    max_delay_seconds: float = Field(default=7200.0, gt=0, le=86_400)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="per POST")


def _check_secret(value: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 24-64 bytes. The message never
    quotes it."""
    if not value.startswith(SECRET_PREFIX):
        raise PydanticCustomError("secret_prefix", "the secret does not start with 'whsec_'")
    try:
        raw = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "secret_base64", "the secret is not base64 after 'whsec_'"
        ) from None
    low, high = SECRET_BYTES
    if not low <= len(raw) <= high:
        raise PydanticCustomError(
            "secret_length",
            "the secret must decode to {low}-{high} bytes",
            {"low": low, "high": high},
        )


class Endpoint(BaseModel):
    """One subscriber's endpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="unique in the file")
    url: str = Field(pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$")
    secret: SecretStr | None = None
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    tenants: list[str] = Field(min_length=1, description='tenant ids, or "*" for every tenant')
    events: list[Event] = Field(default_factory=lambda: list(EVENTS), min_length=1)
    retry: RetrySettings = RetrySettings()
    allow_insecure_http: bool = Field(default=False, description="accept http:// (tests)")

    @model_validator(mode="before")
    @classmethod
    def _secret_from_environment(cls, data: object) -> object:
        """``secret_env`` names the variable holding the secret; read here, said by name only."""
        if isinstance(data, dict) and data.get("secret_env") and "secret" not in data:
            name = str(data["secret_env"])
            if name not in os.environ:
                raise PydanticCustomError(
                    "secret_env_unset", "environment variable {name} is not set", {"name": name}
                )
            data = {**data, "secret": os.environ[name]}
        return data

    @model_validator(mode="after")
    def _checked(self) -> Endpoint:
        if self.secret is None:
            raise PydanticCustomError("secret_missing", "give secret_env (or secret)")
        _check_secret(self.secret.get_secret_value())
        if not (self.url.lower().startswith("https://") or self.allow_insecure_http):
            raise PydanticCustomError(
                "insecure_url", "url is not https:// (set allow_insecure_http = true for a test)"
            )
        return self

    @property
    def signing_secret(self) -> str:
        assert self.secret is not None  # _checked
        return self.secret.get_secret_value()

    def wants(self, tenant: str, event: Event) -> bool:
        return event in self.events and ("*" in self.tenants or tenant in self.tenants)


class WebhookConfigError(WritebackError):
    """The webhooks file is missing or malformed; the message says where, never a secret."""


class Subscriptions:
    """The endpoints of one webhooks file (none: nobody is told anything)."""

    def __init__(self, endpoints: list[Endpoint], source: str) -> None:
        self.source = source
        self._by_id = {endpoint.id: endpoint for endpoint in endpoints}
        if len(self._by_id) != len(endpoints):
            raise WebhookConfigError(f"{source}: duplicate endpoint ids")

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._by_id.get(endpoint_id)

    def subscribers(self, tenant: str, event: Event) -> list[Endpoint]:
        return [endpoint for endpoint in self._by_id.values() if endpoint.wants(tenant, event)]

    def __len__(self) -> int:
        return len(self._by_id)


def load_webhooks(path: Path) -> Subscriptions:
    """Read ``[[endpoint]]`` tables from a TOML file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise WebhookConfigError(f"webhooks file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WebhookConfigError(f"{path}: not valid TOML: {exc}") from exc
    entries = raw.get("endpoint", [])
    if not isinstance(entries, list) or set(raw) - {"endpoint"}:
        raise WebhookConfigError(f"{path}: expected only [[endpoint]] tables")
    endpoints = []
    for index, entry in enumerate(entries):
        try:
            endpoints.append(Endpoint.model_validate(entry))
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise WebhookConfigError(f"{path}: endpoint #{index + 1}: {problems}") from None
    return Subscriptions(endpoints, source=str(path))


def configured_webhooks(cli_value: str | None = None) -> Subscriptions:
    """``--webhooks PATH`` beats ``$WRITEBACK_WEBHOOKS``; neither: no endpoints."""
    location = cli_value or os.environ.get(WEBHOOKS_ENV)
    return load_webhooks(Path(location)) if location else Subscriptions([], source="(none)")
