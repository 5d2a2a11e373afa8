"""Access policies: first matching rule decides, no match denies, tenant files without a policy
keep their allowed_callers meaning, malformed policies are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tenants import POLICY

from adapters.interactions import Interaction
from adapters.policy import DEFAULT_DENY, AccessPolicy, AccessRequest
from adapters.tenants import TenantConfigError, load_tenants

TENANT = """
[[tenant]]
id = "t1"
vendor = "generic_r4"
fhir_base_url = "http://ehr.test/fhir"
allow_insecure_http = true
"""


def policy_from(tmp_path: Path, text: str) -> AccessPolicy:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANT + text)
    tenant = load_tenants(path).get("t1")
    assert tenant is not None
    return tenant.access_policy()


def ask(caller: str, interaction: Interaction = Interaction.CREATE, **kw: str) -> AccessRequest:
    return AccessRequest(
        caller=caller,
        resource_type=kw.pop("resource_type", "Observation"),
        interaction=interaction,
        **kw,
    )


RULE_X = '[tenant.policy]\nversion = "1"\n[[tenant.policy.rule]]\nname = "x"\n'
NURSE = {"on_behalf_of": "Practitioner/n1", "role": "nurse", "purpose": "TREAT"}


@pytest.mark.parametrize(
    ("request_", "decision"),
    [
        (ask("nursing-app", **NURSE), ("allow", "nursing-vitals")),
        (ask("nursing-app", Interaction.UPDATE, **NURSE), ("allow", "nursing-vitals")),
        # every condition of the rule is needed
        (ask("nursing-app", **{**NURSE, "role": "billing"}), ("deny", DEFAULT_DENY)),
        (ask("nursing-app", **{**NURSE, "purpose": "HMARKT"}), ("deny", DEFAULT_DENY)),
        (ask("nursing-app", role="nurse", purpose="TREAT"), ("deny", DEFAULT_DENY)),
        (ask("nursing-app", **NURSE, resource_type="Condition"), ("deny", DEFAULT_DENY)),
        # first match wins: the deny rule comes before any allow for batch updates
        (ask("batch-import", Interaction.UPDATE), ("deny", "batch-never-updates")),
        (ask("batch-import"), ("allow", "batch-creates")),
        (ask("unknown-service"), ("deny", DEFAULT_DENY)),
    ],
)
def test_the_first_matching_rule_decides(
    tmp_path: Path, request_: AccessRequest, decision: tuple[str, str]
) -> None:
    policy = policy_from(tmp_path, POLICY)
    assert policy.version == "2026-11-test"
    assert policy.decide(request_) == decision


def test_without_a_policy_allowed_callers_decide(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, 'allowed_callers = ["ehr-sync"]\n')
    assert policy.version == "allowed-callers"
    assert policy.decide(ask("ehr-sync")) == ("allow", "allowed-callers")
    assert policy.decide(ask("other")) == ("deny", DEFAULT_DENY)
    # no allowed_callers at all lets nobody in (issue #17: it used to allow everyone)
    assert policy_from(tmp_path, "").decide(ask("anyone")) == ("deny", DEFAULT_DENY)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            RULE_X + 'effect = "maybe"\n',
            "policy.rule.0.effect",
        ),
        (
            RULE_X + "surprise = 1\n",
            "policy.rule.0.surprise",
        ),
        ('[tenant.policy]\n[[tenant.policy.rule]]\nname = "x"\n', "policy.version"),
    ],
)
def test_a_malformed_policy_names_the_field(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(TenantConfigError, match=problem):
        policy_from(tmp_path, text)
