"""Trace and time every HTTP exchange with an EHR.

Each exchange is a client span (a child of the Temporal activity span, so of the caller's submit)
whose context travels to the EHR in a W3C ``traceparent`` header next to our ``X-Request-Id``.
Span attributes and metric labels are tenant, vendor, resource type, method, status and error
class: never the URL's query (it can name a patient) or any body.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio.exceptions import ApplicationError

from activities.fhir_http import error_class_for_status
from activities.metrics import EHR_REQUEST_DURATION, labels
from adapters.tenants import Tenant

_tracer = trace.get_tracer("writeback.ehr")

#: ``error_class`` label of an exchange the EHR answered with 2xx/3xx.
NO_ERROR = "none"


@dataclass
class EhrCall:
    """What the caller learns about the exchange; read when the span ends."""

    status_code: int | None = None
    error_class: str = NO_ERROR

    def answered(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        if response.status_code >= 400:
            self.error_class = error_class_for_status(response.status_code).value


def resource_type_of(path: str) -> str:
    """``Observation/12?x=y`` -> ``Observation``; ``metadata`` and other system paths as is."""
    return path.split("?", 1)[0].split("/", 1)[0] or "system"


@contextmanager
def ehr_exchange(
    tenant: Tenant, method: str, path: str, headers: dict[str, str]
) -> Iterator[EhrCall]:
    """Span + latency for one exchange; adds ``traceparent`` to ``headers`` before it is sent.
    A step failure raised inside (transport, ambiguous) is recorded with its error class."""
    resource_type = resource_type_of(path)
    label_set = labels(tenant.id, tenant.vendor.value, resource_type)
    call = EhrCall()
    started = time.monotonic()
    with _tracer.start_as_current_span(
        f"EHR {method} {resource_type}",
        kind=SpanKind.CLIENT,
        attributes={
            "writeback.tenant": tenant.id,
            "writeback.vendor": tenant.vendor.value,
            "writeback.resource_type": resource_type,
            "http.request.method": method,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        propagate.inject(headers)
        try:
            yield call
        except ApplicationError as exc:
            call.error_class = exc.type or "unknown"
            raise
        finally:
            if call.status_code is not None:
                span.set_attribute("http.response.status_code", call.status_code)
            span.set_attribute("writeback.error_class", call.error_class)
            if call.error_class != NO_ERROR:
                span.set_status(Status(StatusCode.ERROR, call.error_class))
            EHR_REQUEST_DURATION.record(
                time.monotonic() - started, {**label_set, "error_class": call.error_class}
            )
