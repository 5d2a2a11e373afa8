"""The error taxonomy: every failure of a step belongs to exactly one class, and the class alone
decides what happens next (retry, ask a human, or stop).

Activities raise ``step_failure(...)``; the Temporal ``ApplicationError.type`` carries the class
name so the workflow (and operators in the Web UI) can read it without parsing messages.
Messages name status codes, FHIR issue codes and field paths, never resource content.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio.exceptions import ApplicationError

from adapters.reasons import safe_reason
from adapters.tenants import Tenant, TenantRegistry


class ErrorClass(StrEnum):
    TRANSPORT = "transport"  # the request never reached the EHR (connect refused, DNS, TLS)
    TRANSIENT = "transient"  # the EHR said "not now": 5xx, 429
    AMBIGUOUS = "ambiguous"  # sent, but no answer: it may or may not have committed
    VALIDATION = "validation"  # our validation, or the EHR's 400/422
    AUTHORIZATION = "authorization"  # policy denied, or the EHR's 401/403
    CONFLICT = "conflict"  # 409/412 on a version
    DUPLICATE = "duplicate"  # the EHR already holds more than one resource for this command
    NOT_FOUND = "not_found"  # 404/410
    UNSUPPORTED = "unsupported"  # the tenant cannot do this kind of write
    EHR_REJECTED = "ehr_rejected"  # any other 4xx: retrying cannot fix it
    MISMATCH = "mismatch"  # read-back found the resource, but not as we sent it
    COMPENSATION = "compensation"  # a saga could not withdraw a step it had written
    UNMAPPED = "unmapped"  # an internal id has no identity in the tenant (identity crosswalk)
    SCHEMA_DRIFT = "schema_drift"  # the tenant's contract changed: a new required field, binding…


#: Only these retry automatically. An ambiguous create is retried because every create we send is
#: idempotent at the EHR (conditional create, or search-before-create on the command identifier).
RETRYABLE = frozenset({ErrorClass.TRANSPORT, ErrorClass.TRANSIENT, ErrorClass.AMBIGUOUS})

BACKOFF_BASE = timedelta(seconds=1)
BACKOFF_CAP = timedelta(minutes=5)


def full_jitter_delay(
    attempt: int, retry_after: timedelta | None = None, rng: random.Random | None = None
) -> timedelta:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))],
    added on top of the EHR's ``Retry-After`` when it sent one, so that writes told to come back
    at the same moment do not all come back at that moment. Temporal's retry policy has no jitter.
    Workflows pass ``workflow.random()`` as ``rng`` to stay deterministic."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(attempt - 1, 0)))
    delay = timedelta(seconds=(rng or random).uniform(0, ceiling.total_seconds()))
    return delay + (retry_after or timedelta(0))


def step_failure(
    error_class: ErrorClass,
    message: str,
    *,
    attempt: int = 1,
    retry_after: timedelta | None = None,
    sent_at: datetime | None = None,
) -> ApplicationError:
    """The ApplicationError for a failed step: non-retryable unless its class is retryable.
    ``details[0]`` carries the EHR's Retry-After in seconds (or None) for workflow-paced retries;
    ``details[1]``, for an ambiguous outcome, the instant (ISO 8601) by which the unanswered
    request had certainly been sent, if any: the quiet period after it counts from there.
    The message passes ``safe_reason`` (adapters/reasons.py): one printable line, capped."""
    retryable = error_class in RETRYABLE
    return ApplicationError(
        safe_reason(message),
        retry_after.total_seconds() if retry_after else None,
        sent_at.isoformat() if sent_at else None,
        type=error_class.value,
        non_retryable=not retryable,
        next_retry_delay=full_jitter_delay(attempt, retry_after) if retryable else None,
    )


#: Every class name: an ApplicationError whose type is not one of these (an exception nobody
#: classified) tells nothing about whether the EHR committed.
TAXONOMY = frozenset(cls.value for cls in ErrorClass)

NON_RETRYABLE_TYPES = sorted(cls.value for cls in ErrorClass if cls not in RETRYABLE)


def known_tenant(tenants: TenantRegistry, tenant_id: str) -> Tenant:
    """The tenant a step names; a ``validation`` failure (never retried) when none is configured."""
    tenant = tenants.get(tenant_id)
    if tenant is None:
        known = ", ".join(tenants.ids)
        raise step_failure(
            ErrorClass.VALIDATION, f"unknown tenant '{tenant_id}' (configured: {known})"
        )
    return tenant
