"""The Codex CLI integration: `$CODEX_HOME/.env`, `config.toml` and a placeholder `auth.json`.

Codex loads `$CODEX_HOME/.env` into its own environment but drops every
`CODEX_*` name there, so the `.env` gets the proxy/CA variables and the
placeholders without them. Commands Codex runs get the variables through
`[shell_environment_policy.set]`; MCP servers start with a cleared
environment, so each stdio server's `env` table gets the proxy/CA variables.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cordon.app.integrations.scaffold import exposed_to_git
from cordon.core.model import DEFAULT_PLACEHOLDER
from cordon.store.edits import CreateOnly, DotenvBlock, Editor, Key
from cordon.store.paths import Paths
from cordon.store.tomlentries import TomlEntries
from cordon.store.userfiles import DesiredFile

if TYPE_CHECKING:
    from cordon.app.integrations import IntegrationContext
    from cordon.store.scope import Scope

NAME = "codex"
TOKEN = "codex"
PRESET = "openai"
API_HOST = "api.openai.com"
CODEX_PREFIX = "CODEX_"      # Codex ignores these names in its .env (openai/codex PR #2308)


def auth_json(placeholder: str = DEFAULT_PLACEHOLDER) -> str:
    """API-key login holding only the placeholder, so Codex starts without a login prompt."""
    return json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": placeholder}, indent=2) + "\n"


def codex_home(scope: Scope, env: Mapping[str, str], paths: Paths) -> Path:
    """`<project>/.codex`; user scope: `$CODEX_HOME`, else `~/.codex` (where Codex looks)."""
    if scope.kind == "project":
        assert scope.project_dir is not None
        return scope.project_dir / ".codex"
    v = env.get("CODEX_HOME")
    if v:
        p = Path(v).expanduser()
        return p if p.is_absolute() else paths.cwd / p
    return paths.home / ".codex"


def files(scope: Scope, env: Mapping[str, str], paths: Paths) -> list[tuple[Path, Editor]]:
    home = codex_home(scope, env, paths)
    return [(home / ".env", DotenvBlock()), (home / "config.toml", TomlEntries(str(home / "config.toml"))),
            (home / "auth.json", CreateOnly(auth_json()))]


def dotenv_vars(vars_: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in vars_.items() if not k.upper().startswith(CODEX_PREFIX)}


def _placeholder(ctx: IntegrationContext) -> str:
    for r in ctx.config.routes:
        if r.host == API_HOST:
            return r.auth.placeholder
    return DEFAULT_PLACEHOLDER


def stdio_servers(doc: Any) -> Iterator[str]:
    """Names of the `[mcp_servers.<name>]` that Codex starts as a process (`command`).

    Servers reached by `url` are left alone: Codex refuses `env` on them.
    """
    servers = doc.get("mcp_servers")
    if not isinstance(servers, Mapping):
        return
    for name, server in servers.items():
        if isinstance(server, Mapping) and "command" in server:
            yield str(name)


def targets(ctx: IntegrationContext) -> list[DesiredFile]:
    home = codex_home(ctx.scope, ctx.env, ctx.paths)
    env_file = DesiredFile(home / ".env", DotenvBlock(), {(k,): v for k, v in dotenv_vars(ctx.vars).items()})
    cfg_path = home / "config.toml"
    try:
        text: str | None = cfg_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    doc = TomlEntries.parse(text, str(cfg_path))
    desired: dict[Key, str] = {("shell_environment_policy", "set", k): v for k, v in ctx.vars.items()}
    for server in stdio_servers(doc):
        for k, v in ctx.proxy_vars.items():
            desired[("mcp_servers", server, "env", k)] = v
    config = DesiredFile(cfg_path, TomlEntries(str(cfg_path)), desired)
    auth = DesiredFile(home / "auth.json", CreateOnly(_auth_content(ctx)), {})
    return [env_file, config, auth]


def _auth_content(ctx: IntegrationContext) -> str:
    """The placeholder login Codex starts with: ChatGPT mode when cordon holds a Codex subscription login."""
    if any(r.auth.type == "login" and r.auth.login == "codex" for r in ctx.config.routes):
        from cordon.core.oauth import client_file
        from cordon.store.logins import LoginStore
        login = LoginStore(ctx.paths, ctx.env).load("codex")
        if login is not None:
            return client_file(login, real=False)
    return auth_json(_placeholder(ctx))


def notes(ctx: IntegrationContext) -> Iterator[str]:
    if not any(r.host == API_HOST for r in ctx.config.routes):
        yield (f"no route for {API_HOST} in {ctx.scope.config_path}: Codex's requests will pass "
               "through without a key (add one: `cordon route add --preset openai`)")
    home = codex_home(ctx.scope, ctx.env, ctx.paths)
    try:
        text = (home / "config.toml").read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    policy = TomlEntries.parse(text).get("shell_environment_policy")
    if isinstance(policy, Mapping) and "include_only" in policy:
        yield ("config.toml's shell_environment_policy.include_only filters the proxy variables "
               "out of the commands Codex runs; add HTTPS_PROXY, https_proxy, SSL_CERT_FILE and "
               "NO_PROXY to it")
    if ctx.scope.project_dir is not None and exposed_to_git(ctx.scope.project_dir, home / ".env"):
        yield f"{home} holds the proxy token but git does not ignore it: add `.codex/` to .gitignore"


def next_steps(ctx: IntegrationContext) -> list[str]:
    home = codex_home(ctx.scope, ctx.env, ctx.paths)
    if ctx.scope.kind == "project":
        return [f"point Codex at this project's settings (in your shell profile, or in .envrc with "
                f"direnv): `export CODEX_HOME={shlex.quote(str(home))}`"]
    if ctx.env.get("CODEX_HOME") is None and home != ctx.paths.home / ".codex":
        return [f"`export CODEX_HOME={shlex.quote(str(home))}`"]
    return []
