"""The family x vendor table of the README ("What it writes"), made from the vendor adapters: what
each vendor's write API creates is its adapter's ``families`` (adapters/vendor.py), and whether it
goes over FHIR or the vendor's own API is its ``writes_fhir``. A unit test compares the README's
table with :func:`matrix_table`, so the README cannot say what the adapters do not.

``python -m workers.family_matrix`` prints the table to paste into the README.
"""

from __future__ import annotations

from enum import StrEnum

from adapters.families import RESOURCE_TYPE, Family
from adapters.registry import VENDORS
from adapters.vendor import VendorAdapter


class Support(StrEnum):
    """How a vendor takes a family."""

    FHIR = "FHIR create"
    VENDOR_API = "vendor API"
    UNSUPPORTED = "unsupported"


def support(adapter: VendorAdapter, family: Family) -> Support:
    if family not in adapter.families:
        return Support.UNSUPPORTED
    return Support.FHIR if adapter.writes_fhir else Support.VENDOR_API


def family_matrix() -> dict[Family, dict[str, Support]]:
    """For every family, how each registered vendor (by its tenant-file name) takes it."""
    return {
        family: {str(vendor): support(adapter, family) for vendor, adapter in VENDORS.items()}
        for family in Family
    }


def matrix_table() -> str:
    """The matrix as the README's Markdown table."""
    vendors = [str(vendor) for vendor in VENDORS]
    lines = [
        "| family (resource type) | " + " | ".join(f"`{name}`" for name in vendors) + " |",
        "|---|" + "---|" * len(vendors),
    ]
    for family, row in family_matrix().items():
        cells = " | ".join(row[name].value for name in vendors)
        lines.append(f"| {family.value} ({RESOURCE_TYPE[family]}) | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix_table())
