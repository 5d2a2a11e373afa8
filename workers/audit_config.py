"""Where the audit ledger, its key and its checkpoints live (activities/audit_ledger.py).

- ``$WRITEBACK_AUDIT_DB``: a SQLite path or a ``postgresql://`` URL (default
  ``<state dir>/audit.db``);
- ``$WRITEBACK_AUDIT_KEY_FILE``: the ledger key file, ``{"keys": ["<base64 32 bytes>", ...]}``
  oldest first, mode 0600 (default ``<state dir>/audit-key.json``). Its own file, not the payload
  key file: whoever verifies the ledger (an auditor) needs this key and must not need the keys
  that open PHI. The worker creates it on first use only for a ledger that has never been
  checkpointed; once checkpoints exist, a missing key file is an error, never a new key;
- ``$WRITEBACK_AUDIT_CHECKPOINTS``: the checkpoint directory (default
  ``<state dir>/audit-checkpoints``), outside the database; write-once storage in production;
- ``$WRITEBACK_AUDIT_CHECKPOINT_EVERY``: records a worker appends between checkpoints (100).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
from pathlib import Path

from activities.audit_anchor import AnchorStore, has_checkpoints
from activities.audit_chain import LedgerKeys
from activities.audit_ledger import AuditLedger, open_ledger
from adapters.errors import WritebackError
from workers.settings import Settings

AUDIT_DB_ENV = "WRITEBACK_AUDIT_DB"
AUDIT_KEY_FILE_ENV = "WRITEBACK_AUDIT_KEY_FILE"
CHECKPOINTS_ENV = "WRITEBACK_AUDIT_CHECKPOINTS"
CHECKPOINT_EVERY_ENV = "WRITEBACK_AUDIT_CHECKPOINT_EVERY"


class LedgerKeyError(WritebackError):
    """The ledger key file is missing or malformed (the message says which file and why)."""


def _state_dir() -> Path:
    return Settings.from_env().state_dir


def ledger_location() -> str:
    return os.environ.get(AUDIT_DB_ENV) or str(_state_dir() / "audit.db")


def key_file() -> Path:
    return Path(os.environ.get(AUDIT_KEY_FILE_ENV) or _state_dir() / "audit-key.json")


def checkpoint_dir() -> Path:
    return Path(os.environ.get(CHECKPOINTS_ENV) or _state_dir() / "audit-checkpoints")


def checkpoint_every() -> int:
    return int(os.environ.get(CHECKPOINT_EVERY_ENV) or 100)


def load_keys(path: Path) -> LedgerKeys:
    try:
        raw = json.loads(path.read_text())
        return LedgerKeys(tuple(base64.b64decode(key, validate=True) for key in raw["keys"]))
    except FileNotFoundError:
        raise LedgerKeyError(f"ledger key file not found: {path}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerKeyError(
            f'{path}: expected {{"keys": ["<base64 32 bytes>", ...]}} ({type(exc).__name__})'
        ) from None


def _create_once(path: Path) -> None:
    """A new key file, unless another process just made one (link is atomic, never replaces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"keys": [base64.b64encode(secrets.token_bytes(32)).decode()]}, handle)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def ledger_keys(create: bool) -> LedgerKeys:
    """The ledger keys; ``create``: a worker on a ledger never checkpointed may make the file."""
    path = key_file()
    if not path.exists() and create:
        if has_checkpoints(checkpoint_dir()):
            raise LedgerKeyError(
                f"ledger key file not found: {path}; the ledger has checkpoints in "
                f"{checkpoint_dir()}, so its records were sealed with a key: restore that file"
            )
        _create_once(path)
    return load_keys(path)


def open_configured(location: str, read_only: bool = False) -> AuditLedger:
    keys = ledger_keys(create=not read_only)
    anchors = AnchorStore(checkpoint_dir(), keys)
    return open_ledger(location, keys, anchors, checkpoint_every(), read_only)


@functools.cache
def shared_ledger(location: str) -> AuditLedger:
    """One ledger connection per location and process (workers of one process share it)."""
    return open_configured(location)
