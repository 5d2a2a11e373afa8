"""How the CLI shows writes to a person (plain text) or to a script (JSON)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Callable, Sequence

from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from workers.client import WaitingWrite
from workflows.contract import Transition, WriteDetails, WriteStatus
from workflows.saga_contract import SagaStatus


def as_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2)


def transition_line(transition: Transition, with_date: bool = False) -> str:
    at = f"{transition.at:%Y-%m-%d %H:%M:%S}" if with_date else f"{transition.at:%H:%M:%S.%f}"[:-3]
    detail = f"  {transition.detail}" if transition.detail else ""
    return f"  {at}  {transition.state.value:<21}{detail}"


def transition_printer() -> Callable[[WriteStatus], None]:
    """For ``client.wait(on_change=…)``: prints each new transition once, as it happens."""
    seen = 0

    def show(status: WriteStatus) -> None:
        nonlocal seen
        for transition in status.transitions[seen:]:
            print(transition_line(transition), flush=True)
        seen = len(status.transitions)

    return show


def status_text(status: WriteStatus) -> str:
    lines = [f"workflow  {status.workflow_id}", f"state     {status.state.value}"]
    for label, value in (
        ("tenant", status.tenant),
        ("vendor", status.vendor),
        ("write", status.interaction.value),
        ("resource", status.resource),
        ("version", status.version),
        ("attempts", status.attempts or None),
        ("error", status.error_class),
        ("reason", status.reason),
        ("waiting", status.waiting_since and f"since {status.waiting_since:%Y-%m-%d %H:%M:%S}"),
        ("recheck", status.next_check_at and f"{status.next_check_at:%Y-%m-%d %H:%M:%S}"),
    ):
        if value:
            lines.append(f"{label:<9} {value}")
    lines.append("history")
    lines += [transition_line(t, with_date=True) for t in status.transitions]
    if status.ehr_log:
        lines.append("EHR exchanges")
        lines += [
            f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.step:<7} #{e.attempt:<3} {e.outcome}"
            for e in status.ehr_log
        ]
    return "\n".join(lines)


def saga_text(saga: SagaStatus) -> str:
    lines = [status_text(saga), "steps"]
    for step in saga.steps:
        state = step.state.value if step.state else "not started"
        undo = f", {step.compensation}" if step.compensation else ""
        lines.append(f"  {step.name:<16} {step.resource or step.resource_type:<32} {state}{undo}")
        if step.detail:
            lines.append(f"  {'':<16} {step.detail}")
    return "\n".join(lines)


def record_text(record: WriteDetails | WriteStatus) -> str:
    """What ``review show`` prints for any entry of the review queue."""
    if isinstance(record, WriteDetails):
        return details_text(record)
    if isinstance(record, SagaStatus):
        return saga_text(record)
    return status_text(record)


def details_text(details: WriteDetails) -> str:
    def block(title: str, value: object) -> str:
        return f"{title}\n{json.dumps(value, indent=2)}" if value is not None else ""

    command = (
        details.command.model_dump(mode="json", exclude={"resource"}) if details.command else None
    )
    parts = [
        status_text(details.status),
        block("command", command),
        block("sent to the EHR", details.sent),
        block("as the EHR last returned it", details.ehr_state),
    ]
    return "\n\n".join(part for part in parts if part)


def waiting_table(entries: Sequence[WaitingWrite]) -> str:
    """The review queue as a table (colours only on a terminal; plain text through a pipe)."""
    if not entries:
        return "no writes are waiting for a person"
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, expand=False)
    for column in ("waiting since", "state", "tenant", "urgency", "error", "workflow / reason"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        since = f"{entry.waiting_since:%Y-%m-%d %H:%M:%S}" if entry.waiting_since else "-"
        what = entry.workflow_id + (f"\n[dim]{escape(entry.reason)}[/dim]" if entry.reason else "")
        table.add_row(
            since,
            f"[bold yellow]{entry.state}[/]",
            entry.tenant,
            entry.urgency or "-",
            entry.error_class or "-",
            what,
        )
    return render(table)


def render(renderable: RenderableType) -> str:
    """Rich output as a string, as wide as the terminal (120 columns when not a terminal)."""
    tty = sys.stdout.isatty()
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=tty,
        no_color=not tty,
        width=shutil.get_terminal_size((120, 24)).columns if tty else 120,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")
