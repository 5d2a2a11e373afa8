"""Every vendor writeback knows, one registration line each: the name tenant files use (a
``Vendor``) and the adapter that implements adapters/vendor.py's ``VendorAdapter`` for it.
Adding a vendor: its adapter module, its line here, its sandbox personality (README: "Adding a
vendor")."""

from __future__ import annotations

from adapters import athena, cerner, epic, generic_r4, veradigm
from adapters.vendor import Vendor, VendorAdapter

VENDORS: dict[Vendor, VendorAdapter] = {
    Vendor.EPIC: epic.ADAPTER,
    Vendor.CERNER: cerner.ADAPTER,
    Vendor.ATHENA: athena.ADAPTER,
    Vendor.VERADIGM: veradigm.ADAPTER,
    Vendor.GENERIC_R4: generic_r4.ADAPTER,
}
