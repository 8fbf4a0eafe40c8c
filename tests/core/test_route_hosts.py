"""Routes naming several hosts or a `*.suffix` pattern: matching, NO_PROXY, the session CA's
name constraints (checked by a real TLS handshake with Python's ssl), and the config file."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cordon.core import certs
from cordon.core.envvars import merge_no_proxy
from cordon.core.errors import ConfigError
from cordon.core.model import Auth, Route, SecretSpec
from cordon.core.routes import PRESETS, RouteTable, constraint_names, host_matches
from cordon.store.config import parse_config


def route(name: str, host: str, *more: str) -> Route:
    return Route(name=name, host=host, more_hosts=more,
                 auth=Auth(type="header", secret=SecretSpec(source="env", var="K"), header_name="x-k"))


def test_pattern_covers_names_under_the_suffix_only() -> None:
    assert host_matches("*.githubcopilot.com", "api.githubcopilot.com")
    assert host_matches("*.githubcopilot.com", "API.Individual.GithubCopilot.com.")
    assert not host_matches("*.githubcopilot.com", "githubcopilot.com")
    assert not host_matches("*.githubcopilot.com", "evilgithubcopilot.com")
    assert not host_matches("*.githubcopilot.com", "githubcopilot.com.evil.example")


def test_table_matches_every_host_and_exact_names_win() -> None:
    gh = route("github", "api.github.com", "*.githubcopilot.com")
    special = route("special", "api.enterprise.githubcopilot.com")
    deep = route("deep", "*.eu.githubcopilot.com")
    t = RouteTable([gh, special, deep])
    assert t.match("api.github.com") is gh
    assert t.match("api.individual.githubcopilot.com") is gh
    assert t.match("api.enterprise.githubcopilot.com") is special     # exact beats a pattern
    assert t.match("x.eu.githubcopilot.com") is deep                  # the longest suffix wins
    assert t.match("githubcopilot.com") is None
    assert t.match("github.com") is None


def test_no_proxy_entries_that_would_bypass_a_pattern_are_dropped() -> None:
    out = merge_no_proxy(".githubcopilot.com,api.individual.githubcopilot.com,githubcopilot.com,"
                         "example.com,.com", ["api.github.com", "*.githubcopilot.com"])
    assert out.split(",") == ["example.com", "localhost", "127.0.0.1", "::1"]


def _handshake(ca: certs.CA, leaf_host: str, server_name: str) -> None:
    """A TLS handshake over memory BIOs: a client trusting `ca` against a leaf for `leaf_host`."""
    leaf = certs.issue_leaf(ca, leaf_host)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        chain = Path(d) / "chain.pem"
        chain.write_bytes(leaf.chain_pem + leaf.key_pem)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(chain)
    cctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    client.do_handshake()


def test_session_ca_constraints_permit_the_pattern_hosts_and_nothing_else() -> None:
    hosts = PRESETS["github"].hosts
    assert constraint_names(hosts) == ["api.github.com", "githubcopilot.com"]
    ca = certs.create_ca("session", permitted_hosts=constraint_names(hosts))
    _handshake(ca, "api.individual.githubcopilot.com", "api.individual.githubcopilot.com")
    _handshake(ca, "api.github.com", "api.github.com")
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        _handshake(ca, "evil.example", "evil.example")
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        _handshake(ca, "github.com", "github.com")


CFG = """
[[routes]]
name = "github"
[routes.match]
host = "api.github.com"
hosts = ["*.GitHubCopilot.com.", "api.github.com"]
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "env"
var = "T"
"""


def test_config_reads_hosts_and_patterns() -> None:
    cfg = parse_config(CFG, Path("/p/cordon.toml"))
    assert cfg.routes[0].hosts == ("api.github.com", "*.githubcopilot.com")


def test_config_refuses_a_host_two_routes_name() -> None:
    second = CFG.replace('name = "github"', 'name = "copilot"').replace('host = "api.github.com"\n', "")
    second = second.replace('hosts = ["*.GitHubCopilot.com.", "api.github.com"]', 'hosts = ["*.githubcopilot.com"]')
    with pytest.raises(ConfigError, match=r"host '\*.githubcopilot.com' already has route 'github'"):
        parse_config(CFG + second, Path("/p/cordon.toml"))
