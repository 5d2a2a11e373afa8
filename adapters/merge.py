"""Narrow-delta merge for version conflicts: when the EHR holds a newer version than the one the
user edited, our change can still be applied if it touches other elements than theirs did.

Granularity is the top-level element (``valueQuantity``, ``status``, ``note``, …): coarse enough to
never splice half of a clinical value into another, fine enough for the common case of a
clinician annotating while a device corrects a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonpointer import JsonPointer

from adapters.fhir_r4 import SERVER_MANAGED

_MISSING = object()


def changed_elements(base: dict[str, Any], new: dict[str, Any]) -> set[str]:
    keys = (set(base) | set(new)) - SERVER_MANAGED
    return {key for key in keys if base.get(key, _MISSING) != new.get(key, _MISSING)}


@dataclass(frozen=True)
class MergeResult:
    merged: dict[str, Any] | None  # None when the changes overlap
    ours: frozenset[str]
    theirs: frozenset[str]

    @property
    def overlapping(self) -> frozenset[str]:
        return self.ours & self.theirs


def three_way_merge(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> MergeResult:
    """Apply our changes (base -> ours) onto theirs (the EHR's current version), whole-resource:
    start from the latest version (Oracle Health treats an omitted element in a PUT as deleted)."""
    our_changes = changed_elements(base, ours)
    their_changes = changed_elements(base, theirs)
    overlap = {k for k in our_changes & their_changes if ours.get(k) != theirs.get(k)}
    if overlap:
        return MergeResult(None, frozenset(our_changes), frozenset(their_changes))
    merged = {k: v for k, v in theirs.items() if k not in our_changes}
    merged.update({k: ours[k] for k in our_changes if k in ours})
    return MergeResult(merged, frozenset(our_changes), frozenset(their_changes))


def _pointer(key: str) -> str:
    return str(JsonPointer.from_parts([key]).path)


def json_patch(current: dict[str, Any], desired: dict[str, Any]) -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``current`` into ``desired``, element by element: the narrow
    delta a PATCH sends instead of the whole resource."""
    operations: list[dict[str, Any]] = []
    for key in sorted(changed_elements(current, desired)):
        if key in desired:
            operations.append({"op": "add", "path": _pointer(key), "value": desired[key]})
        else:
            operations.append({"op": "remove", "path": _pointer(key)})
    return operations


def guarded_patch(
    current: dict[str, Any], desired: dict[str, Any], version: str | None = None
) -> list[dict[str, Any]]:
    """``json_patch(current, desired)`` behind RFC 6902 ``test`` operations on exactly the
    elements it changes, at their values in ``current`` (what we read): the EHR refuses the whole
    patch when someone changed one of them since, and a change to other elements does not stand
    in the way. A ``test`` cannot say "absent", so an element the patch adds (absent when we
    read) is guarded by ``version`` instead — a test of ``meta.versionId`` — when one is given
    (the caller sends no If-Match)."""
    changed = changed_elements(current, desired)
    tests = [
        {"op": "test", "path": _pointer(key), "value": current[key]}
        for key in sorted(changed)
        if key in current
    ]
    if version is not None and changed - set(current):
        tests.insert(0, {"op": "test", "path": "/meta/versionId", "value": version})
    return tests + json_patch(current, desired)
