"""The few kinds of rule a profile adds to the R4 structure, each a function of the resource.

The R4 models (fhir.resources) already refuse what the base resource forbids: a wrong type, an
element that is not one, a missing element the base resource requires. They do not check what a
*profile* adds, nor the base resource's required bindings and reference targets. These do:

* ``required``: an element the profile makes mandatory (min cardinality 1) is present;
* ``one_of``: a choice element (``effective[x]``) is present in one of its forms;
* ``code_in``: a ``code`` element is from its required value set;
* ``concept_in``: a CodeableConcept holds a coding of a required value set (when present);
* ``has_coding``: a repeating CodeableConcept holds a given system#code (a profile's slice,
  e.g. the ``laboratory`` category);
* ``references``: a Reference points at one of the resource types the profile allows.

A problem names the element (FHIRPath, from the resource) and a code for what is wrong, never
the element's value (adapters/problems.py): ``missing``, ``code_not_in_value_set``,
``coding_missing (system#code)``, ``reference_type_not_allowed (Patient)``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from adapters.problems import Problem

#: A rule: the problems it finds in a resource (empty when it holds).
Rule = Callable[[dict[str, Any]], list[Problem]]

MISSING = "missing"
NOT_IN_VALUE_SET = "code_not_in_value_set"


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _get(resource: dict[str, Any], path: str) -> Any:
    """The element at a dotted path of single elements (``text.status``); None when absent."""
    node: Any = resource
    for name in path.split("."):
        node = node.get(name) if isinstance(node, dict) else None
    return node


def required(*paths: str) -> Rule:
    """Each of ``paths`` is present."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        return [Problem(path, MISSING) for path in paths if not _present(_get(resource, path))]

    return rule


def one_of(choice: str, *forms: str) -> Rule:
    """The choice element ``choice`` (``effective``) is present as one of ``forms``
    (``DateTime``, ``Period``); the problem names it ``effective[x]``."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        if any(_present(resource.get(choice + form)) for form in forms):
            return []
        return [Problem(f"{choice}[x]", MISSING)]

    return rule


def code_in(path: str, values: Collection[str]) -> Rule:
    """The code at ``path``, when present, is one of ``values`` (a required binding)."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        value = _get(resource, path)
        if value is None or value in values:
            return []
        return [Problem(path, NOT_IN_VALUE_SET)]

    return rule


def codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept (none when it is not one)."""
    found = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def concept_in(path: str, system: str, values: Collection[str]) -> Rule:
    """The CodeableConcept at ``path``, when present, codes its meaning in ``system`` with one of
    ``values`` (a required binding: a concept of text or of other systems only does not)."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        concept = _get(resource, path)
        if concept is None:
            return []
        ours = [c for c in codings(concept) if c.get("system") == system]
        if ours and all(c.get("code") in values for c in ours):
            return []
        return [Problem(path, NOT_IN_VALUE_SET)]

    return rule


def has_coding(path: str, system: str, code: str) -> Rule:
    """The CodeableConcept ``path``, or one of them where it repeats (``category``), holds
    ``system#code`` (a profile's slice or fixed code)."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        concepts = resource.get(path)
        for concept in concepts if isinstance(concepts, list) else [concepts]:
            if any(c.get("system") == system and c.get("code") == code for c in codings(concept)):
                return []
        return [Problem(path, f"coding_missing ({system}#{code})")]

    return rule


def references(path: str, *types: str) -> Rule:
    """The Reference at ``path``, when it has a literal reference, points at one of ``types``
    (``Patient/…``, or an absolute URL ending ``/Patient/…``). A saga's placeholder
    (``saga:<step>``) is resolved before the step is validated and never reaches here."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        target = _get(resource, path)
        reference = target.get("reference") if isinstance(target, dict) else None
        if not isinstance(reference, str):
            return []
        parts = reference.split("/_history/")[0].split("/")
        if len(parts) >= 2 and parts[-2] in types:
            return []
        return [Problem(f"{path}.reference", f"reference_type_not_allowed ({'|'.join(types)})")]

    return rule


def when(condition: Callable[[dict[str, Any]], bool], *rules: Rule) -> Rule:
    """``rules``, applied only where ``condition`` holds (a profile's invariant)."""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        if not condition(resource):
            return []
        return [problem for each in rules for problem in each(resource)]

    return rule
