"""The codec server's tokens (workers/codec_server.py): who may see which tenants' payloads.

A token file holds ``{"tokens": [{"name": …, "sha256": …, "tenants": ["acme", …] or ["*"],
"encode": false}]}``: the hash of each token, never the token (``writeback codec-token`` prints a
new one once). ``encode`` (off unless asked for) lets a token seal payloads for a workflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from adapters.errors import WritebackError

TOKENS_FILE_ENV = "WRITEBACK_CODEC_TOKENS_FILE"
ALL_TENANTS = "*"


class TokenFileError(WritebackError):
    """The token file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Grant:
    """What one token may see (and, with ``encode``, seal for a workflow)."""

    name: str
    tenants: frozenset[str]
    encode: bool = False

    def may_see(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CodecTokens:
    """``{"tokens": [{"name": …, "sha256": …, "tenants": ["acme", …] or ["*"],
    "encode": false}]}``."""

    def __init__(self, grants: dict[str, Grant]) -> None:
        self._by_hash = grants

    def grant_for(self, token: str) -> Grant | None:
        presented = token_hash(token)
        for known, grant in self._by_hash.items():
            if secrets.compare_digest(known, presented):
                return grant
        return None

    @classmethod
    def from_file(cls, path: Path) -> CodecTokens:
        try:
            raw = json.loads(path.read_text())
            grants = {
                str(entry["sha256"]): Grant(
                    str(entry["name"]),
                    frozenset(entry["tenants"]),
                    entry.get("encode", False) is True,
                )
                for entry in raw["tokens"]
            }
        except FileNotFoundError:
            raise TokenFileError(f"codec token file not found: {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TokenFileError(
                f'{path}: expected {{"tokens": [{{"name", "sha256", "tenants"}}]}} '
                f"({type(exc).__name__})"
            ) from None
        return cls(grants)

    @staticmethod
    def write(path: Path, entries: list[tuple[str, str, list[str]]]) -> None:
        """Write (name, token, tenants) entries, decode-only, hashing each token (owner-only)."""
        body = {
            "tokens": [
                {"name": name, "sha256": token_hash(token), "tenants": tenants}
                for name, token, tenants in entries
            ]
        }
        _write_owner_only(path, json.dumps(body, indent=2))

    @staticmethod
    def add(path: Path, name: str, tenants: list[str], encode: bool = False) -> str:
        """A new random token for ``tenants`` (replacing one of the same name); returns it: the
        file keeps only its hash."""
        try:
            entries = json.loads(path.read_text())["tokens"] if path.exists() else []
        except (ValueError, KeyError, TypeError):
            raise TokenFileError(f"{path}: not a token file") from None
        token = secrets.token_urlsafe(24)
        entries = [entry for entry in entries if entry.get("name") != name]
        entry: dict[str, object] = {"name": name, "sha256": token_hash(token), "tenants": tenants}
        if encode:
            entry["encode"] = True
        entries.append(entry)
        _write_owner_only(path, json.dumps({"tokens": entries}, indent=2))
        return token


def _write_owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def tokens_file_path(state_dir: Path) -> Path:
    return Path(os.environ.get(TOKENS_FILE_ENV) or state_dir / "codec_tokens.json")


def dev_token(state_dir: Path) -> str:
    """The local stack's all-tenant, decode-only token, kept in ``<state dir>/codec_dev_token``
    (owner-only) so a sign-in keeps working across runs; its hash goes to the stack's token file
    ``<state dir>/codec_tokens.json``."""
    token_file = state_dir / "codec_dev_token"
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token = secrets.token_urlsafe(24)
        _write_owner_only(token_file, token)
    CodecTokens.write(state_dir / "codec_tokens.json", [("dev", token, [ALL_TENANTS])])
    return token
