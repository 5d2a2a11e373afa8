"""SMART scopes for backend services: v1 (``system/Observation.write``) and v2 (``.cruds``).

v1 ``read`` = r+s, ``write`` = c+u+d, ``*`` = all; v2 letters must appear in
the order c r u d s without repeats (``system/Observation.cu``, never ``.uc``).
Interactions need: create c; read, vread, history r; update, patch u; delete d;
search s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

LETTERS = "cruds"
_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|[cruds]+)$")
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(LETTERS)}


@dataclass(frozen=True)
class Scope:
    context: str
    rtype: str
    letters: frozenset[str]

    def covers(self, other: Scope) -> bool:
        return (
            self.context == other.context
            and self.rtype in ("*", other.rtype)
            and other.letters <= self.letters
        )

    def permits(self, rtype: str, letter: str) -> bool:
        return self.context == "system" and self.rtype in ("*", rtype) and letter in self.letters


def parse_scope(text: str) -> Scope | None:
    """The scope, or None if it is not a well-formed resource scope."""
    m = _SCOPE.match(text)
    if m is None:
        return None
    context, rtype, perm = m.groups()
    if perm in _V1:
        return Scope(context, rtype, _V1[perm])
    if perm != "".join(c for c in LETTERS if c in perm):
        return None  # out of order or repeated letters
    return Scope(context, rtype, frozenset(perm))


def grant(requested: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The requested ``system/`` scopes that some allowed scope covers, in request order."""
    allowed_scopes = [s for s in (parse_scope(a) for a in allowed) if s is not None]
    granted: list[str] = []
    for text in requested:
        wanted = parse_scope(text)
        if wanted is None or wanted.context != "system" or text in granted:
            continue
        if any(a.covers(wanted) for a in allowed_scopes):
            granted.append(text)
    return granted


def permits(granted: Iterable[Scope], rtype: str, letter: str) -> bool:
    return any(s.permits(rtype, letter) for s in granted)
