"""Search attributes of a write: what operators filter on in the Web UI and ``writeback review``.

Values are enums and tenant ids only: never patient data (the server stores them in plain text).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

STATE = SearchAttributeKey.for_keyword("WritebackState")
TENANT = SearchAttributeKey.for_keyword("WritebackTenant")
VENDOR = SearchAttributeKey.for_keyword("WritebackVendor")
RESOURCE_TYPE = SearchAttributeKey.for_keyword("WritebackResourceType")
ERROR_CLASS = SearchAttributeKey.for_keyword("WritebackErrorClass")
URGENCY = SearchAttributeKey.for_keyword("WritebackUrgency")
#: When the write last started waiting for a person (kept afterwards: filter on the state too).
WAITING_SINCE = SearchAttributeKey.for_datetime("WritebackWaitingSince")

#: States written to ``WritebackState`` as they are reached. The steps in between (validated,
#: authorized, acknowledged) last milliseconds: they travel with the next published state, which
#: saves a history event and a visibility write each (the status query always has them all).
PUBLISHED_STATES = frozenset(
    {
        "in_flight",
        "verified",
        "reconciled",
        "pending_confirmation",
        "conflict",
        "mismatch",
        "rejected",
        "compensated",
        "compensation_failed",
        "abandoned",
    }
)

ALL = (STATE, TENANT, VENDOR, RESOURCE_TYPE, ERROR_CLASS, URGENCY, WAITING_SINCE)


def type_name(key: SearchAttributeKey[Any]) -> str:
    """The name ``temporal server start-dev --search-attribute NAME=TYPE`` expects."""
    return {"DATETIME": "Datetime", "KEYWORD": "Keyword"}[key.indexed_value_type.name]
