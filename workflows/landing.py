"""When an unanswered create may still land, and when a search for it proves anything.

A create that was sent and not answered (a timeout, a dropped connection, a worker that died)
may have committed, may commit later (a late commit, up to the tenant's ``late_commit_seconds``
after it was sent), and may show in search later still (index lag). A search that finds nothing
is proof that it did not land only when it is made after all of that: the *quiet period*
(``Tenant.quiet_period_seconds``), counted from the latest moment the request could have been
sent. The write re-sends a create only after such a search (README: "Write safety"), and calls a
create ``verified`` only after a copy count made after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

#: While the quiet period runs, the write searches about this often (and at its end).
SEARCH_EVERY_MIN = timedelta(seconds=5)
SEARCHES_PER_QUIET_PERIOD = 4


class LandingWindow(BaseModel):
    """The write's unanswered attempts, reduced to what decisions need (carried across runs)."""

    quiet_seconds: float = 0.0
    resend_after_quiet: bool = True
    searchable: bool = Field(
        default=True, description="False: the EHR may keep this type out of search for days"
    )
    until: datetime | None = Field(
        default=None, description="the latest instant an unanswered attempt may still show up"
    )
    cleared: bool = Field(default=False, description="a search made after ``until`` found nothing")

    def after_unanswered(self, sent_by: datetime) -> None:
        """An attempt went unanswered; none of its requests was sent after ``sent_by``."""
        end = sent_by + timedelta(seconds=self.quiet_seconds)
        self.until = max(self.until, end) if self.until else end
        self.cleared = False

    def needs_search(self) -> bool:
        """An unanswered attempt has not yet been ruled out by a search after its window."""
        return self.until is not None and not self.cleared

    def next_search_in(self, now: datetime) -> timedelta:
        """How long to wait before the next search: a few searches spread over the quiet
        period, the last one at its end."""
        assert self.until is not None
        spacing = max(
            SEARCH_EVERY_MIN, timedelta(seconds=self.quiet_seconds) / SEARCHES_PER_QUIET_PERIOD
        )
        return max(timedelta(seconds=1), min(self.until - now, spacing))
