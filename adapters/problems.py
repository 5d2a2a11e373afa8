"""What is wrong with a resource, field by field, in words that carry no patient data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

#: What an object key must look like to be shown in a path (FHIR element names, our field names):
#: any other key is shown as ``?``, since a key can carry anything.
_ELEMENT_NAME = re.compile(r"_?[a-z][A-Za-z0-9_]{0,62}")


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
    for the root."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if _ELEMENT_NAME.fullmatch(part) else "?"
            path += f".{name}" if path else name
    return path if path and not path.startswith("[") else root + path


def validation_problems(error: ValidationError, root: str) -> list[Problem]:
    """A pydantic validation error as path and error code: pydantic's messages may quote the
    input (fhir.resources: "but got ``…``"), its error types never do."""
    return [
        Problem(element_path(err["loc"], root), err["type"])
        for err in error.errors(include_input=False, include_url=False, include_context=False)
    ]
