"""Values shared by every layer: the parsed configuration and the Secret type.

Pure data: frozen dataclasses, no I/O. `Secret` never shows its value in
repr/str/format so it cannot leak into a log line or a traceback by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_PLACEHOLDER = "dummy-replaced-by-cordon"
DEFAULT_LISTEN = 6790
DEFAULT_KEYRING_SERVICE = "cordon"

SecretSource = Literal["keyring", "1password", "env", "file", "command", "login"]
AuthType = Literal["header", "basic", "query", "login"]
LoginRole = Literal["api", "auth"]


class Secret:
    """A credential value. `reveal()` is the only way to read it."""

    __slots__ = ("__weakref__", "_value")   # weakly referenced: what is derived from it is kept only as long as it is

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> str:  # never pickle a secret into a file or a queue
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class SecretSpec:
    """Where a route's secret comes from (never the value itself)."""

    source: SecretSource
    account: str | None = None          # keyring account; 1password account
    service: str = DEFAULT_KEYRING_SERVICE  # keyring service
    decode: str | None = None           # keyring: "go-keyring" decodes go-keyring's base64/hex prefixes
    vault: str | None = None            # 1password
    item: str | None = None             # 1password
    field: str | None = None            # 1password
    var: str | None = None              # env
    path: Path | None = None            # file
    command: tuple[str, ...] = ()       # command argv
    ttl: float = 0.0                    # command: seconds to cache (0: every resolve runs it)
    timeout: float = 10.0               # command / 1password: seconds before giving up
    env: tuple[str, ...] = ()           # command / 1password: variables passed beyond the minimal set

    def describe(self) -> str:
        """A short description naming the location, never the value."""
        if self.source == "keyring":
            return f"keyring {self.service}/{self.account}"
        if self.source == "1password":
            acct = f" (account {self.account})" if self.account else ""
            return f"1password {self.vault}/{self.item}/{self.field}{acct}"
        if self.source == "env":
            return f"environment variable {self.var}"
        if self.source == "file":
            return f"file {self.path}"
        if self.source == "login":
            return f"cordon login {self.account}"
        return f"command {self.command[0] if self.command else '?'}"


@dataclass(frozen=True)
class Auth:
    type: AuthType
    secret: SecretSpec
    header_name: str = "Authorization"
    scheme: str | None = None
    username: str | None = None          # basic
    placeholder_env: tuple[str, ...] = ()
    placeholder: str = DEFAULT_PLACEHOLDER
    # (ext) the credential's query parameter: with type "query" it always goes there; with
    # "header" it goes there instead of the header when the request carries that parameter
    query_param: str | None = None
    login: str | None = None             # type "login": which subscription login (codex, claude)
    role: LoginRole = "api"              # "api": access token injected; "auth": refresh/revoke answered by cordon


@dataclass(frozen=True)
class UpstreamSpec:
    address: str | None = None           # "host:port" to connect to instead of resolving the route host
    ca_file: Path | None = None          # extra trust anchors, added to the system roots
    scheme: Literal["https", "http"] = "https"


@dataclass(frozen=True)
class Route:
    name: str
    host: str                            # normalised: lower case, no trailing dot
    auth: Auth
    paths: tuple[str, ...] = ()          # empty: inject on every path
    upstream: UpstreamSpec = field(default_factory=UpstreamSpec)
    more_hosts: tuple[str, ...] = ()     # (ext) further names or `*.suffix` patterns

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host name or `*.suffix` pattern the route covers, `host` first."""
        return (self.host, *self.more_hosts) if self.more_hosts else (self.host,)


@dataclass(frozen=True)
class Policy:
    unmatched: Literal["tunnel", "deny"] = "tunnel"
    allow_hosts: tuple[str, ...] = ()
    allow_private: tuple[str, ...] = ()  # CIDRs or host names exempt from the SSRF guard


@dataclass(frozen=True)
class ExecSettings:
    """`[exec]`: how `cordon exec` confines its child (docs/confinement.md)."""

    sandbox: Literal["auto", "required", "off"] = "auto"
    egress: Literal["open", "proxy"] = "open"
    egress_ports: tuple[int, ...] = ()   # loopback ports the child may reach besides the proxy


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = True
    ca_cert_path: Path | None = None
    ca_key_path: Path | None = None


@dataclass(frozen=True)
class Config:
    routes: tuple[Route, ...] = ()
    listen: int = DEFAULT_LISTEN
    tls: TlsConfig = field(default_factory=TlsConfig)
    policy: Policy = field(default_factory=Policy)
    op_path: str | None = None           # [[secrets.providers]] type = "1password", path = ...
    exec: ExecSettings = field(default_factory=ExecSettings)
    path: Path | None = None             # the file it came from (None: zero-config)
    scope: Literal["project", "user", "explicit", "none"] = "none"

    def route(self, name: str) -> Route | None:
        for r in self.routes:
            if r.name == name:
                return r
        return None


class SecretReader(Protocol):
    """Reads a route's secret from where it lives, every call (blocking: keyring, files, `op`,
    commands). `cordon.store.secrets.SecretResolver` is the real one."""

    def resolve(self, route: Route) -> Secret: ...


class Resolver(SecretReader, Protocol):
    """The one secret cache in front of a reader (`cordon.proxy.secretcache.SecretCache`).

    `resolve` answers from the cache while the value is fresh (see that module for
    what makes it stale); `invalidate` drops one route's value, or all with None,
    so the next `resolve` reads the source again.
    """

    def invalidate(self, route_name: str | None = None) -> None: ...
