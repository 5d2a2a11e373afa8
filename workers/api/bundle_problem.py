"""The one error of a FHIR Bundle writeback cannot take as it is (workers/api/bundles.py).

It says where (``expression``, FHIRPath: ``Bundle.entry[2].request.method``), what kind of problem
(``code``, one of R4's IssueType codes) and what to do, and never quotes the Bundle: the message
may reach logs and exception text, where patient data must not, so it names element paths, codes
and limits only. ``issue`` is the same as an OperationOutcome issue, for the HTTP answer.
"""

from __future__ import annotations

from typing import Any, Literal

from adapters.errors import WritebackError

#: The R4 IssueType codes a Bundle problem is reported with.
IssueCode = Literal[
    "structure", "required", "value", "invalid", "not-supported", "not-found", "duplicate",
    "too-costly",
]  # fmt: skip


class BundleProblem(WritebackError, ValueError):
    """A Bundle that is not translated into writeback's commands: nothing is started."""

    def __init__(self, expression: str, code: IssueCode, message: str) -> None:
        self.expression = expression
        self.code: IssueCode = code
        super().__init__(f"{expression}: {message}")

    def issue(self) -> dict[str, Any]:
        """This problem as an OperationOutcome issue."""
        return {
            "severity": "error",
            "code": self.code,
            "diagnostics": str(self),
            "expression": [self.expression],
        }
