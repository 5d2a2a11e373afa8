"""Schema drift: a tenant's contract changing under the client's feet.

``{"required_fields": ["Observation.performer"],
   "removed_extensions": ["http://example.org/ext"],
   "code_bindings": {"Observation.code": "http://loinc.org"}}``

* a newly required field that is missing answers 422 naming it;
* a removed extension is silently stripped on store (a read-back will differ);
* a code binding is violated when no coding at the path uses the expected
  system: 422 naming the field and the expected system.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sandbox.responses import FhirError, Json


@dataclass(frozen=True)
class Drift:
    required_fields: tuple[str, ...] = ()
    removed_extensions: frozenset[str] = frozenset()
    code_bindings: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.required_fields or self.removed_extensions or self.code_bindings)

    def to_json(self) -> Json:
        return {
            "required_fields": list(self.required_fields),
            "removed_extensions": sorted(self.removed_extensions),
            "code_bindings": dict(self.code_bindings),
        }


def _path(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or "." not in raw or not raw[:1].isupper():
        raise ValueError(f"drift {what} must be paths like 'Observation.performer'")
    return raw


def parse_drift(raw: Any) -> Drift:
    if raw is None:
        return Drift()
    if not isinstance(raw, dict):
        raise ValueError("drift must be an object")
    unknown = set(raw) - {"required_fields", "removed_extensions", "code_bindings"}
    if unknown:
        raise ValueError(f"unknown drift fields: {sorted(unknown)}")
    required = raw.get("required_fields", [])
    removed = raw.get("removed_extensions", [])
    bindings = raw.get("code_bindings", {})
    if not isinstance(required, list) or not isinstance(removed, list):
        raise ValueError("drift required_fields and removed_extensions must be lists")
    if not all(isinstance(u, str) for u in removed):
        raise ValueError("drift removed_extensions must be URLs")
    if not isinstance(bindings, dict) or not all(isinstance(v, str) for v in bindings.values()):
        raise ValueError("drift code_bindings must map paths to code system URLs")
    return Drift(
        tuple(_path(p, "required_fields") for p in required),
        frozenset(removed),
        tuple((_path(p, "code_bindings"), s) for p, s in bindings.items()),
    )


def profile_elements(drift: Drift, rtype: str) -> list[Json]:
    """The drift as StructureDefinition differential elements for ``rtype``, so that discovery
    (``/metadata``) shows what writes will meet: ``min: 1`` for a newly required field, a
    required binding for a changed code binding, ``max: "0"`` for a removed extension."""
    elements: list[Json] = []
    for path in drift.required_fields:
        if path.split(".")[0] == rtype:
            elements.append({"id": path, "path": path, "min": 1})
    for path, system in drift.code_bindings:
        if path.split(".")[0] == rtype:
            elements.append(
                {
                    "id": path,
                    "path": path,
                    "binding": {
                        "strength": "required",
                        "description": f"codes from {system}",
                        "valueSet": system,
                    },
                }
            )
    for url in sorted(drift.removed_extensions):
        elements.append(
            {
                "id": f"{rtype}.extension:{url}",
                "path": f"{rtype}.extension",
                "sliceName": url,
                "max": "0",
                "type": [{"code": "Extension", "profile": [url]}],
            }
        )
    return elements


def values_at(body: Json, path: str) -> Iterator[Any]:
    """Values at ``Type.a.b`` (lists are walked); nothing if the type differs."""
    rtype, *steps = path.split(".")
    if body.get("resourceType") != rtype:
        return
    nodes: list[Any] = [body]
    for step in steps:
        nxt: list[Any] = []
        for node in nodes:
            value = node.get(step) if isinstance(node, dict) else None
            nxt += value if isinstance(value, list) else [] if value is None else [value]
        nodes = nxt
    yield from (n for n in nodes if n not in (None, "", [], {}))


def strip_extensions(node: Any, urls: frozenset[str]) -> None:
    if isinstance(node, dict):
        for key in ("extension", "modifierExtension"):
            exts = node.get(key)
            if isinstance(exts, list):
                kept = [e for e in exts if not (isinstance(e, dict) and e.get("url") in urls)]
                if kept:
                    node[key] = kept
                else:
                    node.pop(key)
        for value in node.values():
            strip_extensions(value, urls)
    elif isinstance(node, list):
        for item in node:
            strip_extensions(item, urls)


def _systems(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                yield coding.get("system") if isinstance(coding, dict) else None
        else:
            yield value.get("system")


def apply_drift(drift: Drift, rtype: str, body: Json) -> None:
    """Strip removed extensions in place; raise 422 for missing fields or bindings."""
    if not drift:
        return
    if drift.removed_extensions:
        strip_extensions(body, drift.removed_extensions)
    for path in drift.required_fields:
        if path.split(".")[0] == rtype and next(values_at(body, path), None) is None:
            raise FhirError(
                422, "required", f"{path} is required by this server", expression=[path]
            )
    for path, system in drift.code_bindings:
        for value in values_at(body, path):
            if system not in set(_systems(value)):
                raise FhirError(
                    422,
                    "code-invalid",
                    f"{path} must be coded from {system}",
                    expression=[path],
                )
