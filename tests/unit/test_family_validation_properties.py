"""Profile validation holds on any input (issue #20, acceptance 3): the valid sample of every
clinical family, mutated one to three times — an element removed, a value replaced by a hostile
one (control characters, markup, SQL, format strings, odd unicode, a megabyte string, a number, a
wrong JSON type), an element added under a known or a made-up name, a cardinality changed (an
array unwrapped, emptied or doubled, a single element wrapped), a code, unit, system, status or
reference replaced, a structure nested up to the input limits — is either accepted or refused
with ResourceInvalid whose every problem names a FHIRPath-style path and a code: never another
exception, never a rule that broke (``unprocessable``), never a value the mutation brought.

Examples per family: ``WB_PROPERTY_EXAMPLES`` (5,000 for the acceptance run), else
``DEFAULT_EXAMPLES`` (400 per family: the file ran in 50 s on a loaded 2-core box, 2026-11-26).
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.families import Family
from adapters.validation import ResourceInvalid, validate_resource
from tests.support.family_resources import sample
from workflows.input_limits import MAX_DEPTH

DEFAULT_EXAMPLES = 400
EXAMPLES = int(os.environ.get("WB_PROPERTY_EXAMPLES", DEFAULT_EXAMPLES))

#: In every string a mutation brings: no element name, code or FHIR value contains it.
MARK = "ZqX7"
HOSTILE = [
    "\x00\x07\x1b[31m\r\n",
    "<script>alert(1)</script><b>",
    "'; DROP TABLE patients; --",
    "%s%n{0}{__class__}${jndi:ldap://x}",
    "\u202e\ufeff\U0001d54f\u0301\ud7ff",
    "Jane Doe 555-12-3456",
    "../../etc/passwd",
    '\\u0000\\"',
]
#: Names an added element may have: real ones (at the wrong place) and made-up ones.
NAMES = ["status", "code", "value", "system", "text", "reference", "extension", "coding", "unit"]
#: Keys whose values are codes, units, systems, statuses or references.
CODED = {"code", "system", "unit", "status", "intent", "reference", "lifecycleStatus", "url"}
#: A problem's path: FHIRPath-style element names (``?`` for a name that is not one), indices,
#: ``[x]`` for a choice element; or ``(resource)`` for the resource as a whole.
PATH = re.compile(
    r"\(resource\)|(?:[A-Za-z_?][A-Za-z0-9_?]*(?:\[x\])?(?:\[\d+\])*)"
    r"(?:\.[A-Za-z_?][A-Za-z0-9_?]*(?:\[x\])?(?:\[\d+\])*)*"
)


def hostile_strings() -> st.SearchStrategy[str]:
    fragment = st.sampled_from(HOSTILE) | st.text(max_size=12)
    mark = st.builds(lambda a, b: f"{a}{MARK}{b}", fragment, fragment)
    megabyte = st.builds(lambda a: f"{MARK}{a}" + "A" * (1 << 20), fragment)
    return st.one_of(mark, mark, mark, megabyte)


def hostile_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        hostile_strings(),
        st.integers(10**8, 10**12),
        st.floats(allow_nan=False, min_value=1e8, max_value=1e15),
        st.booleans(),
        st.none(),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(st.sampled_from([*NAMES, MARK + "key"]), scalars, max_size=3),
        st.builds(_nested, scalars, st.integers(1, MAX_DEPTH - 2)),
    )


def _nested(leaf: Any, depth: int) -> Any:
    node = leaf
    for level in range(depth):
        node = {"extension": node} if level % 2 else [node]
    return node


def _places(resource: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key or index) of every element below the resource, up to 400 of them."""
    places: list[tuple[Any, Any]] = []
    stack: list[Any] = [resource]
    while stack and len(places) < 400:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if key != "resourceType":
                places.append((node, key))
            if isinstance(value, dict | list):
                stack.append(value)
    return places


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [resource] + [c[k] for c, k in _places(resource) if isinstance(c[k], dict)]


def mutate(resource: dict[str, Any], data: st.DataObject) -> list[str]:
    """One mutation of ``resource``, in place; what was done (without values)."""
    kind = data.draw(st.sampled_from(["remove", "replace", "add", "cardinality", "code", "nest"]))
    places = _places(resource)
    if kind in {"remove", "replace", "cardinality"} and places:
        container, key = data.draw(st.sampled_from(places))
        value = container[key]
        if kind == "remove":
            del container[key]
        elif kind == "replace":
            container[key] = data.draw(hostile_values())
        elif isinstance(value, list):
            change = data.draw(st.sampled_from(["unwrap", "empty", "double"]))
            container[key] = (value[:1] or [None])[0] if change == "unwrap" else value * 2
            if change == "empty":
                container[key] = []
        else:
            container[key] = [value]
        return [f"{kind} {key!r}"]
    coded = [(c, k) for c, k in places if k in CODED]
    if kind == "code" and coded:
        container, key = data.draw(st.sampled_from(coded))
        container[key] = data.draw(hostile_strings())
        return [f"code {key!r}"]
    target = data.draw(st.sampled_from(_containers(resource)))
    name = data.draw(st.sampled_from([*NAMES, MARK + "name"]))
    value = data.draw(hostile_values())
    target[name] = (
        _nested(value, data.draw(st.integers(1, MAX_DEPTH - 2))) if kind == "nest" else value
    )
    return [f"{kind} {name!r}"]


def _brought(resource: dict[str, Any], base: dict[str, Any]) -> set[str]:
    """Texts the mutations brought that must not appear in a reason: the mark, the hostile
    fragments, and every number of eight digits or more."""
    texts = {MARK, *(fragment for fragment in HOSTILE if len(fragment) >= 6)}
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, bool):
            continue
        if isinstance(node, int | float) and abs(node) >= 10**8:
            texts.add(str(int(node)))
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return texts


@pytest.mark.parametrize("family", list(Family), ids=str)
def test_any_mutation_of_a_family_sample_is_accepted_or_refused_by_path_and_code(
    family: Family,
) -> None:
    base = sample(family)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        resource = copy.deepcopy(base)
        for _ in range(data.draw(st.integers(1, 3))):
            mutate(resource, data)
        try:
            validate_resource(resource)
        except ResourceInvalid as refused:
            brought = _brought(resource, base)
            assert refused.problems
            for problem in refused.problems:
                text = str(problem)
                assert PATH.fullmatch(problem.path), text
                assert "unprocessable" not in problem.message, text
                assert not [piece for piece in brought if piece in text], text

    check()
