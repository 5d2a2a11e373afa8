"""The product's metrics: names, units and labels in one place (README, "Operating it").

Labels are ``tenant``, ``vendor``, ``resource_type``, ``state`` and ``error_class`` only: tokens
from configuration and enums, never patient data, resource ids or free text.

Instruments come from the global OpenTelemetry meter provider (``workers.telemetry`` configures
it; without it they are no-ops), wrapped by Temporal's ``ReplaySafeMeterProvider``: a workflow
replaying its history on another worker does not count what it counted the first time.
"""

from __future__ import annotations

from opentelemetry import metrics
from temporalio.contrib.opentelemetry import ReplaySafeMeterProvider

_meter = ReplaySafeMeterProvider(metrics.get_meter_provider()).get_meter("writeback")

#: Every metric's name, in the order the README lists them.
NAMES: list[str] = []


def _counter(name: str, unit: str, description: str) -> metrics.Counter:
    NAMES.append(name)
    return _meter.create_counter(name, unit=unit, description=description)


def _histogram(name: str, unit: str, description: str) -> metrics.Histogram:
    NAMES.append(name)
    return _meter.create_histogram(name, unit=unit, description=description)


WRITES = _counter(
    "writeback.writes",
    "{write}",
    "Writes settling into a state (state); a write that waits and is later verified "
    "counts once for each",
)
VALIDATION_REJECTIONS = _counter(
    "writeback.validation.rejections",
    "{write}",
    "Writes rejected by validation (ours or the EHR's 400/422)",
)
RETRIES = _counter(
    "writeback.retries",
    "{attempt}",
    "EHR write attempts retried, by the error class of the failed attempt",
)
AMBIGUOUS_OUTCOMES = _counter(
    "writeback.ambiguous_outcomes",
    "{write}",
    "Writes that had a sent-but-unanswered attempt, by the state they settled in",
)
CONFLICTS = _counter("writeback.conflicts", "{write}", "Updates that entered conflict")
DUPLICATE_DETECTIONS = _counter(
    "writeback.duplicate_detections",
    "{write}",
    "A copy already in the EHR: joined instead of re-created (state=acknowledged) "
    "or several copies, waiting for a person (state=pending_confirmation)",
)
RECONCILIATION_MISMATCHES = _counter(
    "writeback.reconciliation.mismatches",
    "{resource}",
    "What we wrote and what the EHR holds differ (error_class: mismatch, not_found, "
    "drift, missing, duplicate)",
)
TIME_TO_VERIFIED = _histogram(
    "writeback.time_to_verified",
    "s",
    "From the request (workflow start) to verified",
)
EHR_REQUEST_DURATION = _histogram(
    "writeback.ehr.request.duration",
    "s",
    "One HTTP exchange with the EHR (error_class: none, or the failure's class)",
)


def labels(
    tenant: str, vendor: str | None, resource_type: str | None, **extra: str
) -> dict[str, str]:
    """The label set of every metric: unknown vendor or type (a write rejected before they were
    known) is ``unknown``."""
    return {
        "tenant": tenant,
        "vendor": vendor or "unknown",
        "resource_type": resource_type or "unknown",
        **extra,
    }
