"""What leaves a worker in plain text besides our own words: library log records and spans.

Three libraries write text we do not choose (issue #17, finding 5):

- Temporal's activity worker logs every failed activity at WARNING *with its traceback*
  (``temporalio.activity``): an exception's text and its chained causes can hold whatever an EHR
  answered (an ``httpx`` error names the URL, a ``KeyError`` the key it missed);
- httpx logs every request at INFO with its full URL, query included: the crosswalk's lookup
  ``Patient?identifier={system}|{MRN}`` names a patient there;
- Temporal's tracing interceptor sets a failed activity's span status to the exception's text,
  and records a failed workflow's exception (message and stack trace) as a span event; both are
  exported (OTLP, console).

``install_log_filters`` puts a filter on the first two loggers: an activity failure is logged
with the exception's class and error class only (no traceback, no message); a request's URL
without its query. ``ScrubbedSpans`` wraps a span exporter: status descriptions keep only the
exception's class, exception events keep only their type.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import httpx
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from temporalio.exceptions import ApplicationError

#: An exception class as a status description may name it (``ApplicationError``).
_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
#: Where the SDK's own words end in the records that quote an error's text.
_QUOTED_ERROR = re.compile(r"(?:, original error| with error of type [^:]*): ")


def exception_label(exc: BaseException) -> str:
    """``ApplicationError(validation)``: what may be said of an exception in plain text."""
    name = type(exc).__name__
    kind = exc.type if isinstance(exc, ApplicationError) else None
    return f"{name}({kind})" if kind and _CLASS.fullmatch(kind) else name


class ActivityFailureFilter(logging.Filter):
    """On ``temporalio.activity``: drops the traceback and the exception's text of a record
    (WARNING "Completing activity as failed", and the rarer records that format ``{err}`` into
    their message), keeping what the SDK says, the activity's ids, and the exception's class."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        # the SDK's adapter appends the activity's ids "({'activity_id': …})" to its own words
        at = message.rfind(" ({'activity_id'")
        words, details = (message[:at], message[at:]) if at >= 0 else (message, "")
        words = _QUOTED_ERROR.split(words, maxsplit=1)[0]
        label = "" if exc is None else f" [{exception_label(exc)}]"
        record.msg, record.args = words + label + details, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class QueryFreeUrlFilter(logging.Filter):
    """On ``httpx``: a request's URL is logged without its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        return True


_FILTERS: tuple[tuple[str, type[logging.Filter]], ...] = (
    ("temporalio.activity", ActivityFailureFilter),
    ("temporalio.worker._activity", ActivityFailureFilter),
    ("httpx", QueryFreeUrlFilter),
)


def install_log_filters() -> None:
    """Once per process (idempotent): every worker installs them before it runs an activity."""
    for name, kind in _FILTERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


class ScrubbedSpans(SpanExporter):
    """A span exporter that exports through ``inner`` what may leave the process: a status
    description reduced to the exception class it starts with, exception events to their type."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    description = status.description
    if description:
        head = description.split(":", 1)[0].strip()
        description = head if _CLASS.fullmatch(head) else None
        status = Status(status.status_code, description)
    events = [
        Event("exception", {"exception.type": str((e.attributes or {}).get("exception.type"))})
        if e.name == "exception"
        else e
        for e in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
