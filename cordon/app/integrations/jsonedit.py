"""Keys in a JSON object file (Claude Code's settings), rewriting only what changes.

Pure: text in, text out. The top-level members cordon does not change keep
every byte (a small scanner finds their spans); a changed member is rendered
in the file's own indentation. Used through the `Editor` protocol of `edits`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cordon.core.errors import CordonError
from cordon.store.edits import Applied, Key, Recorded, undo_value


def _json_indent(text: str) -> str | int | None:
    """The file's indent: a width, a tab, or None for a file written on one line."""
    if "\n" not in text.strip():
        return None
    m = re.search(r"^\{[ \t]*\r?\n([ \t]+)\S", text, re.M)
    if m:
        ind = m.group(1)
        return ind if "\t" in ind else len(ind)
    return 2


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _string_end(text: str, i: int) -> int:
    """Index after the JSON string starting at text[i] == '"'."""
    i += 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _value_end(text: str, i: int) -> int:
    """Index after the JSON value starting at text[i] (the text is known to parse)."""
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] in "{[":
        depth = 0
        while True:
            c = text[i]
            if c == '"':
                i = _string_end(text, i)
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    while i < len(text) and text[i] not in ",}] \t\r\n":
        i += 1
    return i


@dataclass(frozen=True)
class _Member:
    key: str
    start: int        # the key's opening quote
    value: int        # the value's first character
    end: int          # after the value


def _members(text: str) -> tuple[int, int, list[_Member]]:
    """(index of '{', index of its '}', the top-level members) of a JSON object text."""
    opening = _skip_ws(text, 0)
    i, out = opening + 1, list[_Member]()
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return opening, i, out
        if text[i] == ",":
            i += 1
            continue
        key_end = _string_end(text, i)
        colon = _skip_ws(text, key_end)
        value = _skip_ws(text, colon + 1)
        end = _value_end(text, value)
        out.append(_Member(json.loads(text[i:key_end]), i, value, end))
        i = end


def _splice(text: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """Rewrite only the top-level members that differ, so the rest of the file keeps every byte."""
    indent = _json_indent(text)
    pad = indent if isinstance(indent, str) else " " * (indent or 0)
    nl = "" if indent is None else "\n"

    def render(value: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False).replace("\n", "\n" + pad)

    opening, closing, members = _members(text)
    edits: list[tuple[int, int, str]] = []          # (start, end, replacement) on the original text
    kept = [m for m in members if m.key in new]
    for n, m in enumerate(members):
        if m.key not in new:                         # take the member and one comma next to it out
            if n > 0:
                edits.append((members[n - 1].end, m.end, ""))
            elif len(members) > 1:
                edits.append((m.start, members[1].start, ""))
            else:
                edits.append((opening + 1, closing, ""))
        elif old[m.key] != new[m.key]:
            edits.append((m.value, m.end, render(new[m.key])))
    sep = "," + (nl or " ")
    added = "".join(f"{sep}{pad}{json.dumps(k, ensure_ascii=False)}: {render(v)}" for k, v in new.items()
                    if k not in old)
    if added:
        if kept:
            edits.append((kept[-1].end, kept[-1].end, added))
        else:
            edits.append((opening + 1, closing, nl + added[len(sep):] + nl))
    # from the end backwards; at one position a removal goes before an insertion
    for start, end, repl in sorted(edits, key=lambda e: (e[0], e[1] - e[0]), reverse=True):
        text = text[:start] + repl + text[end:]
    return text


class JsonEntries:
    """String values at key paths of a JSON object file, keeping key order and indent."""

    kind = "json"

    def __init__(self, where: str = "settings file") -> None:
        self.where = where

    def check(self, text: str | None) -> None:
        self.parse(text)

    def parse(self, text: str | None) -> dict[str, Any]:
        if text is None or not text.strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CordonError(f"{self.where} is not valid JSON: {e}",
                              "fix the file (or move it away) and run the command again") from None
        if not isinstance(data, dict):
            raise CordonError(f"{self.where} does not hold a JSON object",
                              "the file must start with '{'; fix it and run the command again")
        return data

    def dump(self, data: dict[str, Any], text: str | None) -> str:
        """`data` as text: only the changed top-level members of `text` are rewritten."""
        base = text or ""
        if base.strip():
            return _splice(base, self.parse(base), data)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def apply(self, text: str | None, desired: Mapping[Key, str],
              drop: Mapping[Key, Recorded], created: Sequence[Key]) -> Applied:
        data = self.parse(text)
        before = json.dumps(data, sort_keys=False)
        prev: dict[Key, str | None] = {}
        made: list[Key] = []
        for key, rec in drop.items():
            self._withdraw(data, key, rec)
        for key, value in desired.items():
            parent = self._parent(data, key[:-1], made)
            cur = parent.get(key[-1])
            prev[key] = cur if isinstance(cur, str) or cur is None else json.dumps(cur)
            parent[key[-1]] = value
        self._prune(data, [c for c in created if c not in made])
        if json.dumps(data, sort_keys=False) == before and text is not None:
            return Applied(text, prev, tuple(made))
        return Applied(self.dump(data, text), prev, tuple(made))

    def remove(self, text: str | None, recorded: Mapping[Key, Recorded], created: Sequence[Key],
               file_created: bool) -> str | None:
        if text is None:
            return None
        data = self.parse(text)
        before = json.dumps(data, sort_keys=False)
        for key, rec in recorded.items():
            self._withdraw(data, key, rec)
        self._prune(data, created)
        if file_created and not data:
            return None
        if json.dumps(data, sort_keys=False) == before:
            return text
        return self.dump(data, text)

    def _parent(self, data: dict[str, Any], path: Key, made: list[Key]) -> dict[str, Any]:
        node = data
        for i, part in enumerate(path):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
                made.append(path[:i + 1])
            elif not isinstance(nxt, dict):
                raise CordonError(f"'{'.'.join(path[:i + 1])}' in {self.where} is not an object",
                                  "fix that key in the file, then run the command again")
            node = nxt
        return node

    def _find(self, data: dict[str, Any], path: Key) -> dict[str, Any] | None:
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    def _withdraw(self, data: dict[str, Any], key: Key, rec: Recorded) -> None:
        parent = self._find(data, key[:-1])
        if parent is None:
            return
        cur = parent.get(key[-1])
        change, new = undo_value(cur if isinstance(cur, str) else None, rec)
        if change:
            if new is None:
                parent.pop(key[-1], None)
            else:
                parent[key[-1]] = new

    def _prune(self, data: dict[str, Any], created: Sequence[Key]) -> None:
        for key in sorted(created, key=len, reverse=True):
            parent = self._find(data, key[:-1])
            if parent is not None and parent.get(key[-1]) == {}:
                del parent[key[-1]]
