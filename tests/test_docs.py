"""The documentation holds together: every relative link in README.md, SECURITY.md
and docs/*.md names a file of the repository (and, with `#anchor`, a heading of that
page), and the README stays a front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "SECURITY.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where `[x](y)` is not a link."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces
    become hyphens, and a repeated heading gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_pages_exist() -> None:
    names = {p.name for p in PAGES}
    for page in ("exec.md", "configuration.md", "routes-and-secrets.md", "long-lived-proxy.md",
                 "integrations.md", "activation.md", "agents.md", "operations.md",
                 "performance.md", "architecture.md"):
        assert page in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, broken


def test_the_link_check_sees_links_and_anchors() -> None:
    text = "# A `b`: c's d\n\nsee [x](docs/x.md#a-b-cs-d) and `[not](a link)`\n```\n[nor](this)\n```\n## A `b`: c's d\n"
    assert links(text) == ["docs/x.md#a-b-cs-d"]
    assert anchors(text) == {"a-b-cs-d", "a-b-cs-d-1"}


def test_readme_is_a_front_door() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 300
    assert "docs/" in readme


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_work_process_markers(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<!-- section:" not in text
    assert "owned by one piece of work" not in text
