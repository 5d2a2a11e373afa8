"""The grammar of a reason: the only text about a failure that leaves the encrypted payloads.

A reason (a write's ``reason``, a step failure's message, the ledger's exchange outcome, a span's
status, a warning in the worker's log) is read by people who may not see the chart, and stored or
exported in plain text. So anything in it that came from outside — the caller's command, the
EHR's answer — must be one of these, and is dropped (shown as ``?``) otherwise:

==================  =====================================================================
piece               grammar
==================  =====================================================================
HTTP status         ``HTTP`` and three digits
error class         the taxonomy's names (activities/errors.py)
FHIR issue code     the R4 IssueType value set (``invalid``, ``processing``…)
detail code         digits (an EHR's own error code, ``59012``), or R4's ``MSG_…`` codes
element path        FHIRPath-like: ``Observation.component[1].code``, every name a *known*
                    element name (of the R4 models, or of the command's own fields):
                    a key the caller made up (``janeDoeMrn555``) is ``?`` wherever it is
==================  =====================================================================

EHR ``diagnostics`` and ``details.text`` never appear (servers echo submitted values there), and
every reason is capped at MAX_REASON_CHARS printable ASCII characters by ``safe_reason``, the gate
step failures pass through (activities/errors.py). tests/unit/test_reasons_grammar.py holds the
grammar to this.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from functools import cache
from pathlib import Path

#: The longest reason kept; the rest is cut (``...``): a hostile answer cannot grow a reason.
MAX_REASON_CHARS = 600
#: What a piece that is not in the grammar becomes.
DROPPED = "?"

#: R4 IssueType (valueset-issue-type.html).
ISSUE_TYPES = frozenset(
    [
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "security",
        "login",
        "unknown",
        "expired",
        "forbidden",
        "suppressed",
        "processing",
        "not-supported",
        "duplicate",
        "multiple-matches",
        "not-found",
        "deleted",
        "too-long",
        "code-invalid",
        "extension",
        "too-costly",
        "business-rule",
        "conflict",
        "transient",
        "lock-error",
        "no-store",
        "exception",
        "timeout",
        "incomplete",
        "throttled",
        "informational",
    ]
)
#: Detail codes shown: a vendor's numeric code (Epic's ``59012``), or one of R4's own
#: operation-outcome messages. Anything else an EHR puts there may be text it was sent.
_VENDOR_CODE = re.compile(r"\d{1,12}")
_R4_MESSAGE = re.compile(r"MSG_[A-Z0-9_]{1,40}")
R4_OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/operation-outcome"
#: What a name must look like before it is even looked up.
_NAME_SHAPE = re.compile(r"_?[a-z][A-Za-z0-9_]{0,62}")
_TYPE_SHAPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
#: One step of a FHIRPath-like path as an EHR writes it: ``name`` or ``name[3]``.
_STEP = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63})(?:\[(?P<index>\d{1,4})\])?")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


#: Every R4 model's name and element name, one a line (tests/unit/test_reasons_grammar.py checks
#: it against fhir.resources and says how to regenerate it): read, not computed, because
#: importing every R4 model takes seconds.
VOCABULARY_FILE = Path(__file__).with_name("fhir_element_names.txt")


@cache
def _vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """(element names, type names), read once per process."""
    words = VOCABULARY_FILE.read_text(encoding="ascii").split()
    return (
        frozenset(w for w in words if not w[0].isupper()),
        frozenset(w for w in words if w[0].isupper()),
    )


def _models_in(annotation: object) -> Iterable[type]:
    """The model classes an annotation names (fhir.resources wraps them in ``…Type`` markers)."""
    for arg in (annotation, *typing.get_args(annotation)):
        if arg is annotation:
            klass = getattr(arg, "get_model_klass", None)
            if klass is not None:
                yield klass()
            elif isinstance(arg, type):
                yield arg
        else:
            yield from _models_in(arg)


def field_names(*models: type) -> frozenset[str]:
    """The field names (and aliases) of pydantic models and of the models they hold: what a
    validation error's location may show besides R4 element names."""
    import pydantic

    names: set[str] = set()
    stack, seen = list(models), set()
    while stack:
        model = stack.pop()
        if model in seen or not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            continue
        seen.add(model)
        for field_name, info in model.model_fields.items():
            names.update(n for n in (field_name, info.alias) if n)
            stack.extend(_models_in(info.annotation))
    return frozenset(names)


def known_element_name(name: str, also: frozenset[str] = frozenset()) -> bool:
    """An element name of the R4 models we write (or one of ``also``: a command's fields)."""
    return name in also or (_NAME_SHAPE.fullmatch(name) is not None and name in _vocabulary()[0])


def known_type_name(name: str) -> bool:
    return _TYPE_SHAPE.fullmatch(name) is not None and name in _vocabulary()[1]


def element_path(parts: Iterable[str | int], root: str, also: frozenset[str] = frozenset()) -> str:
    """FHIRPath style, ``component[1].code.coding[0]`` relative to ``root`` (``root`` itself for
    the root): a name that is not a known element name is ``?``."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if known_element_name(part, also) else DROPPED
            path += f".{name}" if path else name
    return path if path and not path.startswith("[") else root + path


def fhir_path(text: object) -> str:
    """An EHR's ``expression``/``location`` as a path of known names; ``?`` if it is not one."""
    if not isinstance(text, str) or len(text) > 200:
        return DROPPED
    head, _, rest = text.partition(".")
    steps = rest.split(".") if rest else []
    if not known_type_name(head) and not known_element_name(head):
        return DROPPED
    for step in steps:
        match = _STEP.fullmatch(step)
        if match is None or not known_element_name(match["name"]):
            return DROPPED
    return text


def issue_code(value: object) -> str:
    return value if isinstance(value, str) and value in ISSUE_TYPES else DROPPED


def detail_code(coding: object) -> str:
    """A ``details.coding``'s code: digits, or an R4 operation-outcome message code."""
    if not isinstance(coding, dict) or not isinstance(code := coding.get("code"), str):
        return DROPPED
    if _VENDOR_CODE.fullmatch(code):
        return code
    r4 = coding.get("system") == R4_OUTCOME_SYSTEM
    return code if r4 and _R4_MESSAGE.fullmatch(code) else DROPPED


def safe_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """The gate every reason passes: printable ASCII (anything else is ``?``), one line, at most
    ``limit`` characters."""
    flat = _UNPRINTABLE.sub(DROPPED, " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
