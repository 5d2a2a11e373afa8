"""The grammar of reasons (adapters/reasons.py): what an outside party's text becomes in one."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import fhir.resources.R4B
import httpx
import pydantic
from hypothesis import given
from hypothesis import strategies as st

from activities.fhir_http import outcome_summary
from adapters import reasons

#: What an outcome summary may be: ``HTTP nnn`` and bracketed issues of grammar pieces.
_PIECE = r"(?:\?|[a-z-]+|[A-Za-z0-9][A-Za-z0-9._-]{0,31}|[A-Za-z_][A-Za-z0-9_.\[\]]*)"
SUMMARY = re.compile(rf"HTTP \d{{3}}(?: \[{_PIECE}(?: {_PIECE})*(?:; {_PIECE}(?: {_PIECE})*)*\])?")


def r4_names() -> list[str]:
    """Every R4 (R4B) model's name and every element name (field and alias): the vocabulary file,
    as fhir.resources has it (~3 s). Regenerate the file with
    ``python -c 'from tests.unit.test_reasons_grammar import write; write()'`` after an upgrade."""
    names: set[str] = set()
    for module in pkgutil.iter_modules(fhir.resources.R4B.__path__):
        loaded = importlib.import_module(f"fhir.resources.R4B.{module.name}")
        for value in vars(loaded).values():
            model = isinstance(value, type) and issubclass(value, pydantic.BaseModel)
            if model and value.__module__ == loaded.__name__:
                names.add(value.__name__)
                names.update(reasons.field_names(value))
    return sorted(n for n in names if re.fullmatch(r"_?[A-Za-z][A-Za-z0-9_]{0,62}", n))


def write() -> None:
    Path(reasons.VOCABULARY_FILE).write_text("\n".join(r4_names()) + "\n")


def test_the_vocabulary_file_is_r4s() -> None:
    assert Path(reasons.VOCABULARY_FILE).read_text().split() == r4_names()


def test_paths_show_known_element_names_only() -> None:
    assert reasons.element_path(["component", 1, "code"], "Observation") == "component[1].code"
    assert reasons.element_path(["item", 0, "janeDoeMrn555"], "x") == "item[0].?"
    assert reasons.element_path(["Jane Doe MRN 555"], "x") == "?"
    assert reasons.element_path(["tenant"], "command", frozenset({"tenant"})) == "tenant"
    assert reasons.fhir_path("Observation.component[1].code") == "Observation.component[1].code"
    made_up = ("Observation.janeDoe", "Patient.name.where(given='Jane')", "Jane", 7, "x" * 300)
    for hostile in made_up:
        assert reasons.fhir_path(hostile) == "?"


def test_codes_follow_their_value_sets() -> None:
    assert reasons.issue_code("invalid") == "invalid"
    assert reasons.issue_code("Jane Doe") == reasons.issue_code(None) == "?"
    assert reasons.detail_code({"code": "59012"}) == "59012"
    r4 = {"system": reasons.R4_OUTCOME_SYSTEM, "code": "MSG_PARAM_INVALID"}
    assert reasons.detail_code(r4) == "MSG_PARAM_INVALID"
    for made_up in ("MRN 555 Jane", "janeDoe", "MSG_JANE"):
        assert reasons.detail_code({"code": made_up}) == "?"


def test_safe_reason_is_one_capped_printable_line() -> None:
    assert reasons.safe_reason("a\nb\t c") == "a b c"
    assert reasons.safe_reason("Zoë") == "Zo?"
    long = reasons.safe_reason("x" * 10_000)
    assert len(long) == reasons.MAX_REASON_CHARS and long.endswith("...")


_text = st.text(max_size=80)
_issue = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(_text, st.sampled_from(sorted(reasons.ISSUE_TYPES))),
        "diagnostics": _text,
        "expression": st.one_of(_text, st.lists(_text, max_size=4)),
        "details": st.one_of(
            _text,
            st.fixed_dictionaries(
                {"text": _text, "coding": st.lists(st.fixed_dictionaries({"code": _text}))}
            ),
        ),
    },
)


@given(st.lists(st.one_of(_issue, _text), max_size=8), st.integers(400, 599))
def test_an_outcome_summary_is_in_the_grammar_whatever_the_ehr_says(
    issues: list[object], status: int
) -> None:
    body = {"resourceType": "OperationOutcome", "issue": issues}
    summary = outcome_summary(httpx.Response(status, json=body))
    assert SUMMARY.fullmatch(summary), summary
    assert len(summary) <= reasons.MAX_REASON_CHARS
