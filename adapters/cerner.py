"""Oracle Health (Cerner) Millennium: what its FHIR create needs beyond plain R4.

Source (docs/vendors.md quirk 11): fhir.cerner.com/millennium/r4, "DocumentReference create" —
exactly one ``content`` entry, and the attachment's ``contentType`` states a ``charset``. XHTML is
stored converted to RTF; read-back compares notes as text (adapters/clinical_notes.py).
"""

from __future__ import annotations

import copy
from typing import Any

from adapters.clinical_notes import first_attachment
from adapters.families import Family, category_codes
from adapters.problems import Problem
from adapters.vendor import FhirVendor, Vendor

#: The families Millennium R4 documents a create for (docs/vendors.md quirk 17): Observation
#: (laboratory and vital-signs only), Condition (problems and diagnoses), AllergyIntolerance,
#: DocumentReference, MedicationRequest, Procedure. Immunization and Goal are search-only there,
#: MedicationStatement and CarePlan are not Millennium R4 writes. The referral, task,
#: communication and provenance families of the sagas are kept as the sandbox had them.
FAMILIES = frozenset(
    {
        Family.VITAL_SIGN,
        Family.LABORATORY_RESULT,
        Family.CLINICAL_NOTE,
        Family.PROBLEM,
        Family.ENCOUNTER_DIAGNOSIS,
        Family.ALLERGY,
        Family.MEDICATION_REQUEST,
        Family.PROCEDURE,
        Family.REFERRAL,
        Family.TASK,
        Family.COMMUNICATION,
        Family.PROVENANCE,
    }
)


#: "Create a condition": "only conditions with a category of problem-list-item or
#: encounter-diagnosis are supported" (a health concern is a problem family of its own there).
CONDITION_CATEGORIES = frozenset({"problem-list-item", "encounter-diagnosis"})


def create_problems(resource: dict[str, Any]) -> list[Problem]:
    """Why Oracle Health would refuse this create (empty when it would take it)."""
    categories = set(category_codes(resource))
    if resource.get("resourceType") == "Condition" and categories - CONDITION_CATEGORIES:
        return [Problem("category", "Oracle Health creates problem-list items and diagnoses")]
    if (
        resource.get("resourceType") == "DocumentReference"
        and len(resource.get("content") or []) != 1
    ):
        return [Problem("content", "Oracle Health takes exactly one content entry")]
    return []


def adapted(resource: dict[str, Any]) -> dict[str, Any]:
    """A note's content type with the charset Oracle Health requires (UTF-8 unless stated)."""
    ctype = first_attachment(resource).get("contentType")
    if resource.get("resourceType") != "DocumentReference" or not isinstance(ctype, str):
        return resource
    if "charset=" in ctype.replace(" ", "").lower():
        return resource
    result = copy.deepcopy(resource)
    result["content"][0]["attachment"]["contentType"] = f"{ctype}; charset=utf-8"
    return result


class OracleHealth(FhirVendor):
    """Oracle Health Millennium: FHIR creates and updates, one note content with its charset."""

    families = FAMILIES

    def create_problems(self, resource: dict[str, Any]) -> list[Problem]:
        return create_problems(resource)

    def adapted(self, resource: dict[str, Any]) -> dict[str, Any]:
        return adapted(resource)


ADAPTER = OracleHealth(Vendor.CERNER)
