"""Per-tenant code maps (adapters/code_maps.py): a local code gets its standard coding beside it,
an unmapped code of a mapped system is refused naming the element and the system (never the code),
and a tenant's ``code_maps`` names a file relative to the tenants file, or is a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.code_maps import CodeMap, CodeMaps, mapped_codes
from adapters.code_systems import LOINC, RXNORM
from adapters.fhir_r4 import prepare_create, prepare_update
from adapters.problems import ResourceInvalid
from adapters.tenants import TenantConfigError, load_tenants
from workers.family_samples import allergy, lab_result

LAB = "http://lab.example.org/codes"
ALLERGENS = "http://allergens.example.org/list"
MAPS = CodeMaps(
    map=[
        CodeMap.model_validate({"from": LAB, "to": LOINC, "codes": {"GLU": "2345-7"}}),
        CodeMap.model_validate({"from": ALLERGENS, "to": RXNORM, "codes": {"PEN": "7980"}}),
    ]
)
MAPS_FILE = f"""
[[map]]
from = "{LAB}"
to = "{LOINC}"
codes = {{ "GLU" = "2345-7" }}
"""


def local_lab(code: str = "GLU") -> dict[str, Any]:
    resource = lab_result("pt-1")
    resource["code"] = {"coding": [{"system": LAB, "code": code}], "text": "glucose"}
    return resource


def test_a_local_code_gets_its_standard_coding_first_and_keeps_its_own() -> None:
    mapped = mapped_codes(MAPS, local_lab())
    assert mapped["code"]["coding"] == [
        {"system": LOINC, "code": "2345-7"},
        {"system": LAB, "code": "GLU"},
    ]
    assert local_lab()["code"]["coding"] == [{"system": LAB, "code": "GLU"}], "input untouched"


def test_codings_are_mapped_anywhere_in_the_resource() -> None:
    resource = allergy("pt-1")
    resource["code"] = {"coding": [{"system": ALLERGENS, "code": "PEN"}]}
    resource["reaction"][0]["substance"] = {"coding": [{"system": ALLERGENS, "code": "PEN"}]}
    mapped = mapped_codes(MAPS, resource)
    assert mapped["code"]["coding"][0] == {"system": RXNORM, "code": "7980"}
    assert mapped["reaction"][0]["substance"]["coding"][0] == {"system": RXNORM, "code": "7980"}


def test_mapping_twice_adds_nothing_more() -> None:
    once = mapped_codes(MAPS, local_lab())
    assert mapped_codes(MAPS, once) == once


def test_an_unmapped_code_names_the_element_and_the_system_never_the_code() -> None:
    resource = local_lab("SECRET-LOCAL-CODE")
    resource["code"]["coding"][0]["display"] = "Jane's special panel"
    with pytest.raises(ResourceInvalid) as refused:
        mapped_codes(MAPS, resource)
    assert str(refused.value) == f"Observation.code.coding[0]: no mapping from system '{LAB}'"
    assert "SECRET" not in str(refused.value) and "Jane" not in str(refused.value)


def test_codes_of_unmapped_systems_and_tenants_without_maps_pass_unchanged() -> None:
    assert mapped_codes(MAPS, lab_result("pt-1")) == lab_result("pt-1")
    assert mapped_codes(CodeMaps(), local_lab("ANY")) == local_lab("ANY")


def tenants_file(directory: Path, code_maps: str) -> Path:
    path = directory / "tenants.toml"
    path.write_text(
        "[[tenant]]\n"
        'id = "lab-r4"\n'
        'vendor = "generic_r4"\n'
        'fhir_base_url = "https://ehr.example.org/fhir"\n'
        "capabilities = { if_match = true, writable = { Observation = ['create', 'update'] } }\n"
        + code_maps
    )
    return path


def test_a_code_map_file_resolves_against_the_tenants_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "lab.toml").write_text(MAPS_FILE)
    path = tenants_file(tmp_path, 'code_maps = "maps/lab.toml"\n')
    monkeypatch.chdir(tmp_path / "maps")  # not the working directory
    tenant = load_tenants(path).get("lab-r4")
    assert tenant is not None
    create = prepare_create(tenant, local_lab(), "cmd-1")
    assert create.body["code"]["coding"][0] == {"system": LOINC, "code": "2345-7"}
    update = prepare_update(tenant, {**local_lab(), "id": "9"}, "Observation/9")
    assert update.body["code"]["coding"][0] == {"system": LOINC, "code": "2345-7"}
    with pytest.raises(ResourceInvalid, match="no mapping from system"):
        prepare_create(tenant, local_lab("OTHER"), "cmd-2")


def test_code_maps_may_be_a_table_in_the_tenants_file(tmp_path: Path) -> None:
    table = "\n[[tenant.code_maps.map]]\n" + MAPS_FILE.split("[[map]]\n", 1)[1]
    tenant = load_tenants(tenants_file(tmp_path, table)).get("lab-r4")
    assert tenant is not None
    assert tenant.code_maps.by_local_system()[LAB].codes == {"GLU": "2345-7"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("[[map]\n", "is not valid TOML"),
        ('[[map]]\nfrom = "x"\n', "map.0.to: Field required"),
    ],
)
def test_a_bad_code_map_file_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "maps.toml").write_text(content)
    with pytest.raises(TenantConfigError, match=message) as refused:
        load_tenants(tenants_file(tmp_path, 'code_maps = "maps.toml"\n'))
    assert "code_maps" in str(refused.value) and "maps.toml" in str(refused.value)
