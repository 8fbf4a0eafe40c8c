"""Format-aware edits of the files an integration manages (pure: text in, text out).

Each editor puts cordon's entries into a file's text and takes them out again
without touching anything else: a marked block in a `.env`, keys in a TOML
file (tomlkit keeps every comment and line), keys in a JSON object (indent
kept). An editor that finds nothing to change returns the input unchanged, so a
repeated `setup` writes no byte. No file I/O here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import tomlkit
import tomlkit.exceptions
from tomlkit.items import InlineTable, Table

from cordon import dotenvfile
from cordon.errors import CordonError

Key = tuple[str, ...]


@dataclass(frozen=True)
class Recorded:
    """One entry cordon wrote: the value it wrote and what was there before (None: nothing)."""

    value: str
    prev: str | None


@dataclass(frozen=True)
class Applied:
    text: str | None                  # new text (None: the file should not exist)
    prev: dict[Key, str | None]       # for each desired key, its value before this edit
    created: tuple[Key, ...]          # containers (tables, objects) this edit created


class Editor(Protocol):
    kind: str

    def check(self, text: str | None) -> None:
        """Raise CordonError if the text cannot be edited (before anything is written)."""
        ...

    def apply(self, text: str | None, desired: Mapping[Key, str],
              drop: Mapping[Key, Recorded], created: Sequence[Key]) -> Applied:
        """Set every `desired` key; undo the `drop` entries (no longer wanted)."""
        ...

    def remove(self, text: str | None, recorded: Mapping[Key, Recorded], created: Sequence[Key],
               file_created: bool) -> str | None:
        """Take cordon's entries out; keep whatever the user changed. None: delete the file."""
        ...


def _undo_value(current: str | None, rec: Recorded) -> tuple[bool, str | None]:
    """(change?, new value) for one entry being withdrawn: only if it still holds our value."""
    if current != rec.value:
        return False, current          # the user changed it since: theirs now
    return True, rec.prev


# -- .env: a marked block --------------------------------------------------------------------

class DotenvBlock:
    """cordon's variables as one marked block in a `.env` (`cordon.dotenvfile`); the user's
    lines are untouched.

    Keys are `(NAME,)`. A new block goes at the end so it wins in loaders where
    the last assignment wins (Codex sets each line in turn).
    """

    kind = "dotenv"

    def check(self, text: str | None) -> None:
        pass

    def apply(self, text: str | None, desired: Mapping[Key, str],
              drop: Mapping[Key, Recorded], created: Sequence[Key]) -> Applied:
        values = {k[0]: v for k, v in desired.items()}
        prev: dict[Key, str | None] = {k: None for k in desired}
        base = text or ""
        new = dotenvfile.apply_block(base, values) if values else dotenvfile.remove_block(base)
        if new == base:
            return Applied(text, prev, ())
        return Applied(new if new or text is not None else None, prev, ())

    def remove(self, text: str | None, recorded: Mapping[Key, Recorded], created: Sequence[Key],
               file_created: bool) -> str | None:
        if text is None:
            return None
        new = dotenvfile.remove_block(text)
        if file_created and not new.strip():
            return None
        return new


# -- TOML (Codex's config.toml) --------------------------------------------------------------

MANAGED_COMMENT = "managed by cordon: `cordon integration disable` removes these"


def _toml_get(node: Any, key: str) -> Any:
    try:
        return node[key]
    except (KeyError, tomlkit.exceptions.NonExistentKey):
        return None


class TomlEntries:
    """String values at dotted key paths of a TOML document, through tomlkit.

    A missing parent table is created as a `[a.b]` header (with a comment naming
    cordon); an existing inline table is extended in place.
    """

    kind = "toml"

    def __init__(self, where: str = "config.toml") -> None:
        self.where = where

    def check(self, text: str | None) -> None:
        self.parse(text, self.where)

    @staticmethod
    def parse(text: str | None, where: str = "config.toml") -> tomlkit.TOMLDocument:
        try:
            return tomlkit.parse(text or "")
        except tomlkit.exceptions.ParseError as e:
            raise CordonError(f"{where} is not valid TOML: {e}",
                              "fix the file (or move it away) and run the command again") from None

    def apply(self, text: str | None, desired: Mapping[Key, str],
              drop: Mapping[Key, Recorded], created: Sequence[Key]) -> Applied:
        doc = self.parse(text, self.where)
        prev: dict[Key, str | None] = {}
        made: list[Key] = []
        touched: set[Key] = set()
        changed = False
        for key, rec in drop.items():
            changed |= self._withdraw(doc, key, rec, touched)
        for key, value in desired.items():
            parent, made_here = self._parent(doc, key[:-1], create=True)
            made += made_here
            cur = _toml_get(parent, key[-1])
            prev[key] = None if cur is None else _plain(cur)
            if cur is None or _plain(cur) != value:
                parent[key[-1]] = value
                if isinstance(parent, InlineTable):
                    touched.add(key[:-1])
                changed = True
        if not changed:
            return Applied(text, prev, tuple(made))
        self._tidy(doc, touched)
        self._prune(doc, [c for c in created if c not in made])
        for key in made:
            node, _ = self._parent(doc, key, create=False)
            if isinstance(node, Table) and not node.is_super_table():
                node.add(tomlkit.nl())     # a blank line before whatever table follows
        out = doc.as_string()
        if out.endswith("\n\n") and not (text or "").endswith("\n\n"):
            out = out.rstrip("\n") + "\n"
        return Applied(out, prev, tuple(made))

    def remove(self, text: str | None, recorded: Mapping[Key, Recorded], created: Sequence[Key],
               file_created: bool) -> str | None:
        if text is None:
            return None
        doc = self.parse(text, self.where)
        touched: set[Key] = set()
        changed = False
        for key, rec in recorded.items():
            changed |= self._withdraw(doc, key, rec, touched)
        self._tidy(doc, touched)
        changed |= self._prune(doc, created)
        if not changed:
            return text
        out = doc.as_string()
        if out.endswith("\n\n"):
            out = out.rstrip("\n") + "\n"   # the blank line tomlkit put before a removed table
        if file_created and not out.strip():
            return None
        return out

    def _tidy(self, doc: tomlkit.TOMLDocument, paths: set[Key]) -> None:
        """Re-space inline tables cordon edited: tomlkit leaves the gaps of deleted keys behind."""
        for path in paths:
            parent, _ = self._parent(doc, path[:-1], create=False)
            node = None if parent is None else _toml_get(parent, path[-1])
            if not isinstance(node, InlineTable):
                continue
            s = node.as_string().strip()
            pad = " " if s.startswith("{ ") else ""
            s = re.sub(r"^\{\s*", "{" + pad, s)
            s = re.sub(r",?\s*\}$", pad + "}", s)
            s = re.sub(r",\s*,", ",", s)
            parent[path[-1]] = tomlkit.parse("x = " + s)["x"]

    def _withdraw(self, doc: tomlkit.TOMLDocument, key: Key, rec: Recorded, touched: set[Key]) -> bool:
        parent, _ = self._parent(doc, key[:-1], create=False)
        if parent is None:
            return False
        cur = _toml_get(parent, key[-1])
        change, new = _undo_value(None if cur is None else _plain(cur), rec)
        if not change:
            return False
        if new is None:
            del parent[key[-1]]
        else:
            parent[key[-1]] = new
        if isinstance(parent, InlineTable):
            touched.add(key[:-1])
        return True

    def _prune(self, doc: tomlkit.TOMLDocument, created: Sequence[Key]) -> bool:
        """Delete tables cordon created that are empty now (deepest first)."""
        changed = False
        for key in sorted(created, key=len, reverse=True):
            parent, _ = self._parent(doc, key[:-1], create=False)
            node = None if parent is None else _toml_get(parent, key[-1])
            if isinstance(node, MutableMapping) and not _has_values(node):
                del parent[key[-1]]
                changed = True
        return changed

    def _parent(self, doc: tomlkit.TOMLDocument, path: Key, *, create: bool) -> tuple[Any, list[Key]]:
        node: Any = doc
        made: list[Key] = []
        for i, part in enumerate(path):
            nxt = _toml_get(node, part)
            if nxt is None:
                if not create:
                    return None, made
                super_table = i < len(path) - 1
                if isinstance(node, InlineTable):
                    nxt = tomlkit.inline_table()     # a [table] cannot live inside { ... }
                else:
                    nxt = tomlkit.table(is_super_table=super_table)
                    if not super_table:
                        nxt.add(tomlkit.comment(MANAGED_COMMENT))
                node[part] = nxt
                nxt = node[part]
                made.append(path[:i + 1])
            elif not isinstance(nxt, MutableMapping):
                if not create:
                    return None, made
                raise CordonError(f"'{'.'.join(path[:i + 1])}' in config.toml is not a table",
                                  "fix that key in the file, then run the command again")
            node = nxt
        return node, made


def _plain(item: Any) -> str:
    v = item.unwrap() if hasattr(item, "unwrap") else item
    return v if isinstance(v, str) else json.dumps(v)


def _has_values(node: Any) -> bool:
    return any(True for _ in node)


# -- JSON (Claude Code's settings) -----------------------------------------------------------

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
        change, new = _undo_value(cur if isinstance(cur, str) else None, rec)
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


# -- a whole file cordon creates only when it is absent ----------------------------------------

class CreateOnly:
    """A file cordon writes only if none exists (e.g. Codex's placeholder `auth.json`)."""

    kind = "create-only"

    def __init__(self, content: str) -> None:
        self.content = content

    def check(self, text: str | None) -> None:
        pass

    def apply(self, text: str | None, desired: Mapping[Key, str],
              drop: Mapping[Key, Recorded], created: Sequence[Key]) -> Applied:
        return Applied(self.content if text is None else text, {}, ())

    def remove(self, text: str | None, recorded: Mapping[Key, Recorded], created: Sequence[Key],
               file_created: bool) -> str | None:
        if text is None or (file_created and text == self.content):
            return None
        return text

