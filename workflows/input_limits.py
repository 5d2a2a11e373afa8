"""The structural limits of a command, applied by the client before it starts a write and by the
workflow when it opens its start argument (workflows/write_start.py): the same limits, checked by
the same code, so the client refuses exactly what a worker would.

Clinical FHIR JSON is shallow, small and made of short strings: a vital sign is ~1 KB and 7
levels deep, a progress note with its base64 text some KB. The limits leave room for any of the
resource types we write (README: Security, "Hostile input") and keep every payload derived from
a command (activity inputs, the plan, the read-back) well inside what Temporal and its JSON
parser take: the parser stops at ~200 levels, the server refuses payloads over 2 MB and warns
above 512 KB.

A refusal names the limit and the element's path, FHIRPath style (``resource.note[0].text``),
never the value: object keys appear in a path only when they are known element names (of the
command, or of the R4 models we write: adapters/reasons.py), others as ``?`` (a key can carry
anything).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, from_json, to_json

from adapters.errors import WritebackError
from adapters.problems import validation_problems
from adapters.reasons import element_path as _element_path
from workflows.contract import WriteCommand

#: Containers (objects, arrays) from the command down; the command itself is level 1.
MAX_DEPTH = 32
#: The command as JSON (UTF-8), as the client sends it and the worker receives it.
MAX_COMMAND_BYTES = 256 * 1024
#: Any string value, in characters (a note's base64 text is the longest we expect).
MAX_STRING_CHARS = 128 * 1024
#: Any object key: FHIR element names are short (``valueCodeableConcept``).
MAX_NAME_CHARS = 64

LIMITS = {
    "max_depth": MAX_DEPTH,
    "max_command_bytes": MAX_COMMAND_BYTES,
    "max_string_chars": MAX_STRING_CHARS,
    "max_name_chars": MAX_NAME_CHARS,
}

#: What a path starts with when it points at the command as a whole.
ROOT = "command"
#: At most this many problems in a reason (a hostile input can have thousands).
MAX_PROBLEMS = 10
#: Names a path may show besides the R4 element names: the command's own fields.
COMMAND_FIELDS = frozenset(WriteCommand.model_fields)

#: Beyond this the text is not even parsed to say which string is too long: the check stays well
#: under a second, and Temporal's deadlock detector (2 s) far away, whatever the input.
_NOT_PARSED_ABOVE = 4 * MAX_COMMAND_BYTES
#: JSON tokens that matter for nesting: strings (skipped whole, keys kept: an unterminated one
#: runs to the end, possessively, so a scan is linear), brackets, separators.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}:,]', re.DOTALL)

Part = str | int


def element_path(parts: Iterable[Part]) -> str:
    """A path in the command: ``resource.note[0].text``; ``command`` for the command itself."""
    return _element_path(parts, ROOT, COMMAND_FIELDS)


class CommandRefused(WritebackError, ValueError):
    """A command that is not started (client) or not run (worker): ``path: code``."""

    def __init__(self, path: str, code: str) -> None:
        self.path = path
        self.code = code
        super().__init__(f"{path}: {code}")

    def for_terminal(self) -> str:
        return f"invalid command: {self}"


class LimitExceeded(CommandRefused):
    """A command over one of the limits; ``limit`` is its name, ``path`` the element's path."""

    def __init__(self, limit: str, path: str) -> None:
        super().__init__(path, f"{limit} exceeded (limit {LIMITS[limit]})")
        self.limit = limit


class NotJson(CommandRefused):
    """Not JSON text (worker), or nothing the JSON serializer can write (client)."""

    def __init__(self, code: str) -> None:
        super().__init__(ROOT, code)


def problems_of(error: ValidationError) -> str:
    """A validation error of the command as ``path: code`` pairs (adapters/problems.py)."""
    problems = [str(p) for p in validation_problems(error, ROOT, COMMAND_FIELDS)]
    shown = "; ".join(dict.fromkeys(problems[:MAX_PROBLEMS]))
    more = len(problems) - MAX_PROBLEMS
    return f"{shown}; and {more} more" if more > 0 else shown


# --- the checks -------------------------------------------------------------------------------


def check_command(command: BaseModel) -> None:
    """The client's check before it starts a write: the command, as the payload converter will
    write it, must pass ``check_json``, the worker's own check."""
    try:
        data = to_json(command)
    except PydanticSerializationError:  # past ~250 levels, a lone surrogate, bytes not UTF-8…
        too_deep = _Walk().first_too_deep(command)
        if too_deep is not None:
            raise LimitExceeded("max_depth", element_path(too_deep)) from None
        raise NotJson("not_json") from None
    check_json(data)


def check_json(data: bytes) -> object:
    """The worker's check of a start argument, and the client's of what it is about to send:
    depth, then strings and names (the first in document order), then the total size. Returns
    the parsed JSON. Linear in the size of ``data``: it runs in the workflow's first task."""
    if len(data) > _NOT_PARSED_ABOVE:
        raise LimitExceeded("max_command_bytes", ROOT)
    try:
        value = from_json(data)
    except ValueError:  # not JSON, or past the parser's own depth limit (~200): where?
        too_deep = _first_too_deep_in_text(data)
        if too_deep is not None:
            raise LimitExceeded("max_depth", element_path(too_deep)) from None
        raise NotJson("json_invalid") from None
    walk = _Walk()
    too_deep = walk.first_too_deep(value)
    if too_deep is not None:
        raise LimitExceeded("max_depth", element_path(too_deep))
    if walk.too_long is not None:
        limit, parts = walk.too_long
        raise LimitExceeded(limit, element_path(parts))
    if len(data) > MAX_COMMAND_BYTES:
        raise LimitExceeded("max_command_bytes", ROOT)
    return value


#: The way back from a node to the root, built only as far as the walk goes: (part, parent).
_Trail = tuple[Part, "_Trail"] | None


def _parts(trail: _Trail) -> list[Part]:
    parts: list[Part] = []
    while trail is not None:
        part, trail = trail
        parts.append(part)
    return parts[::-1]


class _Walk:
    """One pass over a value in document order (the order the JSON serializer writes it): the
    first container deeper than MAX_DEPTH, and the first string or key over its limit. Recursion
    stops at MAX_DEPTH + 1 levels, so it is bounded whatever the input."""

    def __init__(self) -> None:
        self.deep = False
        self.too_deep: _Trail = None
        self.too_long: tuple[str, list[Part]] | None = None

    def first_too_deep(self, value: object) -> list[Part] | None:
        self._visit(value, None, 1)
        return _parts(self.too_deep) if self.deep else None

    def _visit(self, node: object, trail: _Trail, depth: int) -> None:
        members = _members(node)
        if members is None:
            if isinstance(node, str) and len(node) > MAX_STRING_CHARS and not self.too_long:
                self.too_long = ("max_string_chars", _parts(trail))
            return
        if depth > MAX_DEPTH:
            self.deep, self.too_deep = True, trail
            return
        for part, child in members:
            if type(part) is str and len(part) > MAX_NAME_CHARS and not self.too_long:
                self.too_long = ("max_name_chars", _parts((part, trail)))
            if type(child) in _SCALARS:
                continue
            self._visit(child, (part, trail), depth + 1)
            if self.deep:
                return


#: Values with nothing to check (the common case in a long array).
_SCALARS = frozenset({int, float, bool, type(None)})


def _members(node: object) -> Iterable[tuple[Part, object]] | None:
    """A container's members as the JSON serializer writes them; None for anything else."""
    if isinstance(node, dict):
        return ((str(key), value) for key, value in node.items())
    if isinstance(node, list | tuple | set | frozenset):
        return enumerate(node)
    if isinstance(node, BaseModel):
        return ((name, getattr(node, name)) for name in type(node).model_fields)
    return None


def _first_too_deep_in_text(data: bytes) -> list[Part] | None:
    """The first container deeper than MAX_DEPTH in JSON text the parser refused (it stops at
    ~200 levels without saying where); None if there is none."""
    # per open container: [key (raw JSON string) or index, expecting a key]
    frames: list[list[object]] = []
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"{", b"["):
            if len(frames) >= MAX_DEPTH:
                return [_part(frame[0]) for frame in frames]
            frames.append([None, True] if token == b"{" else [0, False])
        elif token in (b"}", b"]"):
            if not frames:
                return None
            frames.pop()
        elif not frames:
            continue
        elif token == b",":
            top = frames[-1]
            if isinstance(top[0], int):
                top[0] += 1
            else:
                top[1] = True
        elif token == b":":
            frames[-1][1] = False
        elif frames[-1][1]:  # a string where a key is expected
            frames[-1][0] = token
    return None


def _part(key_or_index: object) -> Part:
    if isinstance(key_or_index, int):
        return key_or_index
    try:
        key = from_json(key_or_index) if isinstance(key_or_index, bytes) else None
    except ValueError:
        key = None
    return key if isinstance(key, str) else "?"
