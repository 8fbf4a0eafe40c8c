"""The managed block in a user's .env: user lines kept, block replaced/removed exactly."""

from __future__ import annotations

import io

from dotenv import dotenv_values
from hypothesis import given
from hypothesis import strategies as st

from cordon.store.dotenvfile import BEGIN, END, apply_block, has_block, read_block, remove_block, render_block

VARS = {"HTTPS_PROXY": "http://cordon:t@127.0.0.1:1234", "SSL_CERT_FILE": "/run/x y/bundle.pem",
        "ODD": "it's \"$HOME\"\nnext"}


def test_block_is_marked_and_parses_as_dotenv() -> None:
    block = render_block(VARS)
    lines = block.splitlines()
    assert lines[0] == BEGIN and lines[-1] == END
    parsed = dotenv_values(stream=io.StringIO(render_block({k: v for k, v in VARS.items() if k != "ODD"})))
    assert parsed == {k: v for k, v in VARS.items() if k != "ODD"}
    assert read_block(block) == VARS


def test_apply_appends_after_user_lines_and_keeps_them() -> None:
    user = "# mine\nFOO=bar\nexport BAZ='q x'"          # no trailing newline
    out = apply_block(user, VARS)
    assert out.startswith(user + "\n")
    assert has_block(out) and read_block(out) == VARS
    assert remove_block(out) == user + "\n"
    parsed = dotenv_values(stream=io.StringIO(apply_block(user, {"A": "1"})))
    assert parsed["FOO"] == "bar" and parsed["BAZ"] == "q x" and parsed["A"] == "1"


def test_apply_replaces_the_block_in_place() -> None:
    user_top, user_bottom = "A=1\n", "B=2\n"
    first = user_top + render_block({"X": "old"}) + user_bottom
    out = apply_block(first, {"X": "new", "Y": "y"})
    assert out == user_top + render_block({"X": "new", "Y": "y"}) + user_bottom
    assert out.count(BEGIN) == 1
    assert remove_block(out) == user_top + user_bottom


def test_empty_and_blockless_text() -> None:
    assert apply_block("", {"A": "1"}) == render_block({"A": "1"})
    assert remove_block("A=1\n") == "A=1\n"
    assert read_block("A=1\n") == {}
    assert not has_block("A=1\n# >> cordon? no\n")


def test_unterminated_block_is_removed_to_the_end() -> None:
    # a file truncated by hand: the block runs to the end, never eats lines above it
    text = "A=1\n" + BEGIN + "\nX='1'\n"
    assert remove_block(text) == "A=1\n"
    assert apply_block(text, {"X": "2"}) == "A=1\n" + render_block({"X": "2"})


line = st.text(alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
               max_size=30).filter(lambda s: not s.startswith(("# >>> cordon", "# <<< cordon")))


@given(st.lists(line, max_size=8))
def test_apply_then_remove_is_identity_for_newline_terminated_text(lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    assert remove_block(apply_block(text, VARS)) == text
    assert remove_block(apply_block(apply_block(text, {"A": "1"}), VARS)) == text
