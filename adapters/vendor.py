"""What a vendor adapter is: one object per EHR vendor that says everything vendor-specific about
writing to it — the rules checked before anything is sent, how a create is planned (a FHIR create,
or a call to the vendor's own API and the FHIR that call will show), the query parameters every
FHIR call carries, whether the vendor can change a stored resource (update, withdraw), and how it
answers a create that is already on file (Epic's 59189).

Each vendor implements :class:`VendorAdapter` once, in its own module (adapters/epic.py, ...), and
is registered with one line in adapters/registry.py. No code outside the adapters compares vendor
names: it asks the tenant's adapter, ``tenant.adapter()``. README: "Adding a vendor".

This module imports no adapter and no tenant model (both import it); the registry is looked up
when a name is first resolved, by which time every adapter module has been imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from adapters.families import Family, family_of
from adapters.problems import Problem

if TYPE_CHECKING:
    from adapters.proprietary import VendorCall
    from adapters.tenants import Tenant


class UnsupportedVendor(Exception):
    """The tenant's vendor has no write path for this (e.g. no FHIR update) in this version."""


class Vendor(str):
    """A vendor's name as tenant files spell it (``vendor = "epic"``). Any registered adapter's
    name is valid (adapters/registry.py): the set is open, so adding a vendor edits no list here.
    The built-in vendors are named as constants (``Vendor.EPIC``) for code and tests."""

    __slots__ = ()

    EPIC: ClassVar[Vendor]
    CERNER: ClassVar[Vendor]
    ATHENA: ClassVar[Vendor]
    VERADIGM: ClassVar[Vendor]
    GENERIC_R4: ClassVar[Vendor]

    @property
    def value(self) -> str:
        """The name as a plain string (what an enum member's ``value`` was)."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Vendor({self.value!r})"

    @classmethod
    def registered(cls, name: str) -> Vendor:
        """The registry's own key for ``name``, so that ``tenant.vendor is Vendor.EPIC`` holds;
        ValueError when no adapter is registered under it."""
        for vendor in _registry():
            if vendor == name:
                return vendor
        raise ValueError(f"unknown vendor '{name}': one of {', '.join(sorted(_registry()))}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls.registered,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str.__str__),
        )


Vendor.EPIC = Vendor("epic")
Vendor.CERNER = Vendor("cerner")
Vendor.ATHENA = Vendor("athena")
Vendor.VERADIGM = Vendor("veradigm")
Vendor.GENERIC_R4 = Vendor("generic_r4")


class VendorApiSettings(BaseModel):
    """Where a vendor's proprietary write API lives (``vendor_api`` in the tenant file). Each
    vendor with such an API has its own model, a subclass naming the fields it needs (athenaOne:
    adapters/athena.py, Veradigm Unity: adapters/veradigm.py). ``kind`` says which model a table
    is; a table without one is the tenant's vendor's (tenant files written before there were
    several models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(description="the vendor whose API this is; default: the tenant's vendor")
    base_url: str = Field(pattern=r"^https?://")


class VendorAdapter(Protocol):
    """Everything vendor-specific about writing to one EHR vendor (see the module docstring)."""

    @property
    def vendor(self) -> Vendor:
        """The name tenant files use for this vendor."""

    @property
    def families(self) -> frozenset[Family]:
        """The clinical families this vendor's write API creates, from its public docs
        (docs/vendors.md, "What each vendor writes"). A write of any other family is refused
        before any request (:func:`family_refusal`): never an EHR 4xx the product could predict."""

    @property
    def writes_fhir(self) -> bool:
        """Creates and updates go over the FHIR API; when False, :meth:`plan` makes each create
        a call to the vendor's own API, and there is no update."""

    @property
    def updates(self) -> bool:
        """The vendor's write API can change a stored resource (an update, so a withdrawal:
        adapters/compensation.py); a create-only vendor cannot compensate a write."""

    @property
    def holding_tank_types(self) -> frozenset[str]:
        """Types the vendor files for review: readable by id, absent from search until reviewed
        (no quiet period can prove such a create did not land)."""

    @property
    def api_settings(self) -> type[VendorApiSettings] | None:
        """The model of this vendor's ``vendor_api`` table; None when it has no own API."""

    @property
    def dev_personality(self) -> str | None:
        """The sandbox personality the dev stack must give this vendor's tenants (the sandbox
        serves a vendor API only under its vendor's personality); None: the sandbox's default."""

    def create_problems(self, resource: dict[str, Any]) -> list[Problem]:
        """Why the vendor would refuse this create (empty when it would take it)."""

    def adapted(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource as this vendor's create needs it (``resource`` itself when unchanged)."""

    def plan(self, tenant: Tenant, body: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
        """For a vendor that does not write FHIR: the call that writes ``body``, and the FHIR
        the vendor will show for it. Raises ResourceInvalid or UnsupportedVendor."""

    def vendor_id(self, call: VendorCall, answer: Any) -> str:
        """The vendor's id of what ``call`` stored, read from its answer; VendorRefused when the
        answer is not a stored record."""

    def fhir_params(self, tenant: Tenant) -> dict[str, str]:
        """Query parameters every FHIR call to this tenant must carry."""

    def refused_as_on_file(self, outcome: Any) -> bool:
        """Is this error answer to a create the vendor saying the same reading is already on
        file (Epic's 400 / 59189)? The write step then looks for it instead of failing."""

    def same_reading_slot(self, ours: dict[str, Any], stored: dict[str, Any]) -> bool:
        """Is ``stored`` in the slot a refusal "already on file" is about, whatever its value?"""


class FhirVendor:
    """A vendor that writes plain FHIR R4 and can update: every default of the protocol. Vendors
    override what differs (adapters/epic.py, cerner.py; athena.py and veradigm.py as
    :class:`ApiVendor`)."""

    families: frozenset[Family] = frozenset(Family)
    writes_fhir = True
    updates = True
    holding_tank_types: frozenset[str] = frozenset()
    api_settings: type[VendorApiSettings] | None = None
    dev_personality: str | None = None

    def __init__(self, vendor: Vendor) -> None:
        self._vendor = vendor

    @property
    def vendor(self) -> Vendor:
        return self._vendor

    def create_problems(self, resource: dict[str, Any]) -> list[Problem]:
        return []

    def adapted(self, resource: dict[str, Any]) -> dict[str, Any]:
        return resource

    def plan(self, tenant: Tenant, body: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
        raise UnsupportedVendor(f"vendor {self.vendor} has no FHIR write path yet")

    def vendor_id(self, call: VendorCall, answer: Any) -> str:
        raise UnsupportedVendor(f"vendor {self.vendor} has no proprietary write API")

    def fhir_params(self, tenant: Tenant) -> dict[str, str]:
        return {}

    def refused_as_on_file(self, outcome: Any) -> bool:
        return False

    def same_reading_slot(self, ours: dict[str, Any], stored: dict[str, Any]) -> bool:
        return False


class ApiVendor(FhirVendor):
    """A vendor whose clinical writes go through its own API (athenaOne, Veradigm Unity): FHIR
    only to read back, no update. Subclasses implement ``plan`` and ``vendor_id`` and name their
    ``api_settings`` and ``families``."""

    #: none until the subclass names what its API writes (a plain FHIR server writes them all)
    families: frozenset[Family] = frozenset()
    writes_fhir = False
    updates = False


def family_refusal(adapter: VendorAdapter, resource: dict[str, Any]) -> Problem | None:
    """Why ``adapter``'s vendor cannot take ``resource``'s family (None when it can, or when the
    resource is of no family: what such a type may be is the validation's to say). Names the
    family and the vendor, never a value."""
    family = family_of(resource)
    if family is None or family in adapter.families:
        return None
    return Problem(
        "resourceType", f"family '{family.value}' is not written to vendor '{adapter.vendor.value}'"
    )


def adapter_for(vendor: str) -> VendorAdapter:
    """The registered adapter of ``vendor``; ValueError when there is none."""
    return _registry()[Vendor.registered(vendor)]


def _registry() -> dict[Vendor, VendorAdapter]:
    # imported here, not at the top: the registry imports every adapter module, and those import
    # the tenant model, which imports this module
    from adapters.registry import VENDORS

    return VENDORS
