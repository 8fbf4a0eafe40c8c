"""The format editors behind the integrations: text in, text out."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from cordon.app.integrations.jsonedit import JsonEntries
from cordon.store.edits import CreateOnly, DotenvBlock, Key, Recorded
from cordon.store.tomlentries import TomlEntries


def recorded(desired: dict[Key, str], prev: dict[Key, str | None]) -> dict[Key, Recorded]:
    return {k: Recorded(v, prev.get(k)) for k, v in desired.items()}


def roundtrip(editor, text: str | None, desired: dict[Key, str]) -> tuple[str | None, str | None]:  # type: ignore[no-untyped-def]
    res = editor.apply(text, desired, {}, [])
    back = editor.remove(res.text, recorded(desired, res.prev), res.created, file_created=text is None)
    return res.text, back


def test_toml_apply_then_remove_gives_the_text_back() -> None:
    text = ('# top\nmodel = "x"\n\n[shell_environment_policy]\ninherit = "core"  # why\n'
            'set = { PATH = "/bin", HTTPS_PROXY = "http://corp" }\n\n[mcp_servers.a]\ncommand = "a"\n')
    desired: dict[Key, str] = {("shell_environment_policy", "set", "HTTPS_PROXY"): "http://cordon",
               ("shell_environment_policy", "set", "SSL_CERT_FILE"): "/b.pem",
               ("mcp_servers", "a", "env", "HTTPS_PROXY"): "http://cordon"}
    new, back = roundtrip(TomlEntries(), text, desired)
    assert new is not None
    data = tomllib.loads(new)
    assert data["shell_environment_policy"]["set"] == {"PATH": "/bin", "HTTPS_PROXY": "http://cordon",
                                                       "SSL_CERT_FILE": "/b.pem"}
    assert data["shell_environment_policy"]["inherit"] == "core"
    assert data["mcp_servers"]["a"]["env"] == {"HTTPS_PROXY": "http://cordon"}
    assert "inherit = \"core\"  # why" in new
    assert back == text


def test_toml_tables_split_across_the_file_and_inline_servers() -> None:
    text = '[mcp_servers.a]\ncommand = "a"\n\n[profiles.p]\nmodel = "m"\n\n[mcp_servers.b]\ncommand = "b"\n' \
           '\n[mcp_servers]\nc = { command = "c" }\n'
    desired: dict[Key, str] = {("mcp_servers", s, "env", "X"): "1" for s in "abc"}
    new, back = roundtrip(TomlEntries(), text, desired)
    assert new is not None
    data = tomllib.loads(new)
    assert all(data["mcp_servers"][s]["env"] == {"X": "1"} for s in "abc")
    assert back == text


def test_toml_new_file_and_no_change_is_the_same_text() -> None:
    desired: dict[Key, str] = {("a", "b", "K"): "v"}
    new, back = roundtrip(TomlEntries(), None, desired)
    assert new is not None and tomllib.loads(new) == {"a": {"b": {"K": "v"}}}
    assert back is None, "a file cordon created and emptied goes away"
    again = TomlEntries().apply(new, desired, {}, [("a",), ("a", "b")])
    assert again.text is new


def test_a_stale_entry_is_withdrawn_on_the_next_apply() -> None:
    ed = TomlEntries()
    first = ed.apply("[t]\nA = \"mine\"\n", {("t", "A"): "c", ("t", "B"): "c"}, {}, [])
    assert first.prev == {("t", "A"): "mine", ("t", "B"): None}
    second = ed.apply(first.text, {("t", "B"): "c"}, {("t", "A"): Recorded("c", "mine")}, [])
    assert second.text == "[t]\nA = \"mine\"\nB = \"c\"\n"


def test_dotenv_block_round_trip_keeps_the_users_lines() -> None:
    text = "A=1\n# note\nB='x y'"
    new, back = roundtrip(DotenvBlock(), text, {("HTTPS_PROXY",): "http://c:t@127.0.0.1:1"})
    assert new is not None and new.startswith("A=1\n# note\nB='x y'\n# >>> cordon")
    assert back == text + "\n"   # the newline apply had to add before its block stays


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.from_regex(r"[A-Z_]{1,8}=[a-z0-9 ]{0,10}|#[ a-z]{0,10}|", fullmatch=True), max_size=6),
       values=st.dictionaries(st.from_regex(r"[A-Z][A-Z_]{0,10}", fullmatch=True),
                              st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
                              min_size=1, max_size=5))
def test_dotenv_remove_undoes_apply(lines: list[str], values: dict[str, str]) -> None:
    text = "".join(line + "\n" for line in lines)
    new, back = roundtrip(DotenvBlock(), text, {(k,): v for k, v in values.items()})
    assert new is not None and "# >>> cordon" in new
    assert back == text


def test_json_keeps_order_indent_and_the_users_values() -> None:
    text = '{\n\t"a": 1,\n\t"env": {\n\t\t"MINE": "x"\n\t}\n}\n'
    desired: dict[Key, str] = {("env", "HTTPS_PROXY"): "http://c", ("env", "MINE"): "cordon"}
    ed = JsonEntries()
    res = ed.apply(text, desired, {}, [])
    assert res.text == '{\n\t"a": 1,\n\t"env": {\n\t\t"MINE": "cordon",\n\t\t"HTTPS_PROXY": "http://c"\n\t}\n}\n'
    assert ed.remove(res.text, recorded(desired, res.prev), res.created, file_created=False) == text
    edited = json.loads(res.text or "")
    edited["env"]["HTTPS_PROXY"] = "http://theirs"
    out = ed.remove(json.dumps(edited, indent="\t") + "\n", recorded(desired, res.prev), res.created,
                    file_created=False)
    assert json.loads(out or "") == {"a": 1, "env": {"MINE": "x", "HTTPS_PROXY": "http://theirs"}}


def test_create_only_never_touches_an_existing_file() -> None:
    ed = CreateOnly("{}\n")
    assert ed.apply(None, {}, {}, []).text == "{}\n"
    assert ed.apply("mine", {}, {}, []).text == "mine"
    assert ed.remove("{}\n", {}, [], file_created=True) is None
    assert ed.remove("changed", {}, [], file_created=True) == "changed"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text("ab\"\\é{}[], ", max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("xyz{\"", max_size=3), inner, max_size=3),
    max_leaves=8)
styles = st.sampled_from([{"indent": 2}, {"indent": 4}, {"indent": "\t"}, {"indent": None},
                          {"indent": None, "separators": (",", ":")}, {"indent": 1, "separators": (", ", " : ")}])


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.text("abenv\"", min_size=1, max_size=4).filter(lambda k: k != "env"), json_values,
                            max_size=5),
       style=styles, env=st.none() | st.dictionaries(st.sampled_from(["MINE", "HTTPS_PROXY"]), st.text(max_size=3)),
       newline=st.booleans())
def test_json_edits_touch_only_the_env_member(data: dict, style: dict, env: dict | None, newline: bool) -> None:  # type: ignore[type-arg]
    if env is not None:
        data = {**data, "env": env}
        if style.get("separators"):
            return   # a user's own env object is rewritten in the standard separators
    text = json.dumps(data, ensure_ascii=False, **style) + ("\n" if newline else "")
    desired: dict[Key, str] = {("env", "HTTPS_PROXY"): "http://cordon:t@127.0.0.1:6790",
                               ("env", "NODE_EXTRA_CA_CERTS"): "/ca.pem"}
    ed = JsonEntries()
    res = ed.apply(text, desired, {}, [])
    assert res.text is not None
    out = json.loads(res.text)
    assert {k: v for k, v in out.items() if k != "env"} == {k: v for k, v in data.items() if k != "env"}
    assert out["env"] == {**(env or {}), "HTTPS_PROXY": desired[("env", "HTTPS_PROXY")],
                          "NODE_EXTRA_CA_CERTS": "/ca.pem"}
    for key, value in data.items():       # every other member keeps its exact text
        if key != "env" and style.get("indent") is None:
            assert json.dumps({key: value}, ensure_ascii=False, **style)[1:-1] in res.text
    back = ed.remove(res.text, recorded(desired, res.prev), res.created, file_created=False)
    assert back == text
