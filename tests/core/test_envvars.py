"""The env contract of docs/exec.md and its rendering for shells, dotenv and JSON."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from cordon.core import envvars
from cordon.core.envvars import child_env, contract_vars, merge_no_proxy, proxy_url, render
from cordon.core.model import Auth, Route, SecretSpec
from cordon.core.routes import PRESETS

TRICKY = {
    "PLAIN": "dummy-replaced-by-cordon",
    "SINGLE": "it's",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME and ${HOME} and $(id) and `id`",
    "SPACES": "  two  spaces  ",
    "NEWLINE": "line one\nline two",
    "BACKSLASH": "a\\b\\n\\'c",
    "MIXED": "it's $HOME \"x\"\n\\ end",
    "EMPTY": "",
    "GLOB": "*?[a]",
    "SEMICOLON": "a; echo pwned",
}


def _route(name: str, host: str, env: tuple[str, ...], placeholder: str = "dummy-replaced-by-cordon") -> Route:
    return Route(name=name, host=host,
                 auth=Auth(type="header", header_name="x-api-key", placeholder_env=env,
                           placeholder=placeholder, secret=SecretSpec(source="keyring", account=name)))


def test_proxy_url_is_http_with_token() -> None:
    assert proxy_url(4321, "abc_-DEF") == "http://cordon:abc_-DEF@127.0.0.1:4321"
    assert proxy_url(1, "a/b@c") == "http://cordon:a%2Fb%40c@127.0.0.1:1"


def test_no_proxy_drops_entries_that_bypass_routes() -> None:
    hosts = ["api.openai.com", "api.anthropic.com", "10.1.2.3"]
    inherited = ("example.org, .openai.com,api.openai.com:443, *.anthropic.com,*,"
                 "API.OPENAI.COM.,10.0.0.0/8,internal.local,openai.com,localhost")
    got = merge_no_proxy(inherited, hosts).split(",")
    assert got == ["example.org", "internal.local", "localhost", "127.0.0.1", "::1"]


def test_no_proxy_keeps_unrelated_suffixes() -> None:
    # "ai.com" is not a parent domain of api.openai.com, and "pi.openai.com" is not either
    got = merge_no_proxy("ai.com,pi.openai.com", ["api.openai.com"])
    assert got == "ai.com,pi.openai.com,localhost,127.0.0.1,::1"
    assert merge_no_proxy(None, []) == "localhost,127.0.0.1,::1"


def test_contract_table_exactly() -> None:
    openai = PRESETS["openai"].route(SecretSpec(source="env", var="OPENAI_API_KEY"))
    other = _route("x", "api.example.com", ("X_KEY",), placeholder="ph-x")
    v = contract_vars({"NO_PROXY": "api.example.com,corp", "no_proxy": "lower"}, port=5555, token="tok",
                      bundle_path=Path("/s/bundle.pem"), ca_path="/s/ca.pem", routes=[openai, other],
                      session_id="sid", codex_home="/p/.codex")
    url = "http://cordon:tok@127.0.0.1:5555"
    assert v == {
        "HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url,
        "NO_PROXY": "corp,lower,localhost,127.0.0.1,::1", "no_proxy": "corp,lower,localhost,127.0.0.1,::1",
        "SSL_CERT_FILE": "/s/bundle.pem", "REQUESTS_CA_BUNDLE": "/s/bundle.pem",
        "CURL_CA_BUNDLE": "/s/bundle.pem", "GIT_SSL_CAINFO": "/s/bundle.pem",
        "CARGO_HTTP_CAINFO": "/s/bundle.pem", "AWS_CA_BUNDLE": "/s/bundle.pem",
        "CODEX_CA_CERTIFICATE": "/s/bundle.pem",
        "NODE_EXTRA_CA_CERTS": "/s/ca.pem", "DENO_CERT": "/s/ca.pem",
        "NODE_USE_ENV_PROXY": "1",
        "CODEX_HOME": "/p/.codex",
        "CORDON_SESSION": "sid",
        "OPENAI_API_KEY": "dummy-replaced-by-cordon", "CODEX_API_KEY": "dummy-replaced-by-cordon",
        "X_KEY": "ph-x",
    }


def test_contract_without_session_or_codex_home() -> None:
    v = contract_vars(port=1, token="t", bundle_path="/b", ca_path="/c", routes=[])
    assert "CORDON_SESSION" not in v and "CODEX_HOME" not in v
    assert v["NO_PROXY"] == "localhost,127.0.0.1,::1"


def test_child_env_unsets_then_sets() -> None:
    openai = PRESETS["openai"].route(SecretSpec(source="env", var="REAL_OPENAI"))
    base = {"PATH": "/bin", "REAL_OPENAI": "sk-real", "OPENAI_API_KEY": "sk-real-too",
            "HTTPS_PROXY": "http://elsewhere:1", "SSL_CERT_FILE": "/old"}
    env = child_env(base, port=9, token="t", bundle_path="/b", ca_path="/c", routes=[openai],
                    session_id="s", remove=["REAL_OPENAI"])
    assert "REAL_OPENAI" not in env
    assert env["OPENAI_API_KEY"] == env["CODEX_API_KEY"] == "dummy-replaced-by-cordon"
    assert env["HTTPS_PROXY"] == "http://cordon:t@127.0.0.1:9"
    assert env["SSL_CERT_FILE"] == "/b" and env["PATH"] == "/bin"
    assert "sk-real" not in json.dumps(env)
    assert base["REAL_OPENAI"] == "sk-real"  # the caller's mapping is untouched


def test_render_rejects_bad_names_and_formats() -> None:
    with pytest.raises(ValueError):
        render({"BAD-NAME": "x"}, "shell")
    with pytest.raises(ValueError):
        render({"A": "x"}, "powershell")


def test_render_json_round_trips() -> None:
    assert json.loads(render(TRICKY, "json")) == TRICKY


def test_render_dotenv_round_trips_through_python_dotenv() -> None:
    # MIXED holds a quote *and* a `$`: only double quotes can carry it, and there the
    # dialects differ (below); every other value parses back exactly
    values = {k: v for k, v in TRICKY.items() if k != "MIXED"}
    text = render(values, "dotenv")
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == values


def test_render_dotenv_never_lets_dollar_expand() -> None:
    # single quotes are literal in dotenvy (Codex's parser) and python-dotenv for `$NAME`
    assert render({"D": "$HOME"}, "dotenv") == "D='$HOME'\n"
    # in double quotes dotenvy expands `$NAME` unless escaped as `\$`
    assert render({"M": TRICKY["MIXED"]}, "dotenv") == 'M="it\'s \\$HOME \\"x\\"\\n\\\\ end"\n'


def _printer(names: list[str]) -> str:
    # prints each variable NUL-terminated, so newlines and spaces survive exactly
    return "".join(f'printf "%s\\0" "${name}"; ' for name in names)


@pytest.mark.parametrize("shell", ["bash", "zsh", "sh"])
def test_render_shell_evals_exactly(shell: str) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed (scripts/test installs it)")
    names = list(TRICKY)
    script = render(TRICKY, "shell") + _printer(names)
    out = subprocess.run([exe, "-c", f"eval {envvars.quote_sh(script)}"], capture_output=True,
                         check=True).stdout.decode()
    assert out.split("\0")[:-1] == list(TRICKY.values())


def test_render_fish_evals_exactly() -> None:
    exe = shutil.which("fish")
    if exe is None:
        pytest.skip("fish is not installed (scripts/test installs it)")
    names = list(TRICKY)
    printer = "".join(f'printf "%s\\0" "${name}"; ' for name in names)
    script = render(TRICKY, "fish") + printer
    out = subprocess.run([exe, "--no-config", "-c", script], capture_output=True, check=True).stdout.decode()
    assert out.split("\0")[:-1] == list(TRICKY.values())
    # the way hooks use it: eval of the captured text
    out2 = subprocess.run([exe, "--no-config", "-c",
                           f"eval (printf %s {envvars.quote_fish(render(TRICKY, 'fish'))} | string collect); "
                           + printer], capture_output=True, check=True).stdout.decode()
    assert out2.split("\0")[:-1] == list(TRICKY.values())
