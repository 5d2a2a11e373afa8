"""JSON Patch (RFC 6902) over JSON Pointers (RFC 6901): add, remove, replace, test, move, copy.

:func:`apply_patch` returns a patched deep copy. A malformed patch document raises
:class:`PatchSyntaxError`; a well-formed patch that cannot be applied (missing
path, failed ``test``) raises :class:`PatchConflict`.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchSyntaxError(ValueError):
    pass


class PatchConflict(ValueError):
    pass


def _tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PatchSyntaxError("JSON Pointer must be '' or start with '/'")
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchConflict("array index is not a number")
    i = int(token)
    if i > len(container) or (i == len(container) and not for_add):
        raise PatchConflict("array index out of range")
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchConflict("path does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchConflict("path does not exist")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchConflict("path does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchConflict("path does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchConflict("path does not exist")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchConflict("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchConflict("path does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise PatchConflict("path does not exist")


def apply_patch(document: Any, patch: Any) -> Any:
    if not isinstance(patch, list):
        raise PatchSyntaxError("a JSON Patch document is an array of operations")
    doc = copy.deepcopy(document)
    for op in patch:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchSyntaxError("each operation is an object with 'op'")
        kind = op["op"]
        path = _tokens(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchSyntaxError(f"'{kind}' needs a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if not path:
                doc = copy.deepcopy(op["value"])
            else:
                _remove(doc, path)
                doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchConflict("test operation failed")
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"))
            if kind == "move" and path[: len(source)] == source and path != source:
                raise PatchConflict("cannot move a value into one of its children")
            value = _get(doc, source)
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, path, copy.deepcopy(value))
        else:
            raise PatchSyntaxError(f"unknown op {kind!r}")
    return doc
