"""The kinds of write writeback performs (shared by tenant capabilities and access policies)."""

from __future__ import annotations

from enum import StrEnum


class Interaction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
