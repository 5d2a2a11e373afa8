"""Tenant profiles: which EHR a tenant is, where it lives, how to authenticate, what it can do.

Loaded from a TOML file: ``--tenants PATH`` beats ``$WRITEBACK_TENANTS`` beats the demo file
shipped with the package (``adapters/default_tenants.toml``, tenants pointing at the sandbox).
String values may use ``${VAR}`` or ``${VAR:-default}`` (e.g. one base URL per environment).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from adapters.code_maps import CodeMaps, code_maps_setting
from adapters.errors import WritebackError
from adapters.interactions import Interaction as Interaction  # re-exported
from adapters.policy import AccessPolicy
from adapters.reconcile_settings import ReconcileSettings as ReconcileSettings  # re-exported
from adapters.tenant_ids import TenantId
from adapters.vendor import Vendor as Vendor  # re-exported: tenant files name one
from adapters.vendor import VendorAdapter, adapter_for
from adapters.vendor import VendorApiSettings as VendorApiSettings  # re-exported
from adapters.versions import LATEST_ADAPTER_VERSION, AdapterVersion

TENANTS_ENV = "WRITEBACK_TENANTS"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")
DEFAULT_TENANTS_FILE = Path(__file__).with_name("default_tenants.toml")


class Capabilities(BaseModel):
    """What the tenant's FHIR server really supports (docs/vendors.md), not what its vendor says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conditional_create: bool = False
    if_match: bool = False
    vread: bool = True
    patch: bool = Field(default=False, description="JSON PATCH: send narrow deltas on update")
    drops_identifiers: bool = Field(
        default=False, description="the EHR strips our command identifier: dedupe by fingerprint"
    )
    search_lag_seconds: float = Field(
        default=0.0,
        ge=0,
        description="how long a new resource may stay invisible to search (delayed indexing): "
        "part of the quiet period after an unanswered create, and the one-copy check of a "
        "verified write waits this long after the acknowledgement",
    )
    writable: dict[str, list[Interaction]] = Field(
        default_factory=lambda: {"Observation": [Interaction.CREATE]}
    )

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        return interaction in self.writable.get(resource_type, [])


class AmbiguitySettings(BaseModel):
    """What happens after a create went unanswered on a tenant that cannot deduplicate by itself
    (no conditional create: search-before-create or fingerprint). The EHR may still commit that
    request later (a late commit), and its search index may show it later still (index lag), so
    finding nothing right away proves nothing. README: "Write safety", docs/write-safety.md.

    - ``after_quiet``: search again and again; re-send only when a search made after the quiet
      period (measured from the latest moment the unanswered request could have been sent) still
      finds nothing. Until then the write waits (``in_flight``, then ``pending_confirmation``).
    - ``never``: never re-send automatically; the write waits in ``pending_confirmation``,
      searching by itself, until it shows up or a person decides.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    resend: Literal["after_quiet", "never"] = "after_quiet"
    late_commit_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how long after it was sent a request the EHR received may still commit "
        "(the EHR's own request timeout; 60 s covers common gateway and server limits)",
    )
    quiet_period_seconds: float | None = Field(
        default=None,
        gt=0,
        description="default: late_commit_seconds + capabilities.search_lag_seconds + a margin "
        "(10%, at least 5 s); an explicit value below that default is refused",
    )
    never_resend_types: list[str] = Field(
        default_factory=list,
        description="resource types this EHR may keep out of search indefinitely (e.g. Epic's "
        "holding tank for problems and allergies): 'never' applies to them whatever resend says",
    )


class AuthSettings(BaseModel):
    """How writeback authenticates to the tenant's EHR.

    ``none`` is for the sandbox and test servers. ``smart_backend`` is SMART Backend Services:
    a client-credentials grant with a signed JWT assertion (RS384 or ES384); the private key comes
    from a PEM file or an environment variable, never from this file itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["none", "smart_backend"] = "none"
    client_id: str | None = None
    token_url: str | None = Field(
        default=None, description="default: discovered from .well-known/smart-configuration"
    )
    private_key_file: str | None = None
    private_key_env: str | None = None
    algorithm: Literal["RS384", "ES384"] = "RS384"
    key_id: str | None = None
    scope_style: Literal["v1", "v2"] = "v2"

    @model_validator(mode="after")
    def _smart_needs_a_client_and_a_key(self) -> AuthSettings:
        if self.kind == "smart_backend":
            if not self.client_id:
                raise ValueError("smart_backend auth needs client_id")
            if bool(self.private_key_file) == bool(self.private_key_env):
                raise ValueError(
                    "smart_backend auth needs one of private_key_file, private_key_env"
                )
        return self


class BreakerSettings(BaseModel):
    """After ``failures`` transient failures in a row, stop sending for ``cooldown_seconds``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failures: int = Field(default=5, ge=1)
    cooldown_seconds: float = Field(default=10.0, gt=0)


class CrosswalkSettings(BaseModel):
    """How internal ids (``Patient/internal:123``) are found in this tenant's EHR: its records
    carry our internal id as an identifier under ``identifier_system``, searched per type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identifier_system: str = "urn:writeback:internal-id"
    types: list[str] = Field(
        default_factory=lambda: ["Patient", "Encounter", "Practitioner", "Organization"]
    )


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: TenantId  # a token, never a reserved name (system, root)
    vendor: Vendor
    fhir_base_url: str = Field(pattern=r"^https?://")
    auth: AuthSettings = AuthSettings()
    capabilities: Capabilities = Capabilities()
    #: who may write what: ``policy`` (adapters/policy.py), else ``allowed_callers`` ("*": any
    #: proved caller; none: nobody); callers prove who they are (adapters/callers.py) unless
    #: ``caller_auth = "unauthenticated"`` takes their word for it: the demo tenants only
    allowed_callers: list[str] = Field(default_factory=list)
    caller_auth: Literal["credential", "unauthenticated"] = "credential"
    policy: AccessPolicy | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, description="EHR requests/s across all workers (server-enforced)"
    )
    breaker: BreakerSettings = BreakerSettings()
    ambiguity: AmbiguitySettings = AmbiguitySettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    # onboarding: clinical policy and identity crosswalk (see README "Onboarding a tenant")
    require_encounter: bool = Field(
        default=False, description="writes must reference an Encounter (clinical semantics)"
    )
    crosswalk: CrosswalkSettings = CrosswalkSettings()
    adapter_version: AdapterVersion = Field(
        default=LATEST_ADAPTER_VERSION,
        description="pinned adapter behaviour (adapters/versions.py)",
    )
    vendor_api: SerializeAsAny[VendorApiSettings] | None = Field(
        default=None,
        description="the vendor's proprietary write API: the model its vendor adapter names "
        "(adapters/athena.py, veradigm.py); reads and verification still use fhir_base_url",
    )
    max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="EHR requests in flight per worker (athenaPractice answers 429 past ~30)",
    )
    allow_insecure_http: bool = Field(default=False, description="accept http:// URLs (tests)")
    code_maps: CodeMaps = Field(
        default_factory=CodeMaps,
        description="local code systems mapped to standard ones (adapters/code_maps.py): a file "
        "name, relative to the tenants file, or a table",
    )

    @field_validator("code_maps", mode="before")
    @classmethod
    def _code_maps_file(cls, value: Any, info: ValidationInfo) -> Any:
        return code_maps_setting(value, (info.context or {}).get("tenants_dir"))

    @field_validator("vendor_api", mode="before")
    @classmethod
    def _vendor_api_model(cls, value: Any, info: ValidationInfo) -> Any:
        """A ``vendor_api`` table is the model of the vendor its ``kind`` names, else of the
        tenant's own vendor (tenant files predating ``kind`` name none)."""
        if not isinstance(value, dict):
            return value
        kind = value.get("kind", info.data.get("vendor"))
        if kind is None:  # the vendor itself is invalid, and reported
            raise PydanticCustomError("vendor_api_kind", "needs a known vendor, or a kind")
        try:
            model = adapter_for(str(kind)).api_settings
        except ValueError:
            model = None
        if model is None:
            raise PydanticCustomError(
                "vendor_api_kind", "no vendor API settings for vendor '{kind}'", {"kind": kind}
            )
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise PydanticCustomError("vendor_api", "{problems}", {"problems": problems}) from None

    def adapter(self) -> VendorAdapter:
        """What this tenant's vendor does differently (adapters/vendor.py)."""
        return adapter_for(self.vendor)

    @model_validator(mode="after")
    def _quiet_period_covers_late_commits(self) -> Tenant:
        chosen = self.ambiguity.quiet_period_seconds
        if chosen is not None and chosen < self._derived_quiet_period():
            raise ValueError(
                f"ambiguity.quiet_period_seconds ({chosen:g}) must be at least "
                f"late_commit_seconds + capabilities.search_lag_seconds + margin "
                f"({self._derived_quiet_period():g}): a shorter quiet period re-sends while an "
                "earlier request may still land"
            )
        return self

    def _derived_quiet_period(self) -> float:
        window = self.ambiguity.late_commit_seconds + self.capabilities.search_lag_seconds
        return window + max(5.0, 0.1 * window)

    def quiet_period_seconds(self) -> float:
        """How long after an unanswered request could last have been sent searches must keep
        finding nothing before the create may be sent again."""
        return self.ambiguity.quiet_period_seconds or self._derived_quiet_period()

    def searchable(self, resource_type: str) -> bool:
        """Whether this EHR's search shows a new resource of this type within the quiet period
        (not: a holding tank keeps it out until a clinician reviews it)."""
        if resource_type in self.ambiguity.never_resend_types:
            return False
        return resource_type not in self.adapter().holding_tank_types

    def resends_after_quiet(self, resource_type: str) -> bool:
        """Whether an unanswered create of this type may ever be re-sent automatically."""
        return self.searchable(resource_type) and self.ambiguity.resend == "after_quiet"

    @model_validator(mode="after")
    def _urls_are_https(self) -> Tenant:
        """Tokens, Unity passwords and clinical data travel to these URLs: plain http only where
        the tenant says so (issue 17). A discovered token endpoint is checked when it is used."""
        urls = {"fhir_base_url": self.fhir_base_url, "auth.token_url": self.auth.token_url}
        urls["vendor_api.base_url"] = getattr(self.vendor_api, "base_url", None)
        for name, url in urls.items():
            if url and not (url.lower().startswith("https://") or self.allow_insecure_http):
                raise PydanticCustomError(
                    "insecure_url",
                    "{name} is not https:// (set allow_insecure_http = true for a test EHR)",
                    {"name": name},
                )
        return self

    @model_validator(mode="after")
    def _updates_are_guarded(self) -> Tenant:
        """An update, and a saga's withdrawal (an update too), must never overwrite a change made
        between our read and our write: the EHR has to refuse a stale write, through If-Match or
        JSON Patch ``test`` operations. A tenant offering neither cannot be given updates."""
        caps = self.capabilities
        updated = sorted(rtype for rtype in caps.writable if caps.allows(rtype, Interaction.UPDATE))
        if updated and not (caps.if_match or caps.patch):
            raise ValueError(
                f"tenant '{self.id}' allows update of {', '.join(updated)}, but its capabilities "
                "have neither if_match nor patch: an update could overwrite a change made "
                "between our read and our write. Set capabilities.if_match = true if the EHR "
                "refuses a stale If-Match (409/412), or capabilities.patch = true if it takes "
                "JSON Patch with test operations; otherwise make these types create-only"
            )
        return self

    def base_url(self) -> str:
        return self.fhir_base_url.rstrip("/")

    def access_policy(self) -> AccessPolicy:
        return self.policy or AccessPolicy.from_allowed_callers(self.allowed_callers)


def validation_problems(exc: ValidationError) -> str:
    """``field.path: message; ...`` for each error (the file's own words, not pydantic's)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


class TenantConfigError(WritebackError):
    """The tenant file is missing or malformed; the message says where."""


class TenantRegistry:
    def __init__(self, tenants: list[Tenant], source: str) -> None:
        self.source = source
        self._by_id = {tenant.id: tenant for tenant in tenants}
        if len(self._by_id) != len(tenants):
            raise TenantConfigError(f"{source}: duplicate tenant ids")

    def get(self, tenant_id: str) -> Tenant | None:
        return self._by_id.get(tenant_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_id.values())

    @property
    def ids(self) -> list[str]:
        return sorted(self._by_id)


def resolve_tenants_path(cli_value: str | None = None) -> Path:
    if cli_value:
        return Path(cli_value)
    if env_value := os.environ.get(TENANTS_ENV):
        return Path(env_value)
    return DEFAULT_TENANTS_FILE


def _expand(value: object, where: str) -> object:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed TOML value."""
    if isinstance(value, dict):
        return {key: _expand(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, where) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise TenantConfigError(f"{where}: environment variable {name} is not set")
        return default

    return _VARIABLE.sub(replace, value)


def load_tenants(path: Path) -> TenantRegistry:
    """Read ``[[tenant]]`` tables from a TOML file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TenantConfigError(f"tenant file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TenantConfigError(f"{path}: not valid TOML: {exc}") from exc
    entries = raw.get("tenant", [])
    if not isinstance(entries, list) or not entries:
        raise TenantConfigError(f"{path}: expected one or more [[tenant]] tables")
    tenants = []
    for index, entry in enumerate(entries):
        entry = _expand(entry, f"{path}: tenant #{index + 1}")
        try:
            tenants.append(Tenant.model_validate(entry, context={"tenants_dir": path.parent}))
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise TenantConfigError(f"{path}: tenant #{index + 1}: {problems}") from exc
    return TenantRegistry(tenants, source=str(path))
