"""The environment contract for children of cordon (docs/exec.md), and its rendering.

Pure: builds the variable table from a port, token, bundle paths and routes,
and renders it for bash/zsh (`shell`), fish, dotenv and JSON with quoting
tested against quotes, `$`, spaces and newlines. It never sees a real secret:
the only credential-like values here are placeholders and the proxy token.

INTERFACE (exec and `cordon env` rely on it):
    proxy_url(port, token, user="cordon") -> str
    child_env(base_env, *, port, token, bundle_path, ca_path, routes, session_id=None,
              codex_home=None, remove=()) -> dict[str, str]
        returns the full environment for the child: base minus `remove`, plus the table
    contract_vars(base_env=None, *, port, token, bundle_path, ca_path, routes,
                  session_id=None, codex_home=None) -> dict[str, str]
        only cordon's variables (for `cordon env`); base_env supplies the inherited NO_PROXY
    merge_no_proxy(inherited, route_hosts) -> str
    render(vars, fmt) -> str                  fmt in shell|fish|dotenv|json
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote

from cordon.core.model import Route

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")
# these replace a runtime's trust store, so they get the merged bundle (system roots + CA)
BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
               "CARGO_HTTP_CAINFO", "AWS_CA_BUNDLE", "CODEX_CA_CERTIFICATE")
# these add to a runtime's roots, so they get the CA alone
CA_VARS = ("NODE_EXTRA_CA_CERTS", "DENO_CERT")
LOOPBACK_NO_PROXY = ("localhost", "127.0.0.1", "::1")
SESSION_VAR = "CORDON_SESSION"
FORMATS = ("shell", "fish", "dotenv", "json")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

if TYPE_CHECKING:
    from os import PathLike

StrPath: TypeAlias = "str | PathLike[str]"


def proxy_url(port: int, token: str, user: str = "cordon") -> str:
    """`http://cordon:<token>@127.0.0.1:<port>`; always http:// (the client speaks CONNECT in clear)."""
    return f"http://{quote(user, safe='')}:{quote(token, safe='')}@127.0.0.1:{int(port)}"


def _split_no_proxy(value: str) -> list[str]:
    return [e.strip() for e in re.split(r"[,\s]+", value or "") if e.strip()]


def _bypasses(entry: str, host: str) -> bool:
    """True when a NO_PROXY entry would send `host` around the proxy (curl/Go/undici semantics)."""
    e = entry.strip().lower()
    if e == "*":
        return True
    # host:port entries: the port does not matter for this question
    if e.startswith("["):
        e = e[1:e.find("]")] if "]" in e else e[1:]
    elif e.count(":") == 1:
        e = e.split(":", 1)[0]
    e = e.lstrip("*").lstrip(".").rstrip(".")
    if not e:
        return False
    h = host.lower().rstrip(".")
    if h.startswith("*."):
        # a `*.suffix` route host: any entry naming the suffix or a name under it
        suffix = h[2:]
        return e == suffix or e.endswith("." + suffix) or suffix.endswith("." + e)
    if h == e or h.endswith("." + e):
        return True
    try:  # CIDR entries (Go, undici, Python) covering an IP route host
        net = ipaddress.ip_network(e, strict=False)
        return ipaddress.ip_address(h) in net
    except ValueError:
        return False


def merge_no_proxy(inherited: str | None, route_hosts: Iterable[str]) -> str:
    """Inherited entries plus the loopback names, minus any entry that would bypass a route host."""
    hosts = list(route_hosts)
    out: list[str] = []
    seen: set[str] = set()
    for e in [*_split_no_proxy(inherited or ""), *LOOPBACK_NO_PROXY]:
        key = e.lower()
        if key in seen or any(_bypasses(e, h) for h in hosts):
            continue
        seen.add(key)
        out.append(e)
    return ",".join(out)


def placeholder_vars(routes: Sequence[Route]) -> dict[str, str]:
    """Each route's placeholder under each of its `placeholder_env` names."""
    out: dict[str, str] = {}
    for r in routes:
        for name in r.auth.placeholder_env:
            out[name] = r.auth.placeholder
    return out


def contract_vars(base_env: Mapping[str, str] | None = None, *, port: int, token: str,
                  bundle_path: StrPath, ca_path: StrPath, routes: Sequence[Route],
                  session_id: str | None = None, codex_home: StrPath | None = None) -> dict[str, str]:
    """Only cordon's variables, in the order of the table in docs/exec.md."""
    base = base_env or {}
    url = proxy_url(port, token)
    inherited = ",".join(v for v in (base.get("NO_PROXY"), base.get("no_proxy")) if v)
    no_proxy = merge_no_proxy(inherited, [h for r in routes for h in r.hosts])
    out: dict[str, str] = {}
    for v in PROXY_VARS:
        out[v] = url
    for v in NO_PROXY_VARS:
        out[v] = no_proxy
    for v in BUNDLE_VARS:
        out[v] = str(bundle_path)
    for v in CA_VARS:
        out[v] = str(ca_path)
    out["NODE_USE_ENV_PROXY"] = "1"
    if codex_home is not None:
        out["CODEX_HOME"] = str(codex_home)
    if session_id is not None:
        out[SESSION_VAR] = session_id
    out.update(placeholder_vars(routes))
    return out


def child_env(base_env: Mapping[str, str], *, port: int, token: str, bundle_path: StrPath,
              ca_path: StrPath, routes: Sequence[Route], session_id: str | None = None,
              codex_home: StrPath | None = None, remove: Iterable[str] = ()) -> dict[str, str]:
    """The child's whole environment: built by unsetting, then setting (aws-vault's order)."""
    drop = set(remove)
    env = {k: v for k, v in base_env.items() if k not in drop}
    env.update(contract_vars(base_env, port=port, token=token, bundle_path=bundle_path,
                             ca_path=ca_path, routes=routes, session_id=session_id,
                             codex_home=codex_home))
    return env


# --- rendering -------------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"not a valid environment variable name: {name!r}")


def quote_sh(value: str) -> str:
    """POSIX single quotes: nothing inside is special; a quote is closed, escaped, reopened."""
    return "'" + value.replace("'", "'\\''") + "'"


def quote_fish(value: str) -> str:
    """fish single quotes: only backslash and quote are special inside them."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_dotenv(value: str) -> str:
    """Single quotes (literal in python-dotenv and Rust's dotenvy) when possible.

    A value holding a quote or a line break needs double quotes: there `\\`, `"`,
    `$` (dotenvy expands `$NAME` in double quotes) and newlines are escaped.
    """
    if "'" not in value and "\n" not in value and "\r" not in value:
        return "'" + value + "'"
    esc = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
           .replace("\n", "\\n").replace("\r", "\\r"))
    return '"' + esc + '"'


def render(vars: Mapping[str, str], fmt: str) -> str:
    """The variables as `fmt` (shell = bash/zsh, fish, dotenv, json); one per line."""
    if fmt == "json":
        return json.dumps(dict(vars), indent=2) + "\n"
    lines: list[str] = []
    for name, value in vars.items():
        _check_name(name)
        if fmt == "shell":
            lines.append(f"export {name}={quote_sh(value)}")
        elif fmt == "fish":
            lines.append(f"set -gx {name} {quote_fish(value)}")
        elif fmt == "dotenv":
            lines.append(f"{name}={quote_dotenv(value)}")
        else:
            raise ValueError(f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})")
    return "".join(line + "\n" for line in lines)
