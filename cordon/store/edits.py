"""Format-aware edits of the user files cordon manages (pure: text in, text out).

Each editor puts cordon's entries into a file's text and takes them out again
without touching anything else: a marked block in a `.env`, keys in a TOML
file (`cordon.store.tomlentries`), keys in a JSON file
(`cordon.app.integrations.jsonedit`). An editor that finds nothing to change
returns the input unchanged, so a repeated `setup` writes no byte. No file I/O
here (and no tomlkit: `cordon exec` imports this module on every run).
`cordon.store.userfiles` records and restores what they change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cordon.store import dotenvfile

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


def undo_value(current: str | None, rec: Recorded) -> tuple[bool, str | None]:
    """(change?, new value) for one entry being withdrawn: only if it still holds our value."""
    if current != rec.value:
        return False, current          # the user changed it since: theirs now
    return True, rec.prev



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


# -- .env: a marked block --------------------------------------------------------------------

class DotenvBlock:
    """cordon's variables as one marked block in a `.env` (`cordon.store.dotenvfile`); the user's
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

