"""Task queue names. Workflows and pure steps share the main queue; each tenant's EHR calls run on
a queue of their own so Temporal can enforce that tenant's rate limit across every worker."""

from __future__ import annotations


def ehr_task_queue(main_queue: str, tenant: str) -> str:
    return f"{main_queue}-ehr-{tenant}"
