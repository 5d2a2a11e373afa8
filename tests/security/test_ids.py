"""Issue #17, finding 2, as the attack: a heart rate and its time guessed back from a workflow id.

Without ``--key`` the CLI derives the idempotency key from the command's content, and the key is
in plain text in the workflow id (Temporal, its UI, logs), the ledger's correlation id,
``X-Request-Id`` and the EHR's identifier. Someone who sees the id and knows the format tries every
plausible value: heart rates 30-250/min times every second of a few minutes. Against a plain hash
of tenant + content that finds the reading in about a second; against a keyed hash (HMAC under the
tenant's id secret, held with the payload keys) it finds nothing, while the same content still
makes the same key (deduplication), in this process and in any other sharing the key file.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.cli import ROOT

from workers import samples
from workers.cli import build_command
from workers.keys import KEYS_FILE_ENV, KEYS_JSON_ENV, LocalKeyProvider

TENANT = "acme"
PATIENT = "p-4711"  # the attacker knows whose chart it is and roughly when (a ward, a shift)
TAKEN = datetime(2026, 11, 25, 10, 3, 17, tzinfo=UTC)
WINDOW = timedelta(minutes=3)
BPM = range(30, 251)


def submit_args(tmp_path: Path, resource: dict[str, Any]) -> argparse.Namespace:
    """``writeback submit FILE --tenant acme`` as the CLI parses it (no --key)."""
    file = tmp_path / "observation.json"
    file.write_text(json.dumps(resource))
    return argparse.Namespace(
        file=str(file),
        tenant=TENANT,
        key=None,
        requested_by="cli",
        on_behalf_of=None,
        role=None,
        purpose=None,
        urgency="routine",
        update=None,
        base_version=None,
    )


def candidates() -> Iterator[tuple[int, datetime, str]]:
    """Every (bpm, time) the attacker tries, with the canonical JSON the key would be made of."""
    start = TAKEN - WINDOW / 2
    for second in range(int(WINDOW.total_seconds()) + 1):
        when = start + timedelta(seconds=second)
        for bpm in BPM:
            resource = samples.heart_rate(PATIENT, bpm, when)
            yield bpm, when, json.dumps(resource, sort_keys=True, separators=(",", ":"))


def plain_hash(canonical: str) -> str:
    """The key format main used: an unsalted SHA-256 of tenant and content."""
    return "sha-" + hashlib.sha256(f"{TENANT}\n{canonical}".encode()).hexdigest()[:32]


def guessed_keys(canonical: str) -> list[str]:
    """What an attacker without the key file can compute: the plain hash, and keyed hashes
    under secrets it might guess (none, zeros)."""
    message = f"{TENANT}\n{canonical}".encode()
    keyed = [hmac.new(secret, message, hashlib.sha256).hexdigest() for secret in (b"", b"\0" * 32)]
    return [plain_hash(canonical), *(f"hk-{k[:32]}" for k in keyed)]


def brute_force(
    workflow_id: str, keys_of: Callable[[str], list[str]]
) -> tuple[int, datetime] | None:
    for bpm, when, canonical in candidates():
        if any(workflow_id == f"wb:{TENANT}:{key}" for key in keys_of(canonical)):
            return bpm, when
    return None


def test_the_brute_force_recovers_a_reading_from_a_plain_hash() -> None:
    """The attack works: against the old format, the reading comes back exactly."""
    resource = samples.heart_rate(PATIENT, 87, TAKEN)
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"))
    old_id = f"wb:{TENANT}:{plain_hash(canonical)}"
    assert brute_force(old_id, lambda canonical: [plain_hash(canonical)]) == (87, TAKEN)


def test_a_workflow_id_made_by_the_cli_does_not_give_the_reading_back(tmp_path: Path) -> None:
    command = build_command(submit_args(tmp_path, samples.heart_rate(PATIENT, 87, TAKEN)))
    assert brute_force(command.workflow_id, guessed_keys) is None
    # the same content still makes the same command (resubmitting never writes twice)...
    again = build_command(submit_args(tmp_path, samples.heart_rate(PATIENT, 87, TAKEN)))
    assert again.workflow_id == command.workflow_id
    # ...a different reading another one
    other = build_command(submit_args(tmp_path, samples.heart_rate(PATIENT, 88, TAKEN)))
    assert other.workflow_id != command.workflow_id


def default_key_in_another_process(resource: dict[str, Any], env: dict[str, str]) -> str:
    script = (
        "import json, sys; from workers.cli import default_idempotency_key; "
        "print(default_idempotency_key(sys.argv[1], json.loads(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, TENANT, json.dumps(resource)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_processes_sharing_the_key_file_make_the_same_key_and_others_cannot(
    tmp_path: Path,
) -> None:
    resource = samples.heart_rate(PATIENT, 87, TAKEN)
    here = build_command(submit_args(tmp_path, resource)).idempotency_key
    assert default_key_in_another_process(resource, {}) == here  # the same key file
    elsewhere = tmp_path / "other-keys.json"
    LocalKeyProvider.generate().save(elsewhere)
    env = {KEYS_FILE_ENV: str(elsewhere), KEYS_JSON_ENV: ""}
    assert default_key_in_another_process(resource, env) != here  # another deployment's keys
