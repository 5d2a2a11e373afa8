"""Per-tenant code maps: a tenant's local code systems translated to the standard ones its EHR
expects (a lab's local test codes to LOINC, an internal allergen list to SNOMED CT or RxNorm).

A tenant names its maps in the tenants file (``code_maps = "acme-lab-maps.toml"``, relative to the
tenants file, or an inline ``[tenant.code_maps]`` table); each map translates one local system::

    [[map]]
    from = "http://lab.acme.example/codes"   # the local code system (a URI)
    to = "http://loinc.org"                   # the standard one
    codes = { "GLU" = "2345-7", "NA" = "2951-2" }

Applied in the write's map step (adapters/fhir_r4.py ``prepare_create`` / ``prepare_update``):
every Coding anywhere in the resource whose ``system`` is a mapped local system gets the standard
Coding added **beside** it, first in its list, the local Coding kept after it. FHIR allows several
codings of one concept; the standard one comes first for receivers that read only the first, and
the local one stays as the provenance of the translation (and what the sender's own systems search
by). A coding already present is not added twice, so a retry or an update maps to the same body.

A coding of a mapped system whose code has no mapping is a validation problem naming the element
by FHIRPath and the system's URI (configuration, never the code nor its display, which could be
anything a sender typed).
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from adapters.problems import Problem, ResourceInvalid, element_path


class CodeMap(BaseModel):
    """One local code system translated to one standard system."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    local_system: str = Field(alias="from", min_length=1, description="the local system's URI")
    standard_system: str = Field(alias="to", min_length=1, description="e.g. http://loinc.org")
    codes: dict[str, str] = Field(description="local code -> standard code")


class CodeMaps(BaseModel):
    """A tenant's code maps, by local system."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    map: list[CodeMap] = Field(default_factory=list)

    def by_local_system(self) -> dict[str, CodeMap]:
        return {code_map.local_system: code_map for code_map in self.map}


def code_maps_setting(value: Any, tenants_dir: Path | None) -> Any:
    """A tenant's ``code_maps`` setting as validated input: a file name (relative to the tenants
    file's directory, else to the working directory) is read into its maps; a table is left to
    the model. A file that cannot be read or is not maps is a configuration error naming it."""
    if not isinstance(value, str):
        return value
    path = (tenants_dir or Path.cwd()) / value
    try:
        return CodeMaps.model_validate(tomllib.loads(path.read_text()))
    except OSError as exc:
        raise PydanticCustomError(
            "code_maps_file", "cannot read {path} ({why})", {"path": str(path), "why": exc.strerror}
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise PydanticCustomError(
            "code_maps_file", "{path} is not valid TOML: {why}", {"path": str(path), "why": exc}
        ) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise PydanticCustomError(
            "code_maps_file", "{path}: {problems}", {"path": str(path), "problems": problems}
        ) from None


def mapped_codes(maps: CodeMaps, resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``resource`` with each coding of a mapped local system joined by its standard
    coding; raises ResourceInvalid naming each coding whose code the map lacks."""
    by_system = maps.by_local_system()
    if not by_system:
        return resource
    resource_type = str(resource.get("resourceType"))
    mapped = copy.deepcopy(resource)
    problems: list[Problem] = []
    stack: list[tuple[Any, list[str | int]]] = [(mapped, [])]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, dict):
            codings = node.get("coding")
            if isinstance(codings, list):
                node["coding"] = _with_standard(codings, by_system, [*parts, "coding"], problems)
            stack.extend((value, [*parts, key]) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((item, [*parts, index]) for index, item in enumerate(node))
    if problems:
        problems = [
            Problem(f"{resource_type}.{problem.path}", problem.message)
            for problem in sorted(problems, key=lambda problem: problem.path)
        ]
        raise ResourceInvalid(problems)
    return mapped


def _with_standard(
    codings: list[Any],
    by_system: dict[str, CodeMap],
    parts: list[str | int],
    problems: list[Problem],
) -> list[Any]:
    """``codings`` with the standard coding of each mapped one put first (once)."""
    added: list[dict[str, str]] = []
    for index, coding in enumerate(codings):
        system = coding.get("system") if isinstance(coding, dict) else None
        code_map = by_system.get(system) if isinstance(system, str) else None
        if code_map is None:
            continue
        standard = code_map.codes.get(str(coding.get("code")))
        if standard is None:
            where = element_path([*parts, index], "coding")
            problems.append(Problem(where, f"no mapping from system '{code_map.local_system}'"))
            continue
        coding_added = {"system": code_map.standard_system, "code": standard}
        present = any(
            isinstance(other, dict)
            and other.get("system") == code_map.standard_system
            and other.get("code") == standard
            for other in [*added, *codings]
        )
        if not present:
            added.append(coding_added)
    return [*added, *codings]
