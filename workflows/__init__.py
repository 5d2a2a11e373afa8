"""Deterministic orchestration of clinical writes, and the public contract callers use."""
