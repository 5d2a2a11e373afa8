"""Checkpoints of the audit ledger's heads, outside the database.

A checkpoint is a small JSON file in a directory of its own (``$WRITEBACK_AUDIT_CHECKPOINTS``):
for each tenant, the last record's number and seal, and how far records from before the keyed
chain were declared (``legacy_through``). It is sealed with HMAC-SHA256 under a key derived from
the ledger key (activities/audit_chain.py), so whoever can write the database but not the key
cannot forge one, and ``writeback audit verify`` checks every record a checkpoint names: deleting
records at the end of a chain (and setting the head back) is caught.

Files are never rewritten: each checkpoint is a new file, named so that names sort by time. What
a checkpoint does not stop: someone who can delete files in the directory removes the newest
checkpoints with the records. Point the directory at write-once storage (object lock, WORM, a
different host's mount) in production; README, Security.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from activities.audit_chain import LedgerKeys

PREFIX = "checkpoint-"


def checkpoint_names(directory: Path) -> list[str]:
    """The names of the checkpoint files in ``directory`` (none when it does not exist), in no
    order: one scan of the directory, no ``Path`` per file."""
    if not directory.is_dir():
        return []
    with os.scandir(directory) as entries:
        return [e.name for e in entries if e.name.startswith(PREFIX) and e.name.endswith(".json")]


def has_checkpoints(directory: Path) -> bool:
    return bool(checkpoint_names(directory))


class CheckpointError(Exception):
    """A checkpoint file that is not what the ledger wrote (message: the file name, why)."""


@dataclass(frozen=True)
class Checkpoint:
    written_at: str
    heads: dict[str, tuple[int, str]]
    legacy_through: dict[str, int] = field(default_factory=dict)


def _body(checkpoint: Checkpoint, key_id: str) -> bytes:
    content = {
        "written_at": checkpoint.written_at,
        "key_id": key_id,
        "heads": {tenant: list(head) for tenant, head in sorted(checkpoint.heads.items())},
        "legacy_through": dict(sorted(checkpoint.legacy_through.items())),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


class AnchorStore:
    """The checkpoint directory: write a checkpoint, read them all (each checked)."""

    def __init__(self, directory: Path, keys: LedgerKeys) -> None:
        self.directory = directory
        self._keys = keys

    def write(
        self, heads: dict[str, tuple[int, str]], legacy_through: dict[str, int] | None = None
    ) -> Path:
        """A new checkpoint of ``heads``, merged over the newest one (a process names only the
        tenants it appended to; the checkpoint keeps the others' last known heads)."""
        previous = self.latest()
        merged = dict(previous.heads) if previous else {}
        for tenant, head in heads.items():
            if tenant not in merged or merged[tenant][0] <= head[0]:
                merged[tenant] = head
        legacy = dict(previous.legacy_through) if previous else {}
        legacy.update(legacy_through or {})
        now = datetime.now(UTC)
        checkpoint = Checkpoint(now.isoformat(), merged, legacy)
        key_id = self._keys.current_id
        key = self._keys.checkpoint_key(key_id)
        assert key is not None
        body = _body(checkpoint, key_id)
        document = json.loads(body) | {"mac": hmac.new(key, body, "sha256").hexdigest()}
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}.json"
        draft = self.directory / f".{name}.tmp"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, self.directory / name)  # never replaces an existing checkpoint
        draft.unlink()
        return self.directory / name

    def all(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first; CheckpointError for one the ledger did not write."""
        names = sorted(checkpoint_names(self.directory))
        return [self._read(self.directory / name) for name in names]

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint (names sort by time). A worker writes one every few hundred
        records for as long as it runs and files are never removed: the directory is scanned
        for names only, one pass, no sort."""
        names = checkpoint_names(self.directory)
        return self._read(self.directory / max(names)) if names else None

    def _read(self, path: Path) -> Checkpoint:
        try:
            document = json.loads(path.read_text())
            mac = document.pop("mac")
            key_id = document["key_id"]
            heads = {str(t): (int(h[0]), str(h[1])) for t, h in document["heads"].items()}
            legacy = {str(t): int(n) for t, n in document.get("legacy_through", {}).items()}
            checkpoint = Checkpoint(str(document["written_at"]), heads, legacy)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"{path.name}: malformed ({type(exc).__name__})") from None
        key = self._keys.checkpoint_key(str(key_id))
        if key is None:
            raise CheckpointError(f"{path.name}: sealed with key {key_id}, not in the key file")
        expected = hmac.new(key, _body(checkpoint, str(key_id)), "sha256").hexdigest()
        if not hmac.compare_digest(expected, str(mac)):
            raise CheckpointError(f"{path.name}: its seal does not match (forged or edited)")
        return checkpoint
