"""The audit ledger's chain: how a record is sealed, and how a tenant's records are checked.

Record ``n`` of a tenant is sealed with ``HMAC-SHA256(key, tenant, n, seal of n-1, body)``; the
key lives outside the database (``LedgerKeys``, loaded by workers/audit_cli.py), so someone who
can write the database but does not hold the key cannot recompute the chain after an edit. The
record names its key by id (a fingerprint of the key, never the key), so keys can be rotated: new
records use the newest key, older records verify with theirs.

Records written before the chain was keyed carry no key id and a plain SHA-256 link. They verify
as what they are, but only up to the point a checkpoint declared them (``legacy_through``, written
once, when a ledger with such records is first opened with a key; activities/audit_anchor.py):
an unkeyed record anywhere else is a forgery.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GENESIS = "0" * 64


def key_id_of(key: bytes) -> str:
    """A public name for a key: 16 hex digits of a hash of it (never the key)."""
    return hashlib.sha256(b"writeback audit key id\n" + key).hexdigest()[:16]


@dataclass(frozen=True)
class LedgerKeys:
    """The ledger's keys, oldest first; the newest seals new records and checkpoints."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys or any(len(key) != 32 for key in self.keys):
            raise ValueError("the ledger key file needs one or more 32-byte keys")

    def __repr__(self) -> str:  # never print key material
        return f"LedgerKeys({', '.join(key_id_of(key) for key in self.keys)})"

    @property
    def current_id(self) -> str:
        return key_id_of(self.keys[-1])

    def get(self, key_id: str) -> bytes | None:
        return next((key for key in self.keys if key_id_of(key) == key_id), None)

    def checkpoint_key(self, key_id: str) -> bytes | None:
        """Checkpoints are sealed with a key of their own, derived from the ledger key."""
        key = self.get(key_id)
        return hmac.digest(key, b"writeback audit checkpoint", "sha256") if key else None


def chain_hash(tenant: str, seq: int, prev_hash: str, body: str) -> str:
    """The unkeyed link of records from before the keyed chain."""
    return hashlib.sha256(_message(tenant, seq, prev_hash, body)).hexdigest()


def keyed_hash(key: bytes, tenant: str, seq: int, prev_hash: str, body: str) -> str:
    return hmac.new(key, _message(tenant, seq, prev_hash, body), "sha256").hexdigest()


def _message(tenant: str, seq: int, prev_hash: str, body: str) -> bytes:
    return f"{tenant}\n{seq}\n{prev_hash}\n{body}".encode()


@dataclass(frozen=True)
class LedgerRecord:
    tenant: str
    seq: int
    entry_key: str
    body: str
    prev_hash: str
    hash: str
    key_id: str | None = None  # None: from before the keyed chain


@dataclass(frozen=True)
class Verification:
    tenant: str
    records: int
    first_bad: int | None = None
    problem: str | None = None
    unkeyed: int = 0  # records from before the keyed chain, declared by a checkpoint

    @property
    def ok(self) -> bool:
        return self.first_bad is None


@dataclass(frozen=True)
class Expectations:
    """What is known about a tenant's chain from outside its records: the head row, the heads
    the checkpoints recorded, and how far records from before the key were declared."""

    head: tuple[int, str] | None = None
    anchored: tuple[tuple[int, str], ...] = ()
    legacy_through: int = 0


def _seal_problem(record: LedgerRecord, keys: LedgerKeys, legacy_through: int) -> str | None:
    n = record.seq
    if record.key_id is None:
        if n > legacy_through:
            return f"record {n} carries no key (written without the ledger key)"
        if chain_hash(record.tenant, n, record.prev_hash, record.body) != record.hash:
            return f"record {n} does not match its hash (edited)"
        return None
    key = keys.get(record.key_id)
    if key is None:
        return f"record {n} is sealed with key {record.key_id}, which the key file does not hold"
    expected = keyed_hash(key, record.tenant, n, record.prev_hash, record.body)
    if not hmac.compare_digest(expected, record.hash):
        return f"record {n} does not match its hash (edited)"
    return None


def verify_chain(
    tenant: str, records: list[LedgerRecord], keys: LedgerKeys, known: Expectations
) -> Verification:
    """Walk records in sequence order; the first that is missing, out of place, altered or not
    sealed with the key; then the ends: the head row and every checkpoint must be on the chain."""
    prev, expected = GENESIS, 1
    hashes: dict[int, str] = {}
    count = len(records)
    for record in records:
        if record.seq != expected:
            return Verification(tenant, count, expected, f"record {expected} is missing (removed)")
        if record.prev_hash != prev:
            problem = f"record {expected} does not follow record {expected - 1} (moved or replaced)"
            return Verification(tenant, count, expected, problem)
        if sealing := _seal_problem(record, keys, known.legacy_through):
            return Verification(tenant, count, expected, sealing)
        hashes[record.seq] = record.hash
        prev, expected = record.hash, expected + 1
    last = expected - 1
    if known.head is None and records:
        return Verification(tenant, count, expected, "the tenant's head is missing (deleted)")
    if known.head is not None and (known.head[0] != last or known.head[1] != prev):
        problem = (
            f"the ledger ends at record {last} but its head says {known.head[0]} "
            "(records removed at the end)"
        )
        return Verification(tenant, count, expected, problem)
    for seq, digest in sorted(known.anchored, reverse=True):
        if hashes.get(seq) != digest:
            problem = (
                f"a checkpoint says record {seq} exists with another hash; the ledger ends at "
                f"record {last} (records removed or rewritten)"
            )
            return Verification(tenant, count, min(seq, expected), problem)
    legacy = sum(1 for record in records if record.key_id is None)
    return Verification(tenant, count, unkeyed=legacy)


def expectations(
    head: tuple[int, str] | None,
    checkpoints: Sequence[Mapping[str, tuple[int, str]]],
    legacy: Mapping[str, int],
    tenant: str,
) -> Expectations:
    anchored = tuple(sorted({heads[tenant] for heads in checkpoints if tenant in heads}))
    return Expectations(head, anchored, legacy.get(tenant, 0))
