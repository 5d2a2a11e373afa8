"""What a sweep makes of a page (activities/sweep_judge.py ``judge``): each copy of ours against the
record of the write that made it."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.models import FindingKind, ScannedResource
from activities.sweep_judge import judge
from activities.write_records import WriteRecord
from adapters.ids import finding_workflow_id

AT = datetime(2026, 11, 1, tzinfo=UTC)


def record(command: str, state: str = "verified", resource: str | None = "Obs/1") -> WriteRecord:
    return WriteRecord(command=command, state=state, resource=resource, version="1", at=AT)


def copy(
    command: str, reference: str = "Obs/1", version: str = "1", withdrawn: bool = False
) -> ScannedResource:
    return ScannedResource(
        reference=reference, version=version, command=command, withdrawn=withdrawn
    )


def kinds(
    found: list[ScannedResource], records: dict[str, WriteRecord], gone: set[str]
) -> list[tuple[FindingKind, list[str], str | None]]:
    return [(f.kind, f.resources, f.keep) for f in judge("t1", found, records, gone).findings]


def test_a_copy_with_no_write_is_an_orphan_and_a_withdrawn_one_is_nothing() -> None:
    found = [copy("t1:k1"), copy("t1:k2", "Obs/2", withdrawn=True)]
    assert kinds(found, {}, set()) == [(FindingKind.ORPHAN, ["Obs/1"], None)]


def test_a_copy_of_a_write_that_ended_out_of_the_chart_is_an_orphan() -> None:
    records = {"t1:k1": record("t1:k1", "rejected", None)}
    (finding,) = judge("t1", [copy("t1:k1")], records, set()).findings
    assert finding.kind is FindingKind.ORPHAN and finding.write_exists
    assert "its write ended rejected" in finding.detail


def test_an_undecided_write_is_left_to_itself() -> None:
    records = {"t1:k1": record("t1:k1", "pending_confirmation", None)}
    assert kinds([copy("t1:k1"), copy("t1:k1", "Obs/2")], records, set()) == []


def test_another_live_copy_is_a_duplicate_keeping_the_verified_one() -> None:
    records = {"t1:k1": record("t1:k1")}
    found = [copy("t1:k1"), copy("t1:k1", "Obs/2"), copy("t1:k1", "Obs/3", withdrawn=True)]
    assert kinds(found, records, set()) == [(FindingKind.DUPLICATE, ["Obs/1", "Obs/2"], "Obs/1")]


def test_the_verified_copy_withdrawn_is_missing_unless_we_withdrew_it() -> None:
    records = {"t1:k1": record("t1:k1")}
    found = [copy("t1:k1", version="2", withdrawn=True)]
    assert kinds(found, records, set()) == [(FindingKind.MISSING, ["Obs/1"], None)]
    assert kinds(found, records, {"Obs/1"}) == []


def test_a_plain_write_whose_key_looks_like_a_saga_step_is_judged_like_any_other() -> None:
    """The old sweep took ``saga.`` keys for saga steps and raised on one it could not split."""
    records = {"t1:saga.x": record("t1:saga.x")}
    found = [copy("t1:saga.x", version="2", withdrawn=True)]
    assert kinds(found, records, set()) == [(FindingKind.MISSING, ["Obs/1"], None)]


def test_the_verified_copy_at_another_version_is_read_for_drift_and_counts_as_seen() -> None:
    records = {"t1:k1": record("t1:k1"), "t1:k2": record("t1:k2", resource="Obs/2")}
    judgement = judge("t1", [copy("t1:k1", version="3"), copy("t1:k2", "Obs/2")], records, set())
    assert [r.command for r in judgement.changed] == ["t1:k1"]
    assert judgement.seen == {"t1:k1", "t1:k2"} and judgement.findings == []


def test_the_same_evidence_makes_the_same_finding_and_new_evidence_a_new_one() -> None:
    records = {"t1:k1": record("t1:k1")}
    first = judge("t1", [copy("t1:k1", "Obs/2")], records, set()).findings[0]
    again = judge("t1", [copy("t1:k1", "Obs/2")], records, set()).findings[0]
    other = judge("t1", [copy("t1:k1", "Obs/3")], records, set()).findings[0]
    assert finding_workflow_id(first) == finding_workflow_id(again)
    assert finding_workflow_id(first) != finding_workflow_id(other)
