"""cordon.core.shellhooks: quoting checked by real bash, zsh, fish and sh; rendering, hooks, shims."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from cordon.core.shellhooks import (
    RESTORE_VAR,
    STATE_VAR,
    Call,
    EvalOutput,
    EvalVar,
    Export,
    Guard,
    HookState,
    Keep,
    Log,
    Op,
    Unset,
    enter_ops,
    is_shim_text,
    leave_ops,
    path_prepend,
    path_remove,
    quote,
    render,
    render_guard,
    render_hook,
    render_shim,
)

NASTY = [
    "", " ", "plain", "two words", "'", "''", '"', "\\", "\\'", "'\\''", "$HOME", "${HOME}", "$(id)",
    "`id`", "!", "!!", "*", "?", "[a]", "{a,b}", "~", "~root", "#x", "a;b", "a|b", "a&b", "<>",
    "\n", "a\nb", "\r\n", "\t", "\x01\x02\x7f", "é", "日本", "$'x'", '$"x"', "%self", "-n", "--",
    "(a)", "a\\nb", "trailing\\", "=", "a=b", "😀", "\\x41", "a'b\"c$d`e\\f",
]

SHELL_BINS = {"bash": "bash", "zsh": "zsh", "fish": "fish", "sh": "sh", "direnv": "bash"}


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (scripts/test installs it)")


def _random_values(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "ab '\"\\$`!*?[]{}~#;|&<>()\n\t\r%=-é\x01\x7f"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def _run(shell: str, script: str, tmp_path: Path, env: dict[str, str] | None = None) -> bytes:
    _need(SHELL_BINS[shell])
    f = tmp_path / f"script.{shell}"
    f.write_text(script)
    args = {"bash": ["bash", "--norc", "--noprofile"], "zsh": ["zsh", "-f"], "fish": ["fish", "--no-config"],
            "sh": ["sh"], "direnv": ["bash", "--norc", "--noprofile"]}[shell]
    # a session of its own: a test may signal its whole process group
    r = subprocess.run([*args, str(f)], capture_output=True, env=env or {"PATH": os.environ["PATH"]},
                       timeout=60, start_new_session=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "sh", "direnv"])
def test_quote_round_trips_through_the_real_shell(shell: str, tmp_path: Path) -> None:
    values = NASTY + _random_values(150, seed=7)
    lines = []
    for v in values:
        if shell == "fish":
            lines.append(f"set -l v {quote(v, shell)}; printf '%s\\0' \"$v\"")
        else:
            lines.append(f"v={quote(v, shell)}; printf '%s\\0' \"$v\"")
    out = _run(shell, "\n".join(lines) + "\n", tmp_path)
    got = out.decode("utf-8").split("\0")[:-1]
    assert got == values


def test_quote_leaves_safe_words_bare_and_refuses_nul() -> None:
    assert quote("/usr/bin/codex", "bash") == "/usr/bin/codex"
    assert quote("a b", "bash") == "'a b'"
    assert quote("it's", "fish") == "'it\\'s'"
    with pytest.raises(ValueError):
        quote("a\x00b", "bash")
    with pytest.raises(ValueError):
        quote("x", "tcsh")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_rendered_operations_do_what_they_say(shell: str, tmp_path: Path) -> None:
    tricky = "it's $HOME `x`\nline2 \\ end"
    ops: list[Op] = [
        Export("A", tricky), Export("GONE", "x"), Unset("GONE"),
        Keep("_cordon_t", render([Export("B", tricky), Unset("A")], shell)),
        EvalVar("_cordon_t"), EvalVar("_cordon_never_set"),
        Call(("printf", "%s|", "arg one", "it's")),
        Export("PATH", "/one dir:" + os.environ["PATH"]),
        Log("hello 'there'"),
    ]
    script = render(ops, shell)
    if shell == "fish":
        check = ("printf '%s\\0' \"$B\" (set -q A; and echo set; or echo unset) "
                 "(set -q GONE; and echo set; or echo unset) (string join : $PATH)\n"
                 "printf '%s\\0' (set -q _cordon_t; and echo kept)\n"
                 "printf '%s\\0' (set -x | string match -q '_cordon_t *'; and echo exported; or echo private)\n")
    else:
        check = ("printf '%s\\0' \"$B\" \"${A-unset}\" \"${GONE-unset}\" \"$PATH\"\n"
                 "printf '%s\\0' \"${_cordon_t:+kept}\"\n"
                 "printf '%s\\0' \"$(env | grep -q '^_cordon_t=' && echo exported || echo private)\"\n")
    env = {"PATH": os.environ["PATH"]}
    r = subprocess.run(
        [*({"bash": ["bash", "--norc"], "zsh": ["zsh", "-f"], "fish": ["fish", "--no-config"]}[shell]),
         "-c", script + check], capture_output=True, env=env, timeout=60)
    _need(shell)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.startswith("arg one|it's|")
    fields = out[len("arg one|it's|"):].split("\0")
    assert fields[0] == tricky
    assert fields[1] == "unset" and fields[2] == "unset"
    assert fields[3] == "/one dir:" + os.environ["PATH"]
    assert fields[-3:-1] == ["kept", "private"]
    assert "cordon: hello 'there'" in r.stderr.decode()


def test_render_direnv_logs_through_direnv_and_rejects_bad_names() -> None:
    assert render([Log("x"), Log("bad", error=True)], "direnv") == \
        "log_status 'cordon: x';\nlog_error 'cordon: bad';\n"
    assert render([EvalOutput(("cordon", "hook", "export", "fish"))], "fish") == \
        "cordon hook export fish | source;\n"
    with pytest.raises(ValueError):
        render([Export("A-B", "x")], "bash")
    with pytest.raises(ValueError):
        render([Export("A", "x")], "powershell")


def test_path_edits_keep_everything_else() -> None:
    assert path_prepend("/a:/s:/b", "/s") == "/s:/a:/b"
    assert path_prepend("", "/s") == "/s"
    assert path_remove("/s:/a:/b", "/s") == "/a:/b"
    assert path_remove("/a:/s:/b:/s", "/s") == "/a:/b:/s"   # only the copy we added
    assert path_remove("/a:/b", "/s") == "/a:/b"
    assert path_remove(path_prepend("/a::/b", "/s"), "/s") == "/a::/b"


def test_state_round_trip_and_garbage() -> None:
    s = HookState(config="/p/cordon.toml", shims="/st/shims", vars=("OPENAI_API_KEY",), stamp="1:2")
    assert HookState.decode(s.encode()) == s
    for bad in (None, "", "{", "[]", '{"config": 1}', '{"config":"a","shims":"b","vars":["A B"],"stamp":"1"}'):
        assert HookState.decode(bad) is None


def test_enter_then_leave_plans_restore_the_environment() -> None:
    env = {"PATH": "/usr/bin", "OPENAI_API_KEY": "real"}
    state = HookState(config="/p/cordon.toml", shims="/s", vars=("OPENAI_API_KEY", "CODEX_API_KEY"), stamp="1:1")
    enter = enter_ops(env, state, {"OPENAI_API_KEY": "ph", "CODEX_API_KEY": "ph"}, "bash", "on")
    assert Export("PATH", "/s:/usr/bin") in enter
    assert Export(STATE_VAR, state.encode()) in enter
    keep = next(op for op in enter if isinstance(op, Keep))
    assert keep.name == RESTORE_VAR and "real" in keep.value
    # the old value is only ever in the private variable, never exported
    assert not any(isinstance(op, Export) and "real" in op.value for op in enter)
    leave = leave_ops({"PATH": "/s:/usr/bin"}, state, "off")
    assert leave[0] == Export("PATH", "/usr/bin")
    assert Unset("OPENAI_API_KEY") in leave and EvalVar(RESTORE_VAR) in leave and Unset(STATE_VAR) in leave


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_guard_is_true_only_while_nothing_changed(shell: str, tmp_path: Path) -> None:
    proj = tmp_path / "p r o j"
    sub = proj / "sub"
    sub.mkdir(parents=True)
    cfg = proj / "cordon.toml"
    cfg.write_text("")
    stamp = tmp_path / "stamp"
    stamp.write_text("")
    os.utime(cfg, (1000, 1000))
    g = render_guard(Guard(pwd=str(sub), absent=(str(sub / "cordon.toml"),), unchanged=((str(cfg), str(stamp)),)),
                     shell)
    test = ("if {g}; echo yes; else; echo no; end" if shell == "fish"
            else "if {g}; then echo yes; else echo no; fi").format(g=g) + "\n"
    closer = quote(str(sub / "cordon.toml"), shell)
    script = (f"cd {quote(str(sub), shell)}\n{test}"               # nothing changed
              f"cd {quote(str(proj), shell)}\n{test}"              # another directory
              f"cd {quote(str(sub), shell)}\ntouch {closer}\n{test}"  # a closer cordon.toml
              f"rm {closer}\ntouch {quote(str(cfg), shell)}\n{test}")  # the config was edited
    assert _run(shell, script, tmp_path).decode().split() == ["yes", "no", "no", "no"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_hooks_parse_and_install_once(shell: str, tmp_path: Path) -> None:
    hook = render_hook(shell, ["/opt/my cordon/bin/cordon", "hook", "export", shell])
    assert "'/opt/my cordon/bin/cordon' hook export " + shell in hook
    (tmp_path / "hook").write_text(hook)
    h = quote(str(tmp_path / "hook"), shell)
    if shell == "bash":
        script = (f"PROMPT_COMMAND='echo mine'\nsource {h}\nsource {h}\necho \"$PROMPT_COMMAND\"\n"
                  f"PROMPT_COMMAND=(a b)\nsource {h}\nsource {h}\necho \"${{PROMPT_COMMAND[*]}}\"\n")
        expect = "_cordon_hook;echo mine\n_cordon_hook a b\n"
    elif shell == "zsh":
        script = (f"precmd_functions=(mine)\nsource {h}\nsource {h}\n"
                  "echo \"$precmd_functions | $chpwd_functions\"\n")
        expect = "_cordon_hook mine | _cordon_hook\n"
    else:
        script = (f"source {h}\nsource {h}\n"
                  "functions --handlers-type generic | string match -e _cordon_hook | count\n"
                  "functions --handlers-type variable | string match -e _cordon_hook | count\n")
        expect = "1\n1\n"
    assert _run(shell, script, tmp_path).decode() == expect


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_hook_keeps_status_and_the_users_sigint_trap(shell: str, tmp_path: Path) -> None:
    # the export command here is `echo`, which prints nothing to evaluate but a newline
    hook = render_hook(shell, ["true"])
    script = (hook + "trap 'echo user-trap' INT\n"
              "false; _cordon_hook; echo \"status=$?\"\n"
              "(exit 7); _cordon_hook; echo \"status=$?\"\n"
              + ("trap -p INT\n" if shell == "bash" else "trap\n"))
    out = _run(shell, script, tmp_path).decode()
    assert "status=1\n" in out and "status=7\n" in out
    assert "user-trap" in out


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_hook_ignores_sigint_while_evaluating(shell: str, tmp_path: Path) -> None:
    # a Ctrl-C arriving halfway through the printed code must not leave half of it applied
    code = "export A=1; kill -INT $$; export B=1"
    hook = render_hook(shell, ["printf", "%s", code])
    out = _run(shell, hook + "_cordon_hook\necho \"A=${A-} B=${B-}\"\n", tmp_path).decode()
    assert out == "A=1 B=1\n"
    # the control: evaluated without the hook, the same code stops the shell halfway
    r = subprocess.run([SHELL_BINS[shell], "-c", f"eval '{code}'; echo \"B=${{B-}}\""],
                       capture_output=True, text=True, timeout=60, start_new_session=True)
    assert "B=1" not in r.stdout


def test_fish_hook_keeps_status(tmp_path: Path) -> None:
    hook = render_hook("fish", ["true"])
    out = _run("fish", hook + "false; _cordon_hook; echo status=$status\n", tmp_path).decode()
    assert out == "status=1\n"


def test_shim_runs_cordon_exec_with_the_absolute_binary_and_the_arguments(tmp_path: Path) -> None:
    fake_cordon = tmp_path / "my cordon"
    fake_cordon.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\nprintf 'DIFF=%s\\n' \"${DIRENV_DIFF-unset}\"\n")
    fake_cordon.chmod(0o755)
    real = tmp_path / "bin dir" / "codex"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    shim = tmp_path / "codex"
    text = render_shim("codex", str(real), [str(fake_cordon)])
    shim.write_text(text)
    shim.chmod(0o755)
    assert is_shim_text(text.encode()[:256])
    r = subprocess.run([str(shim), "a b", "it's", "$HOME", ""], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "DIRENV_DIFF": "secret-holding"}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:-1] == ["exec", "--", str(real), "a b", "it's", "$HOME", "", "DIFF=unset"]
    real.unlink()
    r = subprocess.run([str(shim)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 127 and "is gone" in r.stderr and str(real) in r.stderr


def test_shim_refuses_a_relative_target_and_marker_detection() -> None:
    with pytest.raises(ValueError):
        render_shim("codex", "bin/codex", ["cordon"])
    assert not is_shim_text(b"#!/bin/sh\necho hi\n")
    assert not is_shim_text(b"")

