"""Adapter versions: behaviour changes that could turn yesterday's accepted write into today's
rejection roll out per tenant. Each tenant pins ``adapter_version`` in its config (default: the
latest); onboarding a tenant on an older pin and moving the pin is the rollout flag.

The version in force is recorded in each write's history (the validate step's result), so an
in-flight write keeps the behaviour it started with across worker upgrades and config changes.

* ``1``: R4 structure + US Core vital signs (LOINC code, UCUM unit, BP components);
* ``2``: adds clinical semantics (adapters/clinical_semantics.py): plausible ranges, clinical
  time not in the future and inside the encounter, encounter required by tenant policy.
"""

from __future__ import annotations

from enum import StrEnum


class AdapterVersion(StrEnum):
    V1 = "1"
    V2 = "2"

    @property
    def checks_clinical_semantics(self) -> bool:
        return self >= AdapterVersion.V2


LATEST_ADAPTER_VERSION = AdapterVersion.V2
