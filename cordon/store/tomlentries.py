"""String values at dotted key paths of a TOML file, edited in place (pure: text in, text out).

tomlkit keeps every comment, blank line and table the edit does not touch. Used
by `cordon setup codex` (an `Editor` of `cordon.store.edits`) to write Codex's
`config.toml` and by `cordon exec` sessions (`session`) to point those entries
at the session's proxy and back. No file I/O here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import InlineTable, Table

from cordon.core.errors import CordonError
from cordon.store.edits import Applied, Key, Recorded, undo_value

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
        change, new = undo_value(None if cur is None else _plain(cur), rec)
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


def value_at(doc: Any, key: Key) -> str | None:
    """The value at `key` (a string, or its JSON form), None when the key or a table is missing."""
    node: Any = doc
    for part in key[:-1]:
        node = _toml_get(node, part)
        if not isinstance(node, MutableMapping):
            return None
    item = _toml_get(node, key[-1])
    return None if item is None else _plain(item)
