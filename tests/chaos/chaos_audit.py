"""The chaos run's verdicts: what the product says about each command against what the sandbox's
file holds (support/audit.py reads it; never through the product or the sandbox's search).

* duplicate: more than one live (not withdrawn) resource for one command — by its command
  identifier or, where the vendor keeps none of ours, by the same clinical content for the same
  patient; for an update, the change written in more than one version; for a saga, per step;
* lost: reported in the chart (verified) while the chart does not hold it (nothing, or an update
  missing, or a clinician's earlier edit overwritten);
* unexplained: reported verified while duplicates exist; rejected although valid or although
  something was written; waiting for a person without a reason; compensated or rejected sagas
  leaving a live resource behind; an ending outside the product's states.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from chaos_plan import Planned
from chaos_trails import Trails, copies_evidence
from support.audit import Chart, value_of, versions

from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState, WriteStatus
from workflows.saga_contract import SagaCommand, SagaStatus

S = TypeVar("S", bound=WriteStatus)


@dataclass
class Verdicts:
    states: dict[str, Counter[str]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    settle_seconds: list[float] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    """(seconds to settle, 'workflow id: attempts and what each met'), slowest first (top 5)."""

    def count(self, kind: str, state: str) -> None:
        self.states.setdefault(kind, Counter())[state] += 1


async def _final(client: WritebackClient, planned: Planned) -> WriteStatus | str:
    """The write's or saga's status, or why it has none (unexplained: outside our states)."""
    try:
        if isinstance(planned.command, SagaCommand):
            return await client.saga(planned.workflow_id)
        return await client.status(planned.workflow_id)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _took(status: WriteStatus) -> float | None:
    first = status.transitions[0].at
    ended = next((t.at for t in status.transitions if t.state.is_settled), None)
    return None if ended is None else (ended - first).total_seconds()


def _settled_enough(wid: str, status: WriteStatus, unsettled: set[str], verdicts: Verdicts) -> bool:
    """A write's state says something the audit can judge (else it is unsettled or waits)."""
    state = status.state
    if state.is_waiting_for_human and not status.reason:
        verdicts.unexplained.append(f"{wid}: waiting ({state.value}) with no reason")
    if not state.is_settled and wid not in unsettled:
        verdicts.unexplained.append(f"{wid}: {state.value} after the run settled")
    return state.is_terminal


def _create(
    planned: Planned,
    status: WriteStatus,
    chart: Chart,
    v: Verdicts,
    unsettled: set[str],
    trails: Trails,
) -> None:
    command = planned.command
    assert isinstance(command, WriteCommand)
    wid, state = planned.workflow_id, status.state
    copies = chart.copies(command.command_identifier, command.resource)
    if len(copies) > 1:
        v.duplicates.append(
            f"{wid}: {len(copies)} live copies, reported {state.value}"
            f"{' (patient with a crowded chart)' if planned.slot.crowded is not None else ''}: "
            f"{copies_evidence(chart, copies)}; requests: {trails.trail(wid)}"
        )
    if not _settled_enough(wid, status, unsettled, v):
        return
    if state.is_in_chart:
        if not copies:
            v.lost.append(f"{wid}: {state.value}, nothing in the chart")
        elif len(copies) > 1:
            v.unexplained.append(f"{wid}: reported {state.value} while {len(copies)} copies exist")
        elif status.resource not in copies:
            v.unexplained.append(f"{wid}: {state.value} {status.resource}, the chart has {copies}")
    elif state is WriteState.REJECTED and (planned.slot.valid or copies):
        v.unexplained.append(f"{wid}: rejected ({len(copies)} written): {status.reason}")


def _update(
    planned: Planned,
    status: WriteStatus,
    db: Path,
    v: Verdicts,
    unsettled: set[str],
    trails: Trails,
) -> None:
    target = planned.target
    assert target is not None
    wid, state = planned.workflow_id, status.state
    history = versions(db, planned.slot.tenant.id, target.reference)
    applied = [n + 1 for n, body in enumerate(history) if body and value_of(body) == planned.value]
    if len(applied) > 1:
        v.duplicates.append(
            f"{wid}: the update written {len(applied)} times (versions {applied}), reported "
            f"{state.value}; requests: {trails.trail(wid)}"
        )
    if not _settled_enough(wid, status, unsettled, v):
        return
    current = history[-1] if history else {}
    if state.is_in_chart:
        if value_of(current) != planned.value or current.get("status") != "amended":
            v.lost.append(f"{wid}: {state.value}, the chart's {target.reference} lacks the update")
        elif len(applied) > 1:
            v.unexplained.append(f"{wid}: reported {state.value}, written {len(applied)} times")
        notes = [n.get("text") for n in current.get("note", []) if isinstance(n, dict)]
        if target.clinician_note and target.clinician_note not in notes:
            v.lost.append(f"{wid}: {state.value}, but the clinician's earlier note was overwritten")
    elif state is WriteState.REJECTED:
        v.unexplained.append(f"{wid}: update rejected: {status.reason}")


async def _saga(
    client: WritebackClient,
    planned: Planned,
    saga: SagaStatus,
    chart: Chart,
    v: Verdicts,
    trails: Trails,
) -> str:
    """Judge a saga; returns the state it is counted under."""
    command = planned.command
    assert isinstance(command, SagaCommand)
    wid, state = planned.workflow_id, saga.state
    live: dict[str, list[str]] = {}
    for step in command.steps:
        live[step.name] = chart.copies(f"{command.tenant}:{command.step_key(step.name)}", None)
        if len(live[step.name]) > 1:
            step_write = f"wb:{command.tenant}:{command.step_key(step.name)}"
            v.duplicates.append(
                f"{wid} step {step.name}: {len(live[step.name])} live copies, saga "
                f"{state.value}: {copies_evidence(chart, live[step.name])}; "
                f"requests: {trails.trail(step_write)}"
            )
    written = {name: refs for name, refs in live.items() if refs}
    if state.is_in_chart:
        missing = [name for name, refs in live.items() if not refs]
        if missing:
            v.lost.append(f"{wid}: saga {state.value}, nothing in the chart for {missing}")
        if any(len(refs) > 1 for refs in live.values()):
            v.unexplained.append(f"{wid}: saga reported {state.value} while duplicates exist")
    elif state in (WriteState.COMPENSATED, WriteState.REJECTED) and written:
        v.unexplained.append(f"{wid}: saga {state.value}, still live: {written}")
    elif state.is_waiting_for_human and not saga.reason:
        v.unexplained.append(f"{wid}: saga waiting ({state.value}) with no reason")
    elif state is WriteState.IN_FLIGHT:  # settled only if the step it writes waits for a person
        for progress in saga.steps:
            if progress.state is WriteState.IN_FLIGHT:
                step_status = await client.status(progress.write_id)
                if step_status.state.is_waiting_for_human:
                    if not step_status.reason:
                        v.unexplained.append(f"{wid}: step {progress.name} waits with no reason")
                    return f"step {progress.name} {step_status.state.value}"
    return state.value


async def audit(
    client: WritebackClient,
    planned: list[Planned],
    charts: dict[str, Chart],
    db: Path,
    unsettled: set[str],
    trails: Trails,
) -> Verdicts:
    verdicts = Verdicts()
    gate = asyncio.Semaphore(32)

    async def final(p: Planned) -> WriteStatus | str:
        async with gate:
            return await _final(client, p)

    finals = await asyncio.gather(*(final(p) for p in planned))
    for p, status in zip(planned, finals, strict=True):
        kind, wid = p.slot.kind, p.workflow_id
        if isinstance(status, str):
            verdicts.count(kind, "ended abnormally")
            verdicts.unexplained.append(f"{wid}: {status}")
            continue
        if (took := _took(status)) is not None:
            verdicts.settle_seconds.append(took)
            outcomes = " | ".join(e.outcome.split(":")[0][:30] for e in status.ehr_log)
            line = f"{wid}: {status.attempts} attempts: {outcomes}"
            verdicts.slowest = sorted([*verdicts.slowest, (round(took, 1), line)], reverse=True)[:5]
        verdicts.attempts.append(status.attempts)
        chart = charts[p.slot.tenant.id]
        if isinstance(status, SagaStatus):
            verdicts.count(kind, await _saga(client, p, status, chart, verdicts, trails))
            continue
        verdicts.count(kind, status.state.value)
        if kind == "update":
            _update(p, status, db, verdicts, unsettled, trails)
        else:
            _create(p, status, chart, verdicts, unsettled, trails)
    return verdicts


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)
