"""The API's config file (``$WRITEBACK_API_CONFIG``, or ``writeback api --config``): who issues the
tokens it accepts, where their keys are, and the clients it serves.

    issuer = "https://login.example.org/realms/clinical"  # the tokens' iss
    audience = "writeback-api"                            # the tokens' aud
    jwks_url = "https://login.example.org/.../certs"      # or jwks_file = "jwks.json" (dev)
    caller_key_file = "/run/secrets/writeback-api.pem"    # signs each command for the worker
    user_claim = "fhirUser"          # the claim naming the user: the command's on_behalf_of
    max_wait_seconds = 30            # the longest ``Prefer: wait=N`` honoured

    [[client]]
    id = "nursing-app"               # the token's client_id (else azp, else sub)
    tenants = ["demo-r4"]            # "*": every tenant
    scopes = ["system/Observation.cu"]   # the most its tokens may grant (SMART v2 scopes)
    requests_per_second = 10
    burst = 20

A client not listed is refused (403) whatever its token says; a listed one gets what its token
grants *and* its entry allows. Relative paths are relative to the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters.errors import WritebackError
from adapters.ids import TOKEN
from adapters.tenants import validation_problems
from workflows.input_limits import MAX_COMMAND_BYTES

API_CONFIG_ENV = "WRITEBACK_API_CONFIG"
#: algorithms a token may be signed with: asymmetric only (never ``none``, never HMAC)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA"]


class ApiConfigError(WritebackError):
    """The API's config file is missing or malformed; the message says where."""


class ClientConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=TOKEN.pattern, description="the client id: becomes requested_by")
    tenants: list[str] = Field(min_length=1, description='tenant ids, or "*"')
    scopes: list[str] = Field(min_length=1, description="the most its tokens may grant")
    requests_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)


class ApiConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    algorithms: list[str] = Field(default_factory=lambda: list(ALGORITHMS))
    caller_key_file: Path = Field(description="the API's caller key (adapters/callers.py)")
    user_claim: str = "fhirUser"
    tenants_claim: str = Field(default="tenants", description="narrows the client's tenants")
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    max_body_bytes: int = Field(default=MAX_COMMAND_BYTES, ge=1024)
    max_wait_seconds: float = Field(default=30.0, ge=0, le=60)
    clients: list[ClientConfig] = Field(default_factory=list, alias="client")

    @model_validator(mode="after")
    def _one_key_source(self) -> ApiConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give one of jwks_file, jwks_url")
        if set(self.algorithms) - set(ALGORITHMS):
            raise ValueError(f"algorithms: only {', '.join(ALGORITHMS)}")
        ids = [client.id for client in self.clients]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate client ids")
        return self

    def client(self, client_id: str) -> ClientConfig | None:
        return next((c for c in self.clients if c.id == client_id), None)


def load_api_config(path: str | Path | None = None) -> ApiConfig:
    where = Path(path or os.environ.get(API_CONFIG_ENV) or "")
    if not str(path or os.environ.get(API_CONFIG_ENV) or ""):
        raise ApiConfigError(
            f"no API config: give --config or set ${API_CONFIG_ENV} (README: HTTP API)"
        )
    try:
        raw = tomllib.loads(where.read_text())
    except OSError as exc:
        raise ApiConfigError(f"cannot read the API config {where}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ApiConfigError(f"{where}: not valid TOML: {exc}") from None
    for name in ("jwks_file", "caller_key_file"):
        if isinstance(raw.get(name), str):
            raw[name] = str(where.parent / raw[name])
    try:
        return ApiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ApiConfigError(f"{where}: {validation_problems(exc)}") from None
