"""Tenant ids: opaque tokens (they are in every workflow id, plain text on the Temporal server),
and never a name the payload keys keep for themselves.

``system`` owns the payloads that belong to no tenant and ``root`` is the key file's root
keyring (workers/keys.py, workers/codec.py): a tenant named either, in any case, would be handed
keys and payloads that are not its own, so a tenant file naming one is refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

RESERVED_TENANT_IDS = frozenset({"system", "root"})


def _not_reserved(value: str) -> str:
    if value.casefold() in RESERVED_TENANT_IDS:
        message = "'{id}' is reserved (the payloads and keys of no tenant)"
        raise PydanticCustomError("reserved_tenant_id", message, {"id": value})
    return value


#: A tenant's id, as a tenant file gives it.
TenantId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"), AfterValidator(_not_reserved)
]
