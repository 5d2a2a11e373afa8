"""The input limits (workflows/input_limits.py): the client's check on objects and the worker's on
JSON text find the same first problem at the same path; paths are FHIRPath style and never
carry a value; a realistic clinical note is well inside the limits."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import to_json

from workers import samples
from workflows.contract import WriteCommand
from workflows.input_limits import (
    MAX_COMMAND_BYTES,
    MAX_DEPTH,
    MAX_NAME_CHARS,
    MAX_STRING_CHARS,
    CommandRefused,
    LimitExceeded,
    NotJson,
    check_command,
    check_json,
    element_path,
)

CANARY = "Zq-CANARY-7Jane-Doe"


def command_with(resource: dict[str, Any]) -> WriteCommand:
    return WriteCommand(tenant="demo-r4", idempotency_key="k-1", resource=resource)


def refusal(check: Any, value: Any) -> tuple[str, str] | None:
    try:
        check(value)
    except LimitExceeded as exc:
        assert CANARY not in str(exc)
        return exc.limit, exc.path
    return None


def nested(levels: int, leaf: Any = CANARY) -> Any:
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"item": value}
    return value


# --- client and worker agree ----------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["valueQuantity", "code", "_status", "item", "x" * (MAX_NAME_CHARS + 1)]),
    st.text(max_size=8),
)
long_strings = st.builds(
    lambda n, c: c * n,
    st.integers(MAX_STRING_CHARS - 2, MAX_STRING_CHARS + 2),
    st.sampled_from(["a", "é", '"', "\\", "\u2028", "🫀"]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    long_strings,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=30,
)
deep_values = st.builds(nested, st.integers(MAX_DEPTH - 3, MAX_DEPTH + 40), json_values)


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.one_of(json_values, deep_values), st.one_of(json_values, deep_values))
def test_the_client_and_the_worker_find_the_same_problem(first: Any, second: Any) -> None:
    resource = {"resourceType": "Observation", "extension": [first], "note": second}
    cmd = command_with(resource)
    on_the_client = refusal(check_command, cmd)
    on_the_worker = refusal(check_json, to_json(cmd))
    assert on_the_client == on_the_worker


def test_nesting_past_the_parser_is_named_on_both_sides() -> None:
    cmd = command_with({"resourceType": "Observation", "extension": nested(220)})
    path = "resource.extension" + "".join(
        ".item" if level % 2 else "[0]" for level in range(MAX_DEPTH - 2)
    )
    assert refusal(check_command, cmd) == ("max_depth", path)
    with pytest.raises(ValueError, match="recursion limit"):  # what the worker saw before
        WriteCommand.model_validate_json(to_json(cmd))
    assert refusal(check_json, to_json(cmd)) == ("max_depth", path)


def test_nesting_past_the_serializer_is_named_by_the_client() -> None:
    cmd = command_with({"resourceType": "Observation", "extension": nested(400)})
    with pytest.raises(ValueError, match="serialization depth"):  # what start_workflow raised
        to_json(cmd)
    limit, path = refusal(check_command, cmd) or ("", "")
    assert limit == "max_depth" and path.startswith("resource.extension[0].item[0].item")


# --- what the worker's text check must get right ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b'{"a\\"[[[[": "\\\\", "b": "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"}',
    ],
)
def test_brackets_inside_strings_are_not_nesting(text: bytes) -> None:
    assert check_json(text) == json.loads(text)


def test_the_path_counts_array_items_and_keys() -> None:
    # element names (issue 17: a key that is not one is shown as "?")
    text = json.dumps({"code": [1, {"text": "x"}, {"note": nested(MAX_DEPTH)}]}).encode()
    with pytest.raises(LimitExceeded) as refused:
        check_json(text)
    assert refused.value.path.startswith("code[2].note[0].item[0].item")


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "' + b'\\"' * 500_000,  # a string cut short, full of escaped quotes
        b"[" * 300 + b'"' + b"\\" * 500_000,
        b"[" + b"0," * 500_000,
    ],
)
def test_hostile_text_is_checked_in_linear_time(text: bytes) -> None:
    """The check runs in the workflow's first task: Temporal fails a task (and retries it, for
    ever) that does not yield within 2 s. A backtracking string pattern took minutes here."""
    started = time.perf_counter()
    with pytest.raises(CommandRefused):
        check_json(text)
    assert time.perf_counter() - started < 1.5


def test_text_that_is_not_json_is_not_json() -> None:
    with pytest.raises(NotJson):
        check_json(b'{"tenant": "x", ')


def test_an_oversized_text_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(LimitExceeded) as refused:
        check_json(b"[" + b'"' + b"x" * (64 * MAX_COMMAND_BYTES) + b'"]')
    assert (refused.value.limit, refused.value.path) == ("max_command_bytes", "command")


# --- paths name elements, never values -------------------------------------------------------


def test_paths_are_fhirpath_style() -> None:
    assert element_path(["resource", "component", 1, "code", "coding", 0]) == (
        "resource.component[1].code.coding[0]"
    )
    assert element_path([]) == "command"
    assert element_path([0, 1]) == "command[0][1]"


@pytest.mark.parametrize("key", [CANARY, "Jane Doe", "x" * 70, "", "1abc", "a.b", "a[0]"])
def test_a_key_that_is_no_element_name_is_not_shown(key: str) -> None:
    assert element_path(["resource", key, "value"]) == "resource.?.value"


def test_a_long_name_is_refused_without_showing_it() -> None:
    cmd = command_with({"resourceType": "Observation", "subject": {CANARY * 4: 1}})
    assert refusal(check_command, cmd) == ("max_name_chars", "resource.subject.?")


# --- the limits leave room for real clinical data -----------------------------------------------


def test_a_long_clinical_note_is_within_the_limits() -> None:
    note = samples.clinical_note("p1", "Patient seen for follow-up. " * 3_000)  # ~80 KB text
    check_command(command_with(note))
    check_command(command_with(samples.blood_pressure("p1", 120, 80)))


def test_a_commands_validation_error_never_quotes_the_input() -> None:
    """Callers log exceptions: pydantic's text would show ``input_value=…``."""
    with pytest.raises(ValidationError) as invalid:
        WriteCommand(tenant=f"{CANARY} x", idempotency_key="k-1", resource={"note": CANARY})
    assert CANARY not in str(invalid.value) and CANARY not in repr(invalid.value)
