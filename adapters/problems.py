"""What is wrong with a resource, field by field, in words that carry no patient data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from adapters import reasons


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ResourceInvalid(Exception):
    """The resource cannot be written as it is; ``problems`` says why, field by field.

    Problems name the field path and what is wrong with it, never the field's value: the message
    travels into workflow history, logs and exception text, where PHI must not appear.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def element_path(parts: Iterable[str | int], root: str) -> str:
    """FHIRPath style: ``component[1].code.coding[0]``, relative to ``root``; ``root`` itself
    for the root. A key that is not a known element name is ``?`` (adapters/reasons.py)."""
    return reasons.element_path(parts, root)


def validation_problems(
    error: ValidationError, root: str, also: frozenset[str] = frozenset()
) -> list[Problem]:
    """A pydantic validation error as path and error code: pydantic's messages may quote the
    input (fhir.resources: "but got ``…``"), its error types never do; and its locations name
    the input's own keys (``extra_forbidden``), so they show known element names only (or one
    of ``also``: the fields of the model validated)."""
    return [
        Problem(reasons.element_path(err["loc"], root, also), err["type"])
        for err in error.errors(include_input=False, include_url=False, include_context=False)
    ]
