"""A managed, clearly marked block inside a user's `.env` file.

Text in, text out: the block is found by its BEGIN/END marker lines and the
user's own lines are never touched. No file I/O here; callers read and write
(atomically) and keep the original bytes when they must restore them exactly.
Never put a real secret in a block: only proxy settings and placeholders.

INTERFACE (exec and integrations rely on it):
    BEGIN/END markers; render_block(vars) -> str; apply_block(text, vars) -> str
    (replaces or appends cordon's block, the user's lines untouched);
    remove_block(text) -> str; read_block(text) -> dict[str, str]; has_block(text) -> bool
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cordon.core.envvars import render

BEGIN = "# >>> cordon managed block: edits here are overwritten (`cordon integration disable` removes it) >>>"
# the block `cordon exec` writes for one session: it goes when the session ends
SESSION_BEGIN = ("# >>> cordon managed block: written by `cordon exec` for its session; "
                 "this file is restored when the session ends >>>")
END = "# <<< cordon managed block <<<"

_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _is_begin(line: str) -> bool:
    return line.rstrip("\r\n").startswith("# >>> cordon")


def _is_end(line: str) -> bool:
    return line.rstrip("\r\n").startswith("# <<< cordon")


def _span(lines: list[str]) -> tuple[int, int] | None:
    """Index of the BEGIN line and of the line after END (END missing: to the end of the file)."""
    for i, line in enumerate(lines):
        if _is_begin(line):
            for j in range(i + 1, len(lines)):
                if _is_end(lines[j]):
                    return i, j + 1
            return i, len(lines)
    return None


def has_block(text: str) -> bool:
    return _span(text.splitlines(keepends=True)) is not None


def render_block(vars: Mapping[str, str], begin: str = BEGIN) -> str:
    """`begin` line, one dotenv assignment per variable, END line; ends with a newline."""
    return begin + "\n" + render(vars, "dotenv") + END + "\n"


def apply_block(text: str, vars: Mapping[str, str], begin: str = BEGIN) -> str:
    """Replace cordon's block in place, or append one (after a newline if the text lacks one).
    `begin` is the marker line: BEGIN for setup's block, SESSION_BEGIN for a session's."""
    lines = text.splitlines(keepends=True)
    span = _span(lines)
    block = render_block(vars, begin)
    if span is not None:
        start, end = span
        tail = "".join(lines[end:])
        return "".join(lines[:start]) + block + tail
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def remove_block(text: str) -> str:
    """The text without cordon's block (and the user's lines exactly as they were)."""
    lines = text.splitlines(keepends=True)
    span = _span(lines)
    if span is None:
        return text
    start, end = span
    return "".join(lines[:start]) + "".join(lines[end:])


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out: list[str] = []
        i, body = 0, raw[1:-1]
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            out.append(c)
            i += 1
        return "".join(out)
    return raw.split(" #", 1)[0].rstrip()


def read_block(text: str) -> dict[str, str]:
    """The variables inside cordon's block (empty when there is none)."""
    lines = text.splitlines(keepends=True)
    span = _span(lines)
    if span is None:
        return {}
    out: dict[str, str] = {}
    for line in lines[span[0] + 1:span[1]]:
        if _is_end(line):
            break
        m = _LINE_RE.match(line.rstrip("\r\n"))
        if m:
            out[m.group(1)] = _unquote(m.group(2))
    return out
