"""The env contract (DESIGN.md §2) for a client of the long-lived proxy.

Delegates to `cordon.envvars` (the one definition `cordon env` and `exec` use)
and only selects from it: no session marker and no CODEX_HOME in a file that
outlives a session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cordon.model import Route

# variables that describe one `cordon exec` session, never written into a client's files
SESSION_ONLY = frozenset({"CODEX_HOME", "CORDON_SESSION"})


def contract_vars(*, port: int, token: str, user: str, bundle_path: Path, ca_path: Path,
                  routes: Iterable[Route], env: Mapping[str, str]) -> dict[str, str]:
    routes = tuple(routes)
    out = _contract(port, token, user, bundle_path, ca_path, routes, env)
    return {k: v for k, v in out.items() if k not in SESSION_ONLY}


# TEMPORARY: the table of DESIGN.md §2 until cordon.envvars lands on main
def _contract(port: int, token: str, user: str, bundle: Path, ca: Path, routes: tuple[Route, ...],
              env: Mapping[str, str]) -> dict[str, str]:
    url = f"http://{user}:{token}@127.0.0.1:{port}"
    out = {k: url for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    hosts = [r.host for r in routes]
    inherited = (env.get("NO_PROXY") or env.get("no_proxy") or "").split(",")
    entries: list[str] = []
    for e in [*inherited, "localhost", "127.0.0.1", "::1"]:
        e = e.strip()
        if not e or e in entries:
            continue
        bare = e.lstrip("*").lstrip(".").lower()
        if e == "*" or any(h == bare or h.endswith("." + bare) for h in hosts):
            continue
        entries.append(e)
    out["NO_PROXY"] = out["no_proxy"] = ",".join(entries)
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
              "CARGO_HTTP_CAINFO", "AWS_CA_BUNDLE", "CODEX_CA_CERTIFICATE"):
        out[k] = str(bundle)
    out["NODE_EXTRA_CA_CERTS"] = out["DENO_CERT"] = str(ca)
    out["NODE_USE_ENV_PROXY"] = "1"
    for r in routes:
        for name in r.auth.placeholder_env:
            out[name] = r.auth.placeholder
    return out


def without_placeholders(vars_: Mapping[str, str], routes: Iterable[Route]) -> dict[str, str]:
    """Only the proxy and CA variables (what an MCP server needs; its own keys are left alone)."""
    names = {n for r in routes for n in r.auth.placeholder_env}
    return {k: v for k, v in vars_.items() if k not in names}
