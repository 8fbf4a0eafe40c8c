"""The Claude Code integration: the `env` block of its settings file.

Project scope uses `.claude/settings.local.json` (git-ignored by Claude Code's
convention, so the token stays out of the repository); user scope uses
`~/.claude/settings.json`. Claude Code applies that block to itself and to
the commands it runs. Every other setting in the file is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cordon.app.integrations.jsonedit import JsonEntries
from cordon.app.integrations.scaffold import exposed_to_git
from cordon.store.edits import Editor
from cordon.store.paths import Paths
from cordon.store.userfiles import DesiredFile

if TYPE_CHECKING:
    from cordon.app.integrations import IntegrationContext
    from cordon.store.scope import Scope

NAME = "claude-code"
TOKEN = "claude-code"
PRESET = "anthropic"
API_HOST = "api.anthropic.com"
KEY_VAR = "ANTHROPIC_API_KEY"


def settings_path(scope: Scope, paths: Paths) -> Path:
    if scope.kind == "project":
        assert scope.project_dir is not None
        return scope.project_dir / ".claude" / "settings.local.json"
    return paths.home / ".claude" / "settings.json"


def files(scope: Scope, env: Mapping[str, str], paths: Paths) -> list[tuple[Path, Editor]]:
    path = settings_path(scope, paths)
    return [(path, JsonEntries(str(path)))]


def env_block(ctx: IntegrationContext) -> dict[str, str]:
    out = dict(ctx.vars)
    for r in ctx.config.routes:
        # Claude Code needs a key to start in API-key mode; the route's placeholder is what it gets
        # (not for a subscription login: ANTHROPIC_API_KEY would override it)
        if r.host == API_HOST and KEY_VAR not in out and r.auth.type != "login":
            out[KEY_VAR] = r.auth.placeholder
    return out


def targets(ctx: IntegrationContext) -> list[DesiredFile]:
    path = settings_path(ctx.scope, ctx.paths)
    return [DesiredFile(path, JsonEntries(str(path)), {("env", k): v for k, v in env_block(ctx).items()})]


def notes(ctx: IntegrationContext) -> Iterator[str]:
    if not any(r.host == API_HOST for r in ctx.config.routes):
        yield (f"no route for {API_HOST} in {ctx.scope.config_path}: Claude Code's requests will "
               "pass through without a key (add one: `cordon route add --preset anthropic`)")
    path = settings_path(ctx.scope, ctx.paths)
    if ctx.scope.project_dir is not None and exposed_to_git(ctx.scope.project_dir, path):
        yield (f"{path} holds the proxy token but git does not ignore it: add "
               "`.claude/settings.local.json` to .gitignore")
    if ctx.scope.kind == "user":
        yield "Claude Code also reads a project's .claude/settings*.json, whose env entries win over these"


def next_steps(ctx: IntegrationContext) -> list[str]:
    return ["restart Claude Code so it reads the new settings"]
