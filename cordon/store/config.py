"""Load, validate and discover `cordon.toml`.

Parsing is tomllib; every validation error names the file, the line (found by
a small line locator, since tomllib keeps no positions) and the fix. Writing
with preserved comments lives in `configedit`; this module only reads.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon.core.errors import ConfigError
from cordon.core.model import (
    DEFAULT_KEYRING_SERVICE,
    DEFAULT_LISTEN,
    DEFAULT_PLACEHOLDER,
    Auth,
    Config,
    ExecSettings,
    Policy,
    Route,
    SecretSpec,
    TlsConfig,
    UpstreamSpec,
)
from cordon.core.routes import normalize_host

RESERVED_HEADERS = frozenset(
    h.lower()
    for h in ("Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "TE",
              "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate")
)
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")   # RFC 9110 §5.6.2 token
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_QUERY_PARAM_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

TOP_KEYS = {"listen", "tls", "routes", "policy", "secrets", "listeners", "exec"}
UNSUPPORTED_KEYS = {"listeners"}   # known (Cordon's), always refused with their own error: never suggested
EXEC_KEYS = {"sandbox", "egress", "egress_ports"}
TLS_KEYS = {"enabled", "ca_cert_path", "ca_key_path"}
POLICY_KEYS = {"unmatched", "allow_hosts", "allow_private"}
ROUTE_KEYS = {"name", "match", "auth", "upstream"}
MATCH_KEYS = {"host", "hosts", "paths"}
AUTH_KEYS = {"type", "header_name", "scheme", "username", "placeholder_env", "placeholder", "secret",
             "query_param", "login", "role"}
LOGIN_AUTH_KEYS = {"type", "login", "role"}
UPSTREAM_KEYS = {"address", "ca_file", "scheme"}
SECRET_KEYS: dict[str, set[str]] = {
    "keyring": {"source", "account", "service", "decode"},
    "1password": {"source", "account", "vault", "item", "field", "timeout", "env"},
    "env": {"source", "var"},
    "file": {"source", "path"},
    "command": {"source", "command", "ttl", "timeout", "env"},
}


class _Locator:
    """Finds the line of a table or key in TOML source text (1-based)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
    # a bare or quoted key, possibly dotted (match.host = ...)
    _part = r"(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')"
    _key = re.compile(rf"^\s*({_part}(?:\s*\.\s*{_part})*)\s*=")

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[Any, ...], int] = {}
        self.keys: dict[tuple[Any, ...], int] = {}
        counts: dict[str, int] = {}
        current: tuple[Any, ...] = ()
        last_array: dict[str, tuple[Any, ...]] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            m = self._header.match(line)
            if m:
                dotted = [p.strip().strip('"') for p in m.group(2).split(".")]
                if m.group(1) == "[[":
                    key = ".".join(dotted)
                    idx = counts.get(key, 0)
                    counts[key] = idx + 1
                    current = (*dotted, idx)
                    last_array[key] = current
                else:
                    # [routes.match] belongs to the latest [[routes]]
                    path: tuple[Any, ...] = ()
                    for i in range(len(dotted), 0, -1):
                        prefix = ".".join(dotted[:i])
                        if prefix in last_array:
                            path = (*last_array[prefix], *dotted[i:])
                            break
                    else:
                        path = tuple(dotted)
                    current = path
                self.tables.setdefault(current, lineno)
                continue
            k = self._key.match(line)
            if k:
                parts = [p.strip("\"'") for p in re.findall(self._part, k.group(1))]
                for i in range(1, len(parts) + 1):   # match.host also locates [match]
                    self.keys.setdefault((*current, *parts[:i]), lineno)

    def line(self, path: tuple[Any, ...]) -> int | None:
        if path in self.keys:
            return self.keys[path]
        if path in self.tables:
            return self.tables[path]
        # dotted keys written inline (match.host = "...") or a parent table
        for i in range(len(path) - 1, 0, -1):
            head = path[:i]
            if head in self.keys:      # inside an inline table: auth = { ... }
                return self.keys[head]
            if head in self.tables:
                return self.tables[head]
        return None


@dataclass
class _Ctx:
    file: Path | None          # None: a route built from command-line flags, not read from a file
    loc: _Locator
    base: Path                 # relative paths resolve against this directory

    def error(self, path: tuple[Any, ...], what: str, hint: str) -> ConfigError:
        if self.file is None:
            return ConfigError(what, hint)
        line = self.loc.line(path)
        where = f"{self.file}:{line}" if line else str(self.file)
        return ConfigError(f"{where}: {what}", hint)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def _check_keys(ctx: _Ctx, table: Mapping[str, Any], allowed: set[str], path: tuple[Any, ...]) -> None:
    for k in table:
        if k not in allowed:
            where = _dotted(path) or "top level"
            raise ctx.error((*path, k), f"unknown key '{k}' in {where}",
                            f"remove it or use one of: {', '.join(sorted(allowed - UNSUPPORTED_KEYS))}")


def _need_table(ctx: _Ctx, v: Any, path: tuple[Any, ...]) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise ctx.error(path, f"'{_dotted(path)}' must be a table", f"write it as [{_dotted(path)}]")
    return v


def _str(ctx: _Ctx, table: Mapping[str, Any], key: str, path: tuple[Any, ...], *,
         required: bool = False, default: str | None = None) -> str | None:
    if key not in table:
        if required:
            raise ctx.error(path, f"'{_dotted(path)}' is missing '{key}'",
                            f"add {key} = \"...\" to [{_dotted(path)}]")
        return default
    v = table[key]
    if not isinstance(v, str):
        raise ctx.error((*path, key), f"'{_dotted((*path, key))}' must be a string",
                        f"quote the value: {key} = \"...\"")
    if "\r" in v or "\n" in v or "\x00" in v:
        raise ctx.error((*path, key), f"'{_dotted((*path, key))}' contains a line break or NUL",
                        "remove the control character from the value")
    return v


def _str_list(ctx: _Ctx, table: Mapping[str, Any], key: str, path: tuple[Any, ...]) -> tuple[str, ...]:
    v = table.get(key, [])
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ctx.error((*path, key), f"'{_dotted((*path, key))}' must be a list of strings",
                        f'write {key} = ["...", "..."]')
    return tuple(v)


def _resolve_path(base: Path, p: str) -> Path:
    """An absolute path: `~` and `~user` expanded, a relative one against the file's directory."""
    pp = Path(p).expanduser()
    return pp if pp.is_absolute() else (base / pp)


def _parse_secret(ctx: _Ctx, t: Mapping[str, Any], path: tuple[Any, ...], route_name: str) -> SecretSpec:
    source = _str(ctx, t, "source", path, default="keyring")
    if source not in SECRET_KEYS:
        raise ctx.error((*path, "source"), f"unknown secret source '{source}' in route '{route_name}'",
                        "use one of: " + ", ".join(SECRET_KEYS))
    _check_keys(ctx, t, SECRET_KEYS[source], path)
    if source == "keyring":
        decode = _str(ctx, t, "decode", path)
        if decode not in (None, "go-keyring"):
            raise ctx.error((*path, "decode"), f"route '{route_name}': unknown decode '{decode}'",
                            'remove it, or write decode = "go-keyring"')
        return SecretSpec(source="keyring",
                          account=_str(ctx, t, "account", path, default=route_name),
                          service=_str(ctx, t, "service", path, default=DEFAULT_KEYRING_SERVICE)
                          or DEFAULT_KEYRING_SERVICE, decode=decode)
    if source == "1password":
        return SecretSpec(source="1password",
                          vault=_str(ctx, t, "vault", path, required=True),
                          item=_str(ctx, t, "item", path, required=True),
                          field=_str(ctx, t, "field", path, default="credential"),
                          account=_str(ctx, t, "account", path),
                          timeout=_num(ctx, t, "timeout", path, 30.0), env=_env_names(ctx, t, path))
    if source == "env":
        var = _str(ctx, t, "var", path, required=True) or ""
        if not _ENV_NAME_RE.match(var):
            raise ctx.error((*path, "var"), f"'{var}' is not a valid environment variable name",
                            "use letters, digits and underscores, not starting with a digit")
        return SecretSpec(source="env", var=var)
    if source == "file":
        p = _str(ctx, t, "path", path, required=True) or ""
        return SecretSpec(source="file", path=_resolve_path(ctx.base, p))
    cmd = t.get("command")
    if isinstance(cmd, str) or not isinstance(cmd, list) or not cmd or \
            not all(isinstance(x, str) for x in cmd):
        raise ctx.error((*path, "command"), f"route '{route_name}': command must be a non-empty list",
                        'write command = ["program", "arg", ...] (no shell is involved)')
    return SecretSpec(source="command", command=tuple(cmd), ttl=_num(ctx, t, "ttl", path, 0.0),
                      timeout=_num(ctx, t, "timeout", path, 10.0), env=_env_names(ctx, t, path))


def _env_names(ctx: _Ctx, t: Mapping[str, Any], path: tuple[Any, ...]) -> tuple[str, ...]:
    """`env = ["NAME", ...]`: what a secret command or `op` gets beyond the minimal environment."""
    v = t.get("env", [])
    if not isinstance(v, list) or not all(isinstance(x, str) and _ENV_NAME_RE.match(x) for x in v):
        raise ctx.error((*path, "env"), f"'{_dotted((*path, 'env'))}' must be a list of variable names",
                        'write env = ["VAULT_ADDR", "VAULT_TOKEN"]')
    return tuple(v)


def _num(ctx: _Ctx, t: Mapping[str, Any], key: str, path: tuple[Any, ...], default: float) -> float:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ctx.error((*path, key), f"'{_dotted((*path, key))}' must be a non-negative number",
                        f"write {key} = 30")
    return float(v)


def _parse_route(ctx: _Ctx, t: Mapping[str, Any], i: int) -> Route:
    path: tuple[Any, ...] = ("routes", i)
    _check_keys(ctx, t, ROUTE_KEYS, path)
    match = _need_table(ctx, t.get("match"), (*path, "match")) if "match" in t else None
    if match is None:
        raise ctx.error(path, f"route #{i + 1} has no [routes.match] table",
                        'add [routes.match] with host = "api.example.com"')
    _check_keys(ctx, match, MATCH_KEYS, (*path, "match"))
    host, more_hosts = _parse_hosts(ctx, match, (*path, "match"))
    name = _str(ctx, t, "name", path) or host
    if not _NAME_RE.match(name):
        raise ctx.error((*path, "name"), f"route name '{name}' is not valid",
                        "use letters, digits, '.', '_' and '-'")
    paths = _str_list(ctx, match, "paths", (*path, "match"))
    for p in paths:
        if not p.startswith("/"):
            raise ctx.error((*path, "match", "paths"), f"path prefix '{p}' must start with '/'",
                            'write paths = ["/v1/"]')
    if "auth" not in t:
        raise ctx.error(path, f"route '{name}' has no [routes.auth] table",
                        'add [routes.auth] with type = "header" and a [routes.auth.secret]')
    auth_t = _need_table(ctx, t["auth"], (*path, "auth"))
    apath = (*path, "auth")
    _check_keys(ctx, auth_t, AUTH_KEYS, apath)
    atype = _str(ctx, auth_t, "type", apath, required=True)
    header_name = _str(ctx, auth_t, "header_name", apath)
    scheme = _str(ctx, auth_t, "scheme", apath)
    # earlier Cordon schema: bearer / api_key
    if atype == "bearer":
        atype, header_name, scheme = "header", header_name or "Authorization", scheme or "Bearer"
    elif atype == "api_key":
        atype = "header"
    if atype == "login":
        return Route(name=name, host=host, auth=_parse_login_auth(ctx, auth_t, apath, name), paths=paths,
                     upstream=_parse_upstream(ctx, t, path, name), more_hosts=more_hosts)
    if atype not in ("header", "basic", "query"):
        raise ctx.error((*apath, "type"), f"route '{name}': unknown auth type '{atype}'",
                        'use type = "header", "basic", "query" or "login"')
    username = _str(ctx, auth_t, "username", apath)
    query_param = _str(ctx, auth_t, "query_param", apath)
    if query_param is not None and not _QUERY_PARAM_RE.match(query_param):
        raise ctx.error((*apath, "query_param"), f"route '{name}': '{query_param}' is not a query parameter name",
                        'write e.g. query_param = "key" (letters, digits, "-", "_" and ".")')
    if atype == "query":
        if query_param is None:
            raise ctx.error(apath, f"route '{name}': query auth needs query_param",
                            'add query_param = "key" (the parameter the provider reads the key from)')
        if username is not None or scheme is not None:
            raise ctx.error(apath, f"route '{name}': query auth has no username or scheme",
                            "remove username and scheme (the key goes into the query as it is)")
        header_name = header_name or "Authorization"
    elif atype == "basic" and query_param is not None:
        raise ctx.error((*apath, "query_param"), f"route '{name}': query_param does not apply to basic auth",
                        'remove query_param, or use type = "header" or "query"')
    if atype == "header":
        if not header_name:
            raise ctx.error(apath, f"route '{name}': header auth needs header_name",
                            'add header_name = "Authorization" (with scheme = "Bearer") or e.g. "x-api-key"')
        if not _TOKEN_RE.match(header_name):
            raise ctx.error((*apath, "header_name"), f"route '{name}': '{header_name}' is not a valid header name",
                            "use letters, digits and '-' only")
        if header_name.lower() in RESERVED_HEADERS:
            raise ctx.error((*apath, "header_name"),
                            f"route '{name}': header '{header_name}' is reserved and cannot carry a credential",
                            "use Authorization or the provider's own header (e.g. x-api-key)")
        if header_name.lower() == "authorization" and not scheme:
            raise ctx.error(apath, f"route '{name}': header_name = \"Authorization\" needs a scheme",
                            'add scheme = "Bearer" (or "Token", "Basic", ...)')
        if scheme is not None and not _TOKEN_RE.match(scheme):
            raise ctx.error((*apath, "scheme"), f"route '{name}': scheme '{scheme}' is not a single word",
                            'write scheme = "Bearer"')
        if username is not None:
            raise ctx.error((*apath, "username"), f"route '{name}': username is only used with type = \"basic\"",
                            'remove username, or set type = "basic"')
    elif atype == "basic":
        if header_name is not None and header_name.lower() != "authorization":
            raise ctx.error((*apath, "header_name"),
                            f"route '{name}': basic auth always uses the Authorization header",
                            'remove header_name, or use type = "header" for a custom header')
        if scheme is not None:
            raise ctx.error((*apath, "scheme"), f"route '{name}': basic auth has no scheme setting",
                            "remove scheme (basic auth sends `Authorization: Basic base64(user:secret)`)")
        header_name = "Authorization"
        if username is None:
            raise ctx.error(apath, f"route '{name}': basic auth needs username",
                            'add username = "..." to [routes.auth]')
        if ":" in username:
            raise ctx.error((*apath, "username"), f"route '{name}': username cannot contain ':'",
                            "remove the colon (RFC 7617 §2)")
    placeholder_env = _str_list(ctx, auth_t, "placeholder_env", apath)
    for v in placeholder_env:
        if not _ENV_NAME_RE.match(v):
            raise ctx.error((*apath, "placeholder_env"), f"'{v}' is not a valid environment variable name",
                            "use letters, digits and underscores")
    placeholder = _str(ctx, auth_t, "placeholder", apath, default=DEFAULT_PLACEHOLDER) or DEFAULT_PLACEHOLDER
    secret_t = _need_table(ctx, auth_t.get("secret", {"source": "keyring"}), (*apath, "secret"))
    secret = _parse_secret(ctx, secret_t, (*apath, "secret"), name)

    upstream = _parse_upstream(ctx, t, path, name)
    auth = Auth(type="basic" if atype == "basic" else "query" if atype == "query" else "header", secret=secret,
                header_name=header_name or "Authorization", scheme=scheme, username=username,
                placeholder_env=placeholder_env, placeholder=placeholder, query_param=query_param)
    return Route(name=name, host=host, auth=auth, paths=paths, upstream=upstream, more_hosts=more_hosts)


def _parse_login_auth(ctx: _Ctx, t: Mapping[str, Any], apath: tuple[Any, ...], name: str) -> Auth:
    """`type = "login"`: a subscription login's token, managed by cordon (`cordon login NAME`)."""
    from cordon.core.oauth import PLACEHOLDER_CLAUDE_ACCESS, PROVIDERS
    _check_keys(ctx, t, LOGIN_AUTH_KEYS, apath)
    login = _str(ctx, t, "login", apath, required=True)
    if login not in PROVIDERS:
        raise ctx.error((*apath, "login"), f"route '{name}': unknown login '{login}'",
                        'write login = "codex" or login = "claude"')
    role = _str(ctx, t, "role", apath, default="api")
    if role not in ("api", "auth"):
        raise ctx.error((*apath, "role"), f"route '{name}': unknown login role '{role}'",
                        'write role = "api" (the access token is injected) or "auth" (the token endpoint)')
    return Auth(type="login", secret=SecretSpec(source="login", account=login), header_name="Authorization",
                scheme="Bearer", placeholder=PLACEHOLDER_CLAUDE_ACCESS, login=login,
                role="auth" if role == "auth" else "api")


def _parse_upstream(ctx: _Ctx, t: Mapping[str, Any], path: tuple[Any, ...], name: str) -> UpstreamSpec:
    upstream = UpstreamSpec()
    if "upstream" in t:
        ut = _need_table(ctx, t["upstream"], (*path, "upstream"))
        upath = (*path, "upstream")
        _check_keys(ctx, ut, UPSTREAM_KEYS, upath)
        address = _str(ctx, ut, "address", upath)
        if address is not None:
            from cordon.core.routes import split_host_port
            try:
                split_host_port(address, 443)
            except ValueError:
                raise ctx.error((*upath, "address"), f"route '{name}': bad upstream address '{address}'",
                                'write address = "127.0.0.1:8443"') from None
        ca = _str(ctx, ut, "ca_file", upath)
        uscheme = _str(ctx, ut, "scheme", upath, default="https")
        if uscheme not in ("https", "http"):
            raise ctx.error((*upath, "scheme"), f"route '{name}': upstream scheme '{uscheme}' is not valid",
                            'use scheme = "https" (default) or "http"')
        upstream = UpstreamSpec(address=address, ca_file=_resolve_path(ctx.base, ca) if ca else None,
                                scheme="http" if uscheme == "http" else "https")
    return upstream


def _parse_hosts(ctx: _Ctx, match: Mapping[str, Any], mpath: tuple[Any, ...]) -> tuple[str, tuple[str, ...]]:
    """`host` and/or `hosts` (ext): exact names, IPs, or `*.suffix` patterns; the first is the route's host."""
    raw: list[tuple[str, tuple[Any, ...]]] = []
    one = _str(ctx, match, "host", mpath, required="hosts" not in match)
    if one is not None:
        raw.append((one, (*mpath, "host")))
    raw += [(h, (*mpath, "hosts")) for h in _str_list(ctx, match, "hosts", mpath)]
    if not raw:
        raise ctx.error((*mpath, "hosts"), "'hosts' is empty", 'write hosts = ["api.example.com"]')
    out: list[str] = []
    for value, where in raw:
        h = normalize_host(value)
        base = h[2:] if h.startswith("*.") else h
        if h.startswith("*.") and (not _HOST_RE.match(base) or "." not in base):
            raise ctx.error(where, f"'{value}' is not a host pattern",
                            "a pattern is `*.` and a domain of two labels or more, such as *.githubcopilot.com")
        if not h.startswith("*.") and not _HOST_RE.match(h) and not _is_ip(h):
            raise ctx.error(where, f"'{value}' is not a host name",
                            "give an exact host such as api.openai.com, or *.example.com "
                            "(no scheme, port or path)")
        if h not in out:
            out.append(h)
    return out[0], tuple(out[1:])


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def _parse_listen(ctx: _Ctx, listen: Any) -> int:
    """A port; "127.0.0.1:PORT" is accepted, any other address is refused (it would expose the proxy)."""
    if isinstance(listen, str):
        raw = listen.strip()
        if raw.isdigit():
            listen = int(raw)
        else:
            from cordon.core.routes import split_host_port
            try:
                host, listen = split_host_port(raw, DEFAULT_LISTEN)
            except ValueError:
                raise ctx.error(("listen",), f"listen '{raw}' is not a port",
                                "write listen = 6790 (cordon always binds 127.0.0.1)") from None
            if normalize_host(host) not in LOOPBACK_NAMES:
                raise ctx.error(("listen",), f"listen address '{raw}' is not loopback",
                                "cordon only listens on 127.0.0.1, which keeps injected credentials off the "
                                "network; write listen = 6790 (a port)")
    if isinstance(listen, bool) or not isinstance(listen, int) or not 0 <= listen < 65536:
        raise ctx.error(("listen",), f"listen must be a port number, got {listen!r}", "write listen = 6790")
    return listen


def parse_config(text: str, file: Path, scope: str = "explicit") -> Config:
    """Parse and validate TOML text; raise ConfigError naming file:line and the fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)", str(e))
        line = m.group(1) if m and m.group(1) else (str(text.count("\n") + 1) if m else None)
        where = f"{file}:{line}" if line else str(file)
        what = str(e)[:m.start()] + str(e)[m.end():] if m else str(e)   # the line is in `where` already
        if m and m.group(2):
            what += f" (column {m.group(2)})"
        raise ConfigError(f"{where}: invalid TOML: {what}",
                          "fix the syntax at that line (strings need quotes, tables need [brackets], "
                          "each key once per table)") from None
    ctx = _Ctx(file=file, loc=_Locator(text), base=file.parent)
    _check_keys(ctx, data, TOP_KEYS, ())
    if data.get("listeners"):
        # Cordon's PostgreSQL listeners: loading the file without them would leave
        # the user believing their database password is injected when it is not.
        raise ctx.error(("listeners", 0), "[[listeners]] (PostgreSQL credential listeners) is not supported by cordon",
                        "remove the [[listeners]] tables; cordon injects HTTP credentials only")
    listen = _parse_listen(ctx, data.get("listen", DEFAULT_LISTEN))

    tls = TlsConfig()
    if "tls" in data:
        tt = _need_table(ctx, data["tls"], ("tls",))
        _check_keys(ctx, tt, TLS_KEYS, ("tls",))
        enabled = tt.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ctx.error(("tls", "enabled"), "tls.enabled must be true or false", "write enabled = true")
        cert = _str(ctx, tt, "ca_cert_path", ("tls",))
        key = _str(ctx, tt, "ca_key_path", ("tls",))
        if (cert is None) != (key is None):
            raise ctx.error(("tls",), "tls needs both ca_cert_path and ca_key_path, or neither",
                            "add the missing path, or remove both to use cordon's own CA")
        tls = TlsConfig(enabled=enabled,
                        ca_cert_path=_resolve_path(file.parent, cert) if cert else None,
                        ca_key_path=_resolve_path(file.parent, key) if key else None)

    policy = Policy()
    if "policy" in data:
        pt = _need_table(ctx, data["policy"], ("policy",))
        _check_keys(ctx, pt, POLICY_KEYS, ("policy",))
        unmatched = _str(ctx, pt, "unmatched", ("policy",), default="tunnel")
        if unmatched not in ("tunnel", "deny"):
            raise ctx.error(("policy", "unmatched"), f"policy.unmatched '{unmatched}' is not valid",
                            'use "tunnel" (default) or "deny"')
        allow_private = _str_list(ctx, pt, "allow_private", ("policy",))
        for entry in allow_private:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_RE.match(normalize_host(entry)):
                    raise ctx.error(("policy", "allow_private"), f"'{entry}' is neither a network nor a host",
                                    'write e.g. "127.0.0.1/32", "10.0.0.0/8" or "intranet.local"') from None
        allow_hosts = tuple(normalize_host(h) for h in _str_list(ctx, pt, "allow_hosts", ("policy",)))
        for h in allow_hosts:
            if not _HOST_RE.match(h) and not _is_ip(h):
                raise ctx.error(("policy", "allow_hosts"), f"'{h}' in policy.allow_hosts is not a host name",
                                'write exact hosts such as "github.com" (no scheme, port or wildcard)')
        policy = Policy(unmatched="deny" if unmatched == "deny" else "tunnel",
                        allow_hosts=allow_hosts, allow_private=allow_private)

    exec_settings = _parse_exec(ctx, data["exec"]) if "exec" in data else ExecSettings()

    op_path = None
    if "secrets" in data:
        st = _need_table(ctx, data["secrets"], ("secrets",))
        _check_keys(ctx, st, {"providers"}, ("secrets",))
        provs = st.get("providers", [])
        if not isinstance(provs, list):
            raise ctx.error(("secrets", "providers"), "secrets.providers must be an array of tables",
                            'write [[secrets.providers]] with type = "1password" and path = "/usr/bin/op"')
        for j, prov in enumerate(provs):
            ppath = ("secrets", "providers", j)
            prov = _need_table(ctx, prov, ppath)
            _check_keys(ctx, prov, {"type", "path"}, ppath)
            if _str(ctx, prov, "type", ppath, required=True) != "1password":
                raise ctx.error((*ppath, "type"), "only type = \"1password\" providers are known",
                                'write type = "1password"')
            op_path = _str(ctx, prov, "path", ppath, required=True)

    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ctx.error(("routes",), "routes must be an array of tables", "write each route as [[routes]]")
    routes: list[Route] = []
    names: dict[str, int] = {}
    hosts: dict[str, int] = {}
    for i, rt in enumerate(raw_routes):
        r = _parse_route(ctx, _need_table(ctx, rt, ("routes", i)), i)
        if r.name in names:
            raise ctx.error(("routes", i, "name"), f"duplicate route name '{r.name}'",
                            "give every route a unique name")
        for h in r.hosts:
            if h in hosts:
                raise ctx.error(("routes", i, "match", "host" if h == r.host else "hosts"),
                                f"host '{h}' already has route '{routes[hosts[h]].name}'",
                                "one route per host: merge them or remove one")
            hosts[h] = i
        names[r.name] = i
        routes.append(r)
    env_sources = {r.auth.secret.var: r.name for r in routes if r.auth.secret.source == "env"}
    for i, r in enumerate(routes):
        for var in r.auth.secret.env:
            if var in env_sources:
                # a secret command would hold another route's secret in its /proc/<pid>/environ
                raise ctx.error(("routes", i, "auth", "secret", "env"),
                                f"route '{r.name}': env passes {var}, the secret of route '{env_sources[var]}'",
                                f"remove {var} from env: a secret command never gets another route's secret")
    sc = scope if scope in ("project", "user", "explicit") else "explicit"
    return Config(routes=tuple(routes), listen=listen, tls=tls, policy=policy, op_path=op_path,
                  exec=exec_settings, path=file, scope=sc)  # type: ignore[arg-type]


def _parse_exec(ctx: _Ctx, raw: Any) -> ExecSettings:
    et = _need_table(ctx, raw, ("exec",))
    _check_keys(ctx, et, EXEC_KEYS, ("exec",))
    sandbox = _str(ctx, et, "sandbox", ("exec",), default="auto")
    if sandbox not in ("auto", "required", "off"):
        raise ctx.error(("exec", "sandbox"), f"exec.sandbox '{sandbox}' is not valid",
                        'use "auto" (default), "required" or "off"')
    egress = _str(ctx, et, "egress", ("exec",), default="open")
    if egress not in ("open", "proxy"):
        raise ctx.error(("exec", "egress"), f"exec.egress '{egress}' is not valid",
                        'use "open" (default) or "proxy"')
    ports = et.get("egress_ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                              and 0 < p < 65536 for p in ports):
        raise ctx.error(("exec", "egress_ports"), "exec.egress_ports must be a list of port numbers",
                        "write e.g. egress_ports = [5432, 6379]")
    return ExecSettings(sandbox=sandbox, egress=egress, egress_ports=tuple(ports))  # type: ignore[arg-type]


def check_route(table: Mapping[str, Any], base: Path) -> Route:
    """Validate one route given as a `[[routes]]` table (e.g. built from CLI flags); ConfigError without file:line."""
    return _parse_route(_Ctx(file=None, loc=_Locator(""), base=base), table, 0)


def load_config(path: Path, scope: str = "explicit") -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file",
                          "create it with `cordon route add` or `cordon setup`") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a file",
                          "rename or remove that directory: cordon reads its configuration from a file "
                          "of that name") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}", "check the file's permissions and encoding") from None
    return parse_config(text, path, scope)
