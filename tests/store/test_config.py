"""cordon.toml: every validation rule of docs/configuration.md names file:line and a fix; discovery order.

In the documents below, `# <-` marks the line the error must name.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cordon.core.errors import ConfigError
from cordon.core.model import Config, SecretSpec
from cordon.store.config import RESERVED_HEADERS, load_config, parse_config
from cordon.store.paths import Paths

FILE = Path("/etc/proj/cordon.toml")

ROUTE = """\
[[routes]]
name = "openai"
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "keyring"
account = "openai"
"""


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str) -> Config:
    return parse_config(doc(text), FILE)


def error(text: str) -> ConfigError:
    """Parse; the error must name FILE and the line marked `# <-`, and carry a hint."""
    text = doc(text)
    marked = [i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    with pytest.raises(ConfigError) as e:
        parse_config(text, FILE)
    msg = e.value.message
    if marked:
        assert msg.startswith(f"{FILE}:{marked[0]}: "), msg
    else:
        assert msg.startswith(f"{FILE}"), msg
    assert e.value.hint, f"no hint for: {msg}"
    return e.value


# --- a valid file ------------------------------------------------------------------------------

def test_design_example_parses() -> None:
    cfg = parse("""
        listen = 6790
        [tls]
        enabled = true
        ca_cert_path = "certs/ca-cert.pem"
        ca_key_path = "/abs/ca-key.pem"
        [policy]
        unmatched = "deny"
        allow_hosts = ["GitHub.com."]
        allow_private = ["127.0.0.1/32", "intranet.local"]
        [[secrets.providers]]
        type = "1password"
        path = "/opt/op"
        [[routes]]
        name = "openai"
        [routes.match]
        host = "API.OpenAI.com."
        paths = ["/v1/"]
        [routes.auth]
        type = "header"
        header_name = "Authorization"
        scheme = "Bearer"
        placeholder_env = ["OPENAI_API_KEY", "CODEX_API_KEY"]
        [routes.auth.secret]
        source = "keyring"
        account = "openai"
        [routes.upstream]
        address = "127.0.0.1:8443"
        ca_file = "extra-ca.pem"
        scheme = "https"
    """)
    assert cfg.listen == 6790 and cfg.path == FILE
    assert cfg.tls.ca_cert_path == Path("/etc/proj/certs/ca-cert.pem")   # relative to the file
    assert cfg.tls.ca_key_path == Path("/abs/ca-key.pem")
    assert cfg.policy.unmatched == "deny" and cfg.policy.allow_hosts == ("github.com",)
    assert cfg.op_path == "/opt/op"
    (r,) = cfg.routes
    assert (r.name, r.host, r.paths) == ("openai", "api.openai.com", ("/v1/",))
    assert (r.auth.header_name, r.auth.scheme) == ("Authorization", "Bearer")
    assert r.auth.placeholder_env == ("OPENAI_API_KEY", "CODEX_API_KEY")
    assert r.auth.secret == SecretSpec(source="keyring", account="openai")
    assert r.upstream.address == "127.0.0.1:8443"
    assert r.upstream.ca_file == Path("/etc/proj/extra-ca.pem")


def test_every_secret_source_parses() -> None:
    cfg = parse("""
        [[routes]]
        match.host = "a.example"
        auth = { type = "header", header_name = "x-api-key", secret = { source = "keyring" } }
        [[routes]]
        match.host = "b.example"
        auth = { type = "header", header_name = "x-api-key", secret = { source = "1password", vault = "V", item = "I", field = "F", account = "team" } }
        [[routes]]
        match.host = "c.example"
        auth = { type = "header", header_name = "x-api-key", secret = { source = "env", var = "C_KEY" } }
        [[routes]]
        match.host = "d.example"
        auth = { type = "header", header_name = "x-api-key", secret = { source = "file", path = "secret.txt" } }
        [[routes]]
        match.host = "e.example"
        auth = { type = "basic", username = "me", secret = { source = "command", command = ["pass", "show", "e"], ttl = 300, timeout = 5 } }
    """)  # noqa: E501
    a, b, c, d, e = (r.auth.secret for r in cfg.routes)
    assert cfg.routes[0].name == "a.example"            # the name defaults to the host
    assert a == SecretSpec(source="keyring", account="a.example", service="cordon")
    assert (b.vault, b.item, b.field, b.account) == ("V", "I", "F", "team")
    assert c.var == "C_KEY"
    assert d.path == Path("/etc/proj/secret.txt")
    assert (e.command, e.ttl, e.timeout) == (("pass", "show", "e"), 300.0, 5.0)
    assert cfg.routes[4].auth.header_name == "Authorization" and cfg.routes[4].auth.username == "me"


def test_earlier_cordon_auth_types() -> None:
    cfg = parse("""
        [[routes]]
        name = "a"
        match = { host = "a.example" }
        auth = { type = "bearer", secret = { source = "env", var = "A" } }
        [[routes]]
        name = "b"
        match = { host = "b.example" }
        auth = { type = "api_key", header_name = "x-key", secret = { source = "env", var = "B" } }
    """)
    a, b = cfg.routes
    assert (a.auth.type, a.auth.header_name, a.auth.scheme) == ("header", "Authorization", "Bearer")
    assert (b.auth.type, b.auth.header_name, b.auth.scheme) == ("header", "x-key", None)


def test_listen_forms() -> None:
    assert parse("listen = 7000").listen == 7000
    assert parse('listen = "127.0.0.1:7001"').listen == 7001
    assert parse('listen = "localhost:7002"').listen == 7002
    assert parse('listen = "7003"').listen == 7003
    assert parse("").listen == 6790 and parse("").routes == ()


# --- every rule: file, line, fix -----------------------------------------------------------------

@pytest.mark.parametrize("text", [
    'listen = 1\nlisten_addr = "x"  # <-\n',
    ROUTE.replace('name = "openai"', 'name = "openai"\nwildcard = true  # <-'),
    ROUTE.replace('host = "api.openai.com"', 'host = "api.openai.com"\nport = 443  # <-'),
    ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer"\nprefix = "x"  # <-'),
    ROUTE.replace('account = "openai"', 'account = "openai"\nvault = "x"  # <-'),
    '[tls]\nenabled = true\nca_path = "x"  # <-\n',
    '[policy]\nunmatched = "deny"\nallow = ["x"]  # <-\n',
    ROUTE + '[routes.upstream]\naddress = "127.0.0.1:1"\nverify = false  # <-\n',
    '[secrets]\nop = "/usr/bin/op"  # <-\n',
])
def test_unknown_keys(text: str) -> None:
    e = error(text)
    assert "unknown key" in e.message and "use one of" in (e.hint or "")


def test_unknown_key_is_named() -> None:
    e = error(ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer"\nschema = "x"  # <-'))
    assert "'schema'" in e.message and "routes[0].auth" in e.message


def test_duplicate_names() -> None:
    e = error(ROUTE + ROUTE.replace('name = "openai"', 'name = "openai"  # <-').replace(
        "api.openai.com", "other.example"))
    assert "duplicate route name 'openai'" in e.message and "unique" in (e.hint or "")


def test_duplicate_hosts_after_normalising() -> None:
    e = error(ROUTE + ROUTE.replace('name = "openai"', 'name = "two"').replace(
        'host = "api.openai.com"', 'host = "API.openai.com."  # <-'))
    assert "host 'api.openai.com' already has route 'openai'" in e.message


@pytest.mark.parametrize("header", [*sorted(RESERVED_HEADERS), "HOST", "Proxy-Authorization", "Content-Length"])
def test_reserved_headers(header: str) -> None:
    e = error(ROUTE.replace('header_name = "Authorization"', f'header_name = "{header}"  # <-'))
    assert "reserved" in e.message and header in e.message


def test_the_reserved_list_is_the_designs() -> None:
    assert {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
            "upgrade", "proxy-authorization", "proxy-authenticate"} == RESERVED_HEADERS


@pytest.mark.parametrize("key,value", [
    ("scheme", '"Bearer\\r\\nX-Evil: 1"'),
    ("header_name", '"x-api-key\\nX-Evil: 1"'),
    ("placeholder", '"dummy\\r\\n"'),
])
def test_line_breaks_in_header_values(key: str, value: str) -> None:
    text = ROUTE.replace('scheme = "Bearer"', f'scheme = "Bearer"\n{key} = {value}  # <-') \
        if key != "scheme" else ROUTE.replace('scheme = "Bearer"', f"scheme = {value}  # <-")
    if key == "header_name":
        text = ROUTE.replace('header_name = "Authorization"', f"header_name = {value}  # <-")
    e = error(text)
    assert "line break" in e.message


def test_line_break_in_a_multiline_string_names_its_first_line() -> None:
    text = ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer"\nplaceholder = """dummy  # <-\nline2"""')
    assert "line break" in error(text).message


def test_line_break_in_basic_username() -> None:
    text = ROUTE.replace('type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"',
                         'type = "basic"\nusername = "me\\r\\n"  # <-')
    assert "line break" in error(text).message


@pytest.mark.parametrize("listen", ['"0.0.0.0:6790"', '"192.168.1.5:6790"', '"[::]:6790"', '"example.com:80"',
                                    '"0.0.0.0"', '"127.0.0.2:6790"'])
def test_non_loopback_listen(listen: str) -> None:
    e = error(f"listen = {listen}  # <-\n")
    assert "not loopback" in e.message and "127.0.0.1" in (e.hint or "")


@pytest.mark.parametrize("listen", ["70000", "-1", "true", '"abc:def"', "6790.5"])
def test_bad_listen(listen: str) -> None:
    e = error(f"# comment\nlisten = {listen}  # <-\n")
    assert "listen" in e.message


@pytest.mark.parametrize("header", ["Authorization", "authorization"])
def test_authorization_needs_a_scheme(header: str) -> None:
    text = ROUTE.replace('header_name = "Authorization"\nscheme = "Bearer"', f'header_name = "{header}"')
    text = text.replace("[routes.auth]", "[routes.auth]  # <-")
    e = error(text)
    assert "needs a scheme" in e.message and 'scheme = "Bearer"' in (e.hint or "")


def test_invalid_toml_names_the_line() -> None:
    e = error('listen = 6790\n[[routes]]\nname = "x\n')
    assert e.message.startswith(f"{FILE}:3: invalid TOML")


def test_invalid_toml_names_line_and_column_once() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("listen = 0\n[[routes]\n", FILE)
    assert e.value.message == (f"{FILE}:2: invalid TOML: Expected ']]' at the end of an array declaration "
                               "(column 9)")


def test_unknown_key_hint_never_offers_a_key_that_is_always_refused() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("listen = 0\nbogus = 1\n", FILE)
    assert e.value.hint == "remove it or use one of: exec, listen, policy, routes, secrets, tls"


def test_invalid_toml_duplicate_key() -> None:
    e = error("listen = 1\nlisten = 2\n")
    assert e.message.startswith(f"{FILE}:2: ")


@pytest.mark.parametrize("text,what", [
    ('[[routes]]  # <-\nname = "x"\n', "no [routes.match]"),
    ('[[routes]]\nname = "x"\n[routes.match]  # <-\npaths = ["/"]\n', "missing 'host'"),
    ('[[routes]]  # <-\nname = "x"\n[routes.match]\nhost = "a.example"\n', "no [routes.auth]"),
    (ROUTE.replace('type = "header"', 'type = "oauth"  # <-'), "unknown auth type"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "https://api.openai.com"  # <-'), "not a host name"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "api.openai.com:443"  # <-'), "not a host name"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "*.com"  # <-'), "not a host pattern"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "api.*.openai.com"  # <-'), "not a host name"),
    (ROUTE.replace('host = "api.openai.com"', 'hosts = []  # <-'), "'hosts' is empty"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "api.openai.com/v1"  # <-'), "not a host name"),
    (ROUTE.replace('host = "api.openai.com"', 'host = "api.openai.com"\npaths = ["v1/"]  # <-'),
     "must start with '/'"),
    (ROUTE.replace('name = "openai"', 'name = "open ai"  # <-'), "route name"),
    (ROUTE.replace('header_name = "Authorization"', 'header_name = "x api key"  # <-'), "not a valid header name"),
    (ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer token"  # <-'), "not a single word"),
    (ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer"\nusername = "me"  # <-'), "only used with"),
    (ROUTE.replace('type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"', 'type = "basic"')
     .replace("[routes.auth]", "[routes.auth]  # <-"), "needs username"),
    (ROUTE.replace('type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"',
                   'type = "basic"\nusername = "a:b"  # <-'), "cannot contain ':'"),
    (ROUTE.replace('type = "header"\nheader_name = "Authorization"',
                   'type = "basic"\nusername = "me"\nheader_name = "x-api-key"  # <-'), "always uses"),
    (ROUTE.replace('type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"',
                   'type = "basic"\nusername = "me"\nscheme = "Bearer"  # <-'), "no scheme"),
    (ROUTE.replace('scheme = "Bearer"', 'scheme = "Bearer"\nplaceholder_env = ["OPENAI-KEY"]  # <-'),
     "not a valid environment variable"),
    (ROUTE.replace('source = "keyring"', 'source = "vault"  # <-'), "unknown secret source"),
    (ROUTE.replace('account = "openai"', 'account = "openai"\ndecode = "base64"  # <-'), "unknown decode"),
    (ROUTE.replace('source = "keyring"\naccount = "openai"', 'source = "env"\nvar = "1BAD"  # <-'),
     "not a valid environment variable"),
    (ROUTE.replace('source = "keyring"\naccount = "openai"', 'source = "env"')
     .replace("[routes.auth.secret]", "[routes.auth.secret]  # <-"), "missing 'var'"),
    (ROUTE.replace('source = "keyring"\naccount = "openai"', 'source = "1password"\nitem = "x"')
     .replace("[routes.auth.secret]", "[routes.auth.secret]  # <-"), "missing 'vault'"),
    (ROUTE.replace('source = "keyring"\naccount = "openai"', 'source = "command"\ncommand = "pass show x"  # <-'),
     "must be a non-empty list"),
    (ROUTE.replace('source = "keyring"\naccount = "openai"', 'source = "command"\ncommand = ["x"]\nttl = -1  # <-'),
     "non-negative"),
    (ROUTE + '[routes.upstream]\naddress = "127.0.0.1:99999"  # <-\n', "bad upstream address"),
    (ROUTE + '[routes.upstream]\nscheme = "ftp"  # <-\n', "upstream scheme"),
    ('[tls]  # <-\nca_cert_path = "a.pem"\n', "both ca_cert_path and ca_key_path"),
    ('[tls]\nenabled = "yes"  # <-\n', "true or false"),
    ('[policy]\nunmatched = "block"  # <-\n', "policy.unmatched"),
    ('[policy]\nallow_private = ["not a net"]  # <-\n', "neither a network nor a host"),
    ('[policy]\nallow_hosts = ["https://github.com"]  # <-\n', "not a host name"),
    ('[[secrets.providers]]\ntype = "bitwarden"  # <-\npath = "/x"\n', "only type"),
    ('routes = "x"  # <-\n', "array of tables"),
    (ROUTE.replace('scheme = "Bearer"', "scheme = 1  # <-"), "must be a string"),
])
def test_rules(text: str, what: str) -> None:
    assert what in error(text).message


def test_dotted_and_inline_keys_are_located() -> None:
    e = error("""
        listen = 1
        [[routes]]
        name = "a"
        match.host = "a.example"
        auth = { type = "header", header_name = "Host", secret = { source = "env", var = "A" } }  # <-
    """)
    assert "reserved" in e.message


def test_second_route_lines() -> None:
    text = ROUTE + "\n" + ROUTE.replace('name = "openai"', 'name = "b"').replace(
        "api.openai.com", "b.example").replace('header_name = "Authorization"', 'header_name = "TE"  # <-')
    assert "reserved" in error(text).message


# --- loading and discovery -----------------------------------------------------------------------

def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "cordon.toml")
    assert "no such file" in e.value.message and "cordon route add" in (e.value.hint or "")


def test_both_flags_is_a_usage_error_on_the_command_line(cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    for argv in (["route", "list"], ["secret", "check"], ["route", "add", "--preset", "openai"]):
        r = cordon(*argv, "--config", "x.toml", "--scope", "user")
        assert r.status == 2, argv
        assert "cordon: error: --config and --scope cannot be used together" in r.stderr
        assert "hint:" in r.stderr


def test_env_home_and_xdg(tmp_path: Path) -> None:
    p = Paths.from_env({"HOME": str(tmp_path)}, tmp_path)
    assert p.user_config == tmp_path / ".config" / "cordon" / "cordon.toml"
    p = Paths.from_env({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x")}, tmp_path)
    assert p.user_config == tmp_path / "x" / "cordon" / "cordon.toml"


def test_postgres_listeners_are_refused_not_ignored(tmp_path: Path) -> None:
    f = tmp_path / "cordon.toml"
    f.write_text('listen = 6790\n\n[[listeners]]\nname = "db"\nport = 6543\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert f"{f}:3:" in e.value.message and "not supported" in e.value.message
    assert e.value.hint and "[[listeners]]" in e.value.hint


def test_exec_table_parses_and_defaults() -> None:
    from cordon.core.model import ExecSettings
    assert parse("").exec == ExecSettings(sandbox="auto", egress="open", egress_ports=())
    c = parse('[exec]\nsandbox = "required"\negress = "proxy"\negress_ports = [5432, 6379]\n')
    assert c.exec == ExecSettings(sandbox="required", egress="proxy", egress_ports=(5432, 6379))


@pytest.mark.parametrize(("text", "what"), [
    ('[exec]\nsandbox = "maybe"\n', "exec.sandbox 'maybe' is not valid"),
    ('[exec]\negress = "none"\n', "exec.egress 'none' is not valid"),
    ('[exec]\negress_ports = [0]\n', "exec.egress_ports must be a list of port numbers"),
    ('[exec]\negress_ports = ["5432"]\n', "exec.egress_ports must be a list of port numbers"),
    ('[exec]\nsandbox_mode = "off"\n', "unknown key 'sandbox_mode'"),
])
def test_exec_table_errors_name_the_line(text: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert what in e.value.message and ":2:" in e.value.message, e.value.message
    assert e.value.hint
