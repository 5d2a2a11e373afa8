"""Recognising schema drift in what an EHR answers: its contract changed under our feet.

* A 422 whose OperationOutcome issue is ``required`` or ``code-invalid`` *with a field path*
  names a field the server now demands (or a binding it now enforces): everything we send has
  passed R4 and US Core validation first, so the difference is the server's, not ours.
* A read-back that differs from what we sent only where we sent extensions means the server
  dropped them on store (an extension it no longer accepts).

Both are ``schema_drift``: not retryable, and the message names the fields.
"""

from __future__ import annotations

import re
from typing import Any

DRIFT_ISSUE_CODES = frozenset({"required", "code-invalid"})
_EXTENSION_PATH = re.compile(r"(^|\.)(extension|modifierExtension)(\[\d+\])?$")


def drift_fields(status: int, outcome: dict[str, Any] | None) -> list[str]:
    """The field paths a 422 OperationOutcome blames on a changed contract (empty: not drift)."""
    if status != 422 or not outcome or outcome.get("resourceType") != "OperationOutcome":
        return []
    fields: list[str] = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, dict) and issue.get("code") in DRIFT_ISSUE_CODES:
            fields += [str(path) for path in issue.get("expression") or []]
    return fields


def dropped_extensions(differences: list[str]) -> list[str]:
    """The differences, when every one of them is an extension the server did not keep."""
    if differences and all(_EXTENSION_PATH.search(path) for path in differences):
        return differences
    return []
