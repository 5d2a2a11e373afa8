"""Profile constraints as data: a FHIRPath expression that must hold, the element it concerns, and
a code for what is wrong when it does not. Evaluated by fhirpathpy (a FHIRPath engine kept by
others) with its R4 model, so a choice element (``value``, ``effective``, ``performed``) is found
in any of its forms.

A constraint *holds* when its expression is true or empty (FHIRPath's "not applicable": a binding
on an absent element, an ``implies`` whose premise is false); it fails only on ``false``.

``each`` applies a constraint to every item of a repeating element and names the item's index in
the problem (``referenceRange[1].low.system``): the expression is evaluated as
``<each>[%index].select(<expression>)``, so the item keeps its place in the model; ``%resource``
is the resource.

Bounded work, whatever the input: constraints run only after the R4 structure passed (every
element is of its type, no unknown keys, nesting and string length already capped by the
command's input limits, workflows/input_limits.py); no expression walks the tree
(``descendants()``) or runs a regular expression (``matches()``) over a value; ``each`` visits at
most ``MAX_ITEMS`` items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from adapters.problems import Problem

#: Items of one repeating element a constraint looks at (a result has a few reference ranges).
MAX_ITEMS = 50
_R4 = models["r4"]


@dataclass(frozen=True)
class Constraint:
    """``expression`` must hold on the resource (or on each item of ``each``); else ``path``
    (relative to the resource, or to the item) is wrong as ``code`` says."""

    path: str
    expression: str
    code: str
    each: str | None = None


#: A check in Python, for what FHIRPath cannot say offline (a UCUM unit's grammar).
Rule = Callable[[dict[str, Any]], list[Problem]]


@cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    compiled: Callable[..., list[Any]] = compile_fhirpath(expression, _R4)
    return compiled


def _holds(expression: str, resource: dict[str, Any], index: int | None = None) -> bool:
    variables: dict[str, Any] = {"resource": resource, "index": index if index is not None else 0}
    result = _compiled(expression)(resource, variables)
    return result != [False]


def _item_path(each: str, index: int, path: str) -> str:
    return f"{each}[{index}]" + (f".{path}" if path else "")


def constraint_problems(
    constraints: Sequence[Constraint], resource: dict[str, Any]
) -> list[Problem]:
    """The problems of ``resource`` against ``constraints``, in their order."""
    problems: list[Problem] = []
    for constraint in constraints:
        if constraint.each is None:
            if not _holds(constraint.expression, resource):
                problems.append(Problem(constraint.path, constraint.code))
            continue
        items = resource.get(constraint.each)
        count = len(items) if isinstance(items, list) else int(items is not None)
        expression = f"{constraint.each}[%index].select({constraint.expression})"
        for index in range(min(count, MAX_ITEMS)):
            if not _holds(expression, resource, index):
                problems.append(
                    Problem(_item_path(constraint.each, index, constraint.path), constraint.code)
                )
    return problems


# --- the constraint kinds the profiles use -----------------------------------------------------

MISSING = "missing"
NOT_IN_VALUE_SET = "code_not_in_value_set"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _any_of(values: Sequence[str]) -> str:
    return "(" + " | ".join(_literal(value) for value in values) + ")"


def required(*paths: str) -> list[Constraint]:
    """Elements the profile makes mandatory (min 1); a choice element by its name (``effective``
    for ``effective[x]``) and named so."""
    return [
        Constraint(path + ("[x]" if path in _CHOICES else ""), f"{path}.exists()", MISSING)
        for path in paths
    ]


#: The choice elements (``[x]``) the profiles name.
_CHOICES = frozenset({"effective", "value", "medication", "occurrence", "performed", "onset"})


def code_in(path: str, values: Sequence[str]) -> Constraint:
    """A ``code`` element from its required value set, when present."""
    return Constraint(
        path, f"{path}.empty() or {path} in {_any_of(sorted(values))}", NOT_IN_VALUE_SET
    )


def concept_in(path: str, system: str, values: Sequence[str]) -> Constraint:
    """A CodeableConcept bound (required) to ``values`` of ``system``, when present: it codes its
    meaning there, and with those codes only."""
    ours = f"{path}.coding.where(system = {_literal(system)})"
    allowed = _any_of(sorted(values))
    return Constraint(
        path,
        f"{path}.empty() or ({ours}.exists() and {ours}.code.all($this in {allowed}))",
        NOT_IN_VALUE_SET,
    )


def has_coding(path: str, system: str, code: str) -> Constraint:
    """A CodeableConcept ``path``, or one of them where it repeats, holds ``system#code``."""
    return Constraint(
        path,
        f"{path}.coding.where(system = {_literal(system)} and code = {_literal(code)}).exists()",
        f"coding_missing ({system}#{code})",
    )


def coded_in_systems(path: str, *systems: str) -> Constraint:
    """A CodeableConcept ``path``, when present, has a coding of one of ``systems`` (a code system
    the family's binding names, e.g. LOINC for a lab test)."""
    return Constraint(
        path,
        f"{path}.empty() or {path}.coding.where(system in {_any_of(systems)}).exists()",
        "code_system_missing (" + "|".join(systems) + ")",
    )


def references(path: str, *types: str, each: str | None = None) -> Constraint:
    """A Reference ``path`` (of the resource, or of each item of ``each``), when it has a
    literal reference, points at one of ``types``."""
    starts = " or ".join(f"$this.startsWith({_literal(kind + '/')})" for kind in types)
    contains = " or ".join(f"$this.contains({_literal('/' + kind + '/')})" for kind in types)
    return Constraint(
        f"{path}.reference",
        f"{path}.reference.empty() or {path}.reference.all({starts} or {contains})",
        f"reference_type_not_allowed ({'|'.join(types)})",
        each=each,
    )


def patient(path: str) -> list[Constraint]:
    """``path`` is present and references a Patient (US Core narrows subjects to the patient)."""
    return [*required(path), references(path, "Patient")]
