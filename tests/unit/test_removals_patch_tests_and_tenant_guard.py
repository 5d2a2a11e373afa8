"""What an update must find on read-back (removals too), the JSON Patch that guards a tenant
without If-Match, and the tenant configurations that could not guard an update at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from pydantic import ValidationError

from adapters.fhir_r4 import differences, with_removals
from adapters.merge import guarded_patch
from adapters.tenants import (
    DEFAULT_TENANTS_FILE,
    Capabilities,
    Interaction,
    Tenant,
    TenantConfigError,
    Vendor,
    load_tenants,
)

CURRENT: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "1",
    "meta": {"versionId": "4"},
    "text": {"status": "generated", "div": "<div/>"},
    "status": "final",
    "valueQuantity": {"value": 70, "comparator": ">=", "unit": "/min"},
    "note": [{"text": "recheck", "authorString": "RN"}],
}


def less(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in keys}


# --- what a read-back after an update must find ------------------------------------------------


def test_an_update_expects_what_it_removed_to_be_gone() -> None:
    desired = less(CURRENT, "meta", "text", "note") | {
        "valueQuantity": {"value": 70, "unit": "/min"},
    }
    expected = with_removals(desired, CURRENT)
    assert sorted(differences(expected, CURRENT)) == ["note", "valueQuantity.comparator"]
    stored = less(CURRENT, "note") | {"valueQuantity": desired["valueQuantity"]}
    assert differences(expected, stored) == []


def test_a_removal_inside_a_list_entry_counts() -> None:
    desired = less(CURRENT, "meta") | {"note": [{"text": "recheck"}]}
    assert differences(with_removals(desired, CURRENT), CURRENT) == ["note[0].authorString"]


def test_server_managed_elements_are_no_removal() -> None:
    desired = less(CURRENT, "meta", "text")
    assert with_removals(desired, CURRENT) == desired
    assert differences(with_removals(desired, CURRENT), CURRENT) == []


def test_a_create_read_back_still_accepts_what_the_server_adds() -> None:
    sent = less(CURRENT, "id", "meta", "text", "note")
    assert differences(sent, CURRENT) == []  # id, meta, text and a note the server added


# --- the guarded JSON Patch --------------------------------------------------------------------


def test_patch_tests_exactly_the_elements_it_changes_at_their_values_as_read() -> None:
    desired = less(CURRENT, "note") | {"status": "amended", "interpretation": [{"text": "N"}]}
    patch = guarded_patch(CURRENT, desired)
    assert patch == [
        {"op": "test", "path": "/note", "value": CURRENT["note"]},
        {"op": "test", "path": "/status", "value": "final"},
        {"op": "add", "path": "/interpretation", "value": [{"text": "N"}]},
        {"op": "remove", "path": "/note"},
        {"op": "add", "path": "/status", "value": "amended"},
    ]
    assert jsonpatch.apply_patch(CURRENT, patch) == desired


def test_patch_is_refused_when_a_changed_element_changed_since_the_read() -> None:
    desired = CURRENT | {"status": "amended"}
    patch = guarded_patch(CURRENT, desired)
    theirs = CURRENT | {"status": "preliminary"}
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(theirs, patch)
    unrelated = CURRENT | {"issued": "2026-01-01T00:00:00Z"}  # a change we do not touch
    assert jsonpatch.apply_patch(unrelated, patch)["status"] == "amended"


def test_an_added_element_is_guarded_by_the_version_read_when_there_is_no_if_match() -> None:
    """RFC 6902 cannot test that an element is absent: an element we add (absent at our read)
    is guarded by the version read instead."""
    desired = CURRENT | {"interpretation": [{"text": "N"}]}
    patch = guarded_patch(CURRENT, desired, version="4")
    assert patch[0] == {"op": "test", "path": "/meta/versionId", "value": "4"}
    assert jsonpatch.apply_patch(CURRENT, patch) == desired
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(CURRENT | {"meta": {"versionId": "5"}}, patch)
    assert guarded_patch(CURRENT, CURRENT | {"status": "amended"}, version="4")[0]["path"] == (
        "/status"  # nothing added: the elements' own tests suffice
    )


def test_patch_paths_are_json_pointers() -> None:
    current = {"resourceType": "Basic", "a/b": 1, "c~d": 2}
    patch = guarded_patch(current, {"resourceType": "Basic", "a/b": 3, "c~d": 4})
    assert [op["path"] for op in patch] == ["/a~1b", "/c~0d", "/a~1b", "/c~0d"]


# --- tenants that could not guard an update ----------------------------------------------------


def tenant(**capabilities: Any) -> Tenant:
    return Tenant(
        id="acme-r4",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        capabilities=Capabilities(**capabilities),
    )


UPDATES = {"Observation": [Interaction.CREATE], "Task": [Interaction.CREATE, Interaction.UPDATE]}


def test_a_tenant_that_updates_without_if_match_or_patch_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        tenant(writable=UPDATES)
    message = str(refused.value)
    assert "tenant 'acme-r4'" in message and "Task" in message
    assert "if_match = true" in message and "patch = true" in message


@pytest.mark.parametrize(
    "capabilities",
    [
        {"writable": UPDATES, "if_match": True},
        {"writable": UPDATES, "patch": True},
        {"writable": {"Observation": [Interaction.CREATE]}},
    ],
)
def test_a_tenant_with_a_guard_or_no_updates_loads(capabilities: dict[str, Any]) -> None:
    assert tenant(**capabilities).id == "acme-r4"


def test_the_tenant_file_names_the_refused_tenant(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[[tenant]]\nid = "acme-r4"\nvendor = "generic_r4"\nfhir_base_url = "http://ehr.test"\n'
        "allow_insecure_http = true\n"
        'capabilities = { writable = { Observation = ["create", "update"] } }\n'
    )
    with pytest.raises(TenantConfigError, match=r"tenant #1: .*tenant 'acme-r4'.*if_match"):
        load_tenants(path)


def test_the_demo_tenants_still_load() -> None:
    assert "demo-cerner" in load_tenants(DEFAULT_TENANTS_FILE).ids
