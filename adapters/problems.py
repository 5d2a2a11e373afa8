"""What is wrong with a resource, field by field, in words that carry no patient data."""

from __future__ import annotations

from dataclasses import dataclass


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
