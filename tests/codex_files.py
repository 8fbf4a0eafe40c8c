"""Codex's side of the tests: the pinned CLI, a quiet config.toml, and one a user wrote by hand.

    from tests.codex_files import CODEX, codex_available, QUIET_CODEX_CONFIG, USER_CONFIG, SECRET, route_toml

`CODEX` is the Codex CLI that scripts/test installs in tests/node (`codex_available()`:
its path, or None without it or without node). `QUIET_CODEX_CONFIG` turns off what
Codex would otherwise fetch or check at start-up, so a test's mock sees only the turn.
`USER_CONFIG` has what `cordon setup codex` must leave alone: comments, stdio MCP
servers with and without an `env` table, a remote one and a profile;
`USER_CONFIG_WITH_SHELL_POLICY` has the user's own `[shell_environment_policy.set]` too.
`SECRET` is the real key a Codex end-to-end test's mock expects, and `route_toml(mock)` the
`cordon.toml` whose openai route leads there (the key comes from CORDON_TEST_REAL_KEY).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from tests import configs
from tests.conftest import NODE_MODULES

if TYPE_CHECKING:
    from tests.mock_openai import MockOpenAI

CODEX = NODE_MODULES / ".bin" / "codex"
SECRET = "sk-proj-REAL-e2e-5d0c8b1f9a"


def route_toml(mock: MockOpenAI) -> str:
    return configs.render(configs.openai(placeholder_env=configs.CODEX_VARS, upstream=mock))

QUIET_CODEX_CONFIG = """\
check_for_update_on_startup = false
[analytics]
enabled = false
[features]
api_key_model_discovery = false
plugins = false
"""

_USER_HEAD = """\
# Codex settings, written by hand
model = "o3"   # keep this comment
"""
_USER_SHELL_POLICY = """
[shell_environment_policy]
inherit = "core"

[shell_environment_policy.set]
MY_TOOL_HOME = "/opt/tool"   # mine
"""
_USER_REST = """
[mcp_servers.files]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "."]

[mcp_servers.remote]
url = "https://mcp.example.com/mcp"

[mcp_servers.inline]
command = "uvx"
env = { LOG_LEVEL = "debug" }

[profiles.fast]
model = "o4-mini"
"""
USER_CONFIG = _USER_HEAD + _USER_REST
USER_CONFIG_WITH_SHELL_POLICY = _USER_HEAD + _USER_SHELL_POLICY + _USER_REST    # the policy first, as a user has it


def codex_available() -> str | None:
    """The pinned Codex CLI's path, or None when it (or node) is not installed."""
    if not CODEX.exists() or shutil.which("node") is None:
        return None
    return str(CODEX)
