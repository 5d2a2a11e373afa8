"""Per-tenant write authorization: which calling services may write which resource types and
interactions, for which user roles and purposes of use.

A tenant's ``[tenant.policy]`` holds a version and an ordered list of rules; the first rule that
matches a request decides (``allow`` or ``deny``); no matching rule denies (rule
``default-deny``). A tenant without a policy gets one rule built from its ``allowed_callers``
(version ``allowed-callers``). A caller list that is empty, or missing, lets nobody in: a tenant
says whom it allows (``"*"``: every caller that proves who it is, adapters/callers.py).

The decision, the rule, the policy version and the scopes are recorded
(``AuthorizationRecord``, in the write's status) so a Provenance can name under whose authority
the write ran.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.interactions import Interaction

ANY = "*"
DEFAULT_DENY = "default-deny"


class PolicyRule(BaseModel):
    """Matches when every listed dimension matches (``*`` or an empty list matches anything;
    ``roles``/``purposes`` listed means the command must name one of them) — except ``callers``,
    which every rule names and which matches nobody when empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    effect: Literal["allow", "deny"] = "allow"
    callers: list[str] = Field(description="calling services; '*' = any; [] = none")
    resource_types: list[str] = Field(default_factory=lambda: [ANY])
    interactions: list[Interaction] = Field(
        default_factory=lambda: [Interaction.CREATE, Interaction.UPDATE]
    )
    roles: list[str] = Field(default_factory=list)
    purposes: list[str] = Field(default_factory=list)
    require_on_behalf_of: bool = Field(
        default=False, description="the command must name the user it acts for"
    )

    def matches(self, request: AccessRequest) -> bool:
        def listed(values: list[str], value: str | None) -> bool:
            return not values or ANY in values or (value is not None and value in values)

        return (
            bool(self.callers)
            and listed(self.callers, request.caller)
            and listed(self.resource_types, request.resource_type)
            and request.interaction in self.interactions
            and listed(self.roles, request.role)
            and listed(self.purposes, request.purpose)
            and (not self.require_on_behalf_of or bool(request.on_behalf_of))
        )


class AccessPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    rules: list[PolicyRule] = Field(default_factory=list, alias="rule")

    def decide(self, request: AccessRequest) -> tuple[Literal["allow", "deny"], str]:
        """(effect, rule name) of the first matching rule; ``deny`` by ``default-deny`` else."""
        for rule in self.rules:
            if rule.matches(request):
                return rule.effect, rule.name
        return "deny", DEFAULT_DENY

    @classmethod
    def from_allowed_callers(cls, callers: list[str]) -> AccessPolicy:
        return cls(
            version="allowed-callers",
            rule=[PolicyRule(name="allowed-callers", callers=list(callers))],
        )


class AccessRequest(BaseModel):
    """Who asks to do what (built from the command; no clinical content)."""

    caller: str
    on_behalf_of: str | None = None
    role: str | None = None
    purpose: str | None = None
    resource_type: str
    interaction: Interaction


class AuthorizationRecord(BaseModel):
    """Under whose authority a write ran (or why it did not): the input of its Provenance
    (agent = ``on_behalf_of``, on behalf of ``requested_by``'s organisation; entity = the
    command) and of the audit ledger."""

    decision: Literal["allow", "deny"] = "allow"
    # defaults: what a write authorized before policies existed was decided by (its recorded
    # history must still decode, tests/replay)
    rule: str = Field(default="allowed_callers", description="the policy rule that decided")
    policy_version: str = "none"
    requested_by: str
    on_behalf_of: str | None
    role: str | None = None
    purpose: str | None = None
    scopes: list[str] = Field(description="SMART scopes the write may use (least per write)")
    checks: list[str] = Field(description="the checks that ran, in order")
    decided_at: datetime

    @property
    def summary(self) -> str:
        """One PHI-free line: the decision, the rule and the policy version."""
        verb = "allowed" if self.decision == "allow" else "denied"
        return f"{verb} by rule '{self.rule}' of policy {self.policy_version}"
