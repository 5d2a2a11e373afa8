"""Any FHIR R4 server: plain R4 creates and updates, nothing refused beyond what R4 refuses. What
such a server can do (conditional create, If-Match, PATCH...) is the tenant's ``capabilities``."""

from __future__ import annotations

from adapters.vendor import FhirVendor, Vendor

ADAPTER = FhirVendor(Vendor.GENERIC_R4)
