"""A Bundle entry's references, in the forms writeback's commands carry (workers/api/bundles.py).

FHIR's rules for references inside a Bundle (R4, RESTful API: transaction processing rules),
and what each becomes:

- ``urn:uuid:…``, the ``fullUrl`` of another entry: in a transaction, the saga's placeholder
  ``saga:<step>`` of an *earlier* entry (the saga puts in the id the EHR assigned once that step is
  verified, workflows/saga_contract.py). An entry later than the one referring, the entry itself,
  or a ``fullUrl`` no entry has is an error. In a batch, any such reference is an error: batch
  entries are independent of each other.
- a conditional reference, ``Type?identifier=system|value``: FHIR resolves it by that search, and
  fails the Bundle on no match or several. The identity crosswalk of every write does exactly this
  for ``Type/internal:value`` (activities/crosswalk.py: a known mapping, else a search for
  ``Type?identifier={the tenant's crosswalk system}|value`` that must find exactly one), so that is
  what it becomes, where it searches the tenant's crosswalk identifier system for a type the
  tenant crosswalks. Any other search (another system, other parameters) is ``not-supported``:
  writeback does not guess which record a search means.
- ``saga:…``: writeback's own placeholder, never a FHIR reference: refused, so that a Bundle cannot
  name a step by it.
- anything else (``Patient/123``, ``Patient/internal:7``, ``#contained``, an absolute URL) is
  passed on as it is, for the write's own validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from adapters.internal_refs import ID_PATTERN
from adapters.reasons import element_path
from adapters.tenants import CrosswalkSettings
from workers.api.bundle_problem import BundleProblem
from workflows.input_limits import MAX_DEPTH
from workflows.saga_contract import STEP_REFERENCE

BundleKind = Literal["transaction", "batch"]
#: The only fullUrl a created entry may have: FHIR's temporary id for a resource not yet created.
FULL_URL = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
#: Any URN: in a Bundle, it names another entry by its fullUrl, or nothing.
_URN = "urn:"
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def step_name(index: int) -> str:
    """A transaction's ``Bundle.entry[index]`` is the saga's step ``e{index}``."""
    return f"e{index}"


@dataclass(frozen=True)
class BundleReferences:
    """Translates the references of one Bundle's entries; ``full_urls`` maps each entry's
    ``fullUrl`` to the entry's index."""

    kind: BundleKind
    full_urls: dict[str, int]
    crosswalk: CrosswalkSettings

    def translated(self, index: int, resource: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``Bundle.entry[index].resource`` with writeback's forms of its references."""
        root = f"Bundle.entry[{index}].resource"
        result = self._walk(index, resource, root, [])
        assert isinstance(result, dict)
        return result

    def _walk(self, index: int, value: Any, root: str, parts: list[str | int]) -> Any:
        if len(parts) > MAX_DEPTH:  # over the commands' limit anyway: never as deep as Python
            where = f"{root}.{element_path(parts, root='')}"
            raise BundleProblem(where, "too-costly", f"max_depth exceeded (limit {MAX_DEPTH})")
        if isinstance(value, list):
            return [self._walk(index, item, root, [*parts, n]) for n, item in enumerate(value)]
        if not isinstance(value, dict):
            return value
        out = {key: self._walk(index, item, root, [*parts, key]) for key, item in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str):
            path = f"{root}.{element_path([*parts, 'reference'], root='')}"
            out["reference"] = self._reference(index, reference, path)
        return out

    def _reference(self, index: int, reference: str, path: str) -> str:
        if reference.startswith(STEP_REFERENCE):
            raise BundleProblem(
                path, "invalid", "not a FHIR reference: refer to another entry by its fullUrl"
            )
        if reference.startswith(_URN):
            return self._to_entry(index, reference, path)
        if "?" in reference:
            return self._conditional(reference, path)
        return reference

    def _to_entry(self, index: int, reference: str, path: str) -> str:
        target = self.full_urls.get(reference)
        if target is None:
            raise BundleProblem(
                path, "not-found", "no entry of the Bundle has this fullUrl (urn:uuid:…)"
            )
        if self.kind == "batch":
            raise BundleProblem(
                path,
                "invalid",
                f"refers to Bundle.entry[{target}]: the entries of a batch are independent "
                "and must not refer to each other; send a transaction to write them as one unit",
            )
        if target >= index:
            which = "itself" if target == index else f"Bundle.entry[{target}], a later entry"
            raise BundleProblem(
                path,
                "invalid",
                f"refers to {which}: an entry of a transaction may refer only to the entries "
                "before it; put the entry it refers to first",
            )
        return f"{STEP_REFERENCE}{step_name(target)}"

    def _conditional(self, reference: str, path: str) -> str:
        """``Type?identifier=system|value`` → ``Type/internal:value``, where the crosswalk
        resolves it as FHIR says (see the module's docstring)."""
        resource_type, _, query = reference.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        name, search = params[0] if len(params) == 1 else ("", "")
        system, _, value = search.partition("|")
        if (
            _TYPE.fullmatch(resource_type) is None
            or name != "identifier"
            or system != self.crosswalk.identifier_system
            or resource_type not in self.crosswalk.types
        ):
            raise BundleProblem(
                path,
                "not-supported",
                "a conditional reference is resolved only in the form "
                f"Type?identifier={self.crosswalk.identifier_system}|<internal id>, for the "
                f"types this tenant crosswalks ({', '.join(self.crosswalk.types)}); refer to "
                "other records by their id in the EHR",
            )
        if ID_PATTERN.fullmatch(value) is None:
            raise BundleProblem(
                path,
                "not-supported",
                "the identifier value of a conditional reference must be an internal id "
                "(1 to 64 of A-Z a-z 0-9 - .)",
            )
        return f"{resource_type}/internal:{value}"
