"""Pure pieces of the sandbox: JSON Patch (RFC 6902), SMART scopes, FHIR date ranges."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.jsonpatch import PatchConflict, PatchSyntaxError, apply_patch
from sandbox.scopes import grant, parse_scope
from sandbox.search import date_range

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.text(alphabet="ab~/-", min_size=1, max_size=4)


def _pointer(*tokens: str) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


@given(st.dictionaries(keys, json_values, max_size=4), keys, json_values)
def test_add_then_remove_restores_the_document(doc: dict[str, Any], key: str, value: Any) -> None:
    path = _pointer(key)
    added = apply_patch(doc, [{"op": "add", "path": path, "value": value}])
    assert added[key] == value
    assert apply_patch(added, [{"op": "test", "path": path, "value": value}]) == added
    if key not in doc:
        assert apply_patch(added, [{"op": "remove", "path": path}]) == doc
    assert doc.get(key, object()) is not value or key in doc  # the input is never mutated


@given(st.lists(json_values, max_size=5), json_values)
def test_append_and_copy_in_arrays(items: list[Any], value: Any) -> None:
    doc = {"a": items}
    out = apply_patch(doc, [{"op": "add", "path": "/a/-", "value": value}])
    assert out["a"] == [*items, value]
    copied = apply_patch(out, [{"op": "copy", "from": "/a", "path": "/b"}])
    assert copied["b"] == copied["a"] and copied["b"] is not copied["a"]


def test_rfc6902_examples() -> None:
    assert apply_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar",
        "baz": "qux",
    }
    assert apply_patch(
        {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]
    ) == {"foo": ["bar", "qux", "baz"]}
    moved = apply_patch(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
    )
    assert moved == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert apply_patch({"/": 1, "~": 2}, [{"op": "replace", "path": "/~1", "value": 3}]) == {
        "/": 3,
        "~": 2,
    }
    with pytest.raises(PatchConflict):
        apply_patch({"foo": "bar"}, [{"op": "test", "path": "/foo", "value": "baz"}])
    with pytest.raises(PatchConflict):
        apply_patch({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 1}])
    with pytest.raises(PatchConflict):
        apply_patch({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}])
    with pytest.raises(PatchSyntaxError):
        apply_patch({}, [{"op": "frobnicate", "path": "/a"}])
    with pytest.raises(PatchSyntaxError):
        apply_patch({}, [{"op": "add", "path": "a", "value": 1}])


@pytest.mark.parametrize(
    ("scope", "letters"),
    [
        ("system/Observation.c", "c"),
        ("system/Observation.cruds", "cdrsu"),
        ("system/Observation.rs", "rs"),
        ("system/*.read", "rs"),
        ("system/Observation.write", "cdu"),
        ("system/Observation.*", "cdrsu"),
        ("system/Observation.uc", None),
        ("system/Observation.cc", None),
        ("system/Observation.x", None),
        ("launch", None),
    ],
)
def test_parse_scope(scope: str, letters: str | None) -> None:
    parsed = parse_scope(scope)
    assert (None if parsed is None else "".join(sorted(parsed.letters))) == letters


def test_grant_is_requested_intersect_allowed() -> None:
    allowed = ["system/Observation.crs", "system/*.read", "patient/Observation.c"]
    assert grant(["system/Observation.c", "system/Observation.cu"], allowed) == [
        "system/Observation.c"
    ]
    assert grant(["system/Patient.rs", "system/Patient.read"], allowed) == [
        "system/Patient.rs",
        "system/Patient.read",
    ]
    assert grant(["patient/Observation.c", "openid"], allowed) == []


@given(st.text(alphabet="cruds", min_size=1, max_size=5))
def test_v2_letters_must_be_in_order(perm: str) -> None:
    ordered = "".join(c for c in "cruds" if c in perm)
    assert (parse_scope(f"system/Observation.{perm}") is not None) == (perm == ordered)


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-12-31", "2024-12-31T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-05-01T10:30Z", "2024-05-01T10:30:00.000Z", "2024-05-01T10:31:00.000Z"),
        ("2024-05-01T10:30:05+02:00", "2024-05-01T08:30:05.000Z", "2024-05-01T08:30:06.000Z"),
        ("2024-05-01T10:30:05.25Z", "2024-05-01T10:30:05.250Z", "2024-05-01T10:30:05.251Z"),
    ],
)
def test_date_ranges(value: str, start: str, end: str) -> None:
    assert date_range(value) == (start, end)
