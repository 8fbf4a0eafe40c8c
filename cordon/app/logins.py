"""`cordon login|logout codex|claude`: move a subscription login into cordon's store and back.

Login: read the client's own credential file, store the real tokens (keyring),
rewrite the file with placeholders (so the user's unproxied client cannot spend
the refresh token behind cordon's back: both providers rotate refresh tokens
and revoke the family when one is reused), add the login's routes. Logout: under
the login's refresh lock, write the *current* real tokens back, then forget them
and remove the routes. Also: the client file paths, and what a session hands
the agent. Nothing here prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cordon.core.errors import ConfigError, CordonError
from cordon.core.model import Route
from cordon.core.oauth import (
    PROVIDERS,
    Login,
    LoginFormatError,
    PlaceholderFile,
    client_file,
    is_placeholder,
    login_routes,
    parse_client_file,
    provider,
)
from cordon.store.logins import LoginStore
from cordon.store.paths import Paths


def default_client_file(name: str, env: Mapping[str, str], paths: Paths) -> Path:
    """Where the client keeps its login: `$CODEX_HOME/auth.json`, `~/.claude/.credentials.json`, ..."""
    if name == "codex":
        home = env.get("CODEX_HOME")
        base = Path(home).expanduser() if home else paths.home / ".codex"
        return (base if base.is_absolute() else paths.cwd / base) / "auth.json"
    d = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR") or env.get("CLAUDE_CONFIG_DIR")
    base = Path(d).expanduser() if d else paths.home / ".claude"
    return (base if base.is_absolute() else paths.cwd / base) / ".credentials.json"


@dataclass
class LoginResult:
    login: Login
    client_file: Path
    config_path: Path
    routes_added: list[str] = field(default_factory=list)
    replaced: bool = False
    also_rewritten: Path | None = None      # the client's default file held the same login too


@dataclass
class LogoutResult:
    login: Login
    client_file: Path
    routes_removed: list[str] = field(default_factory=list)


def _read_client_file(name: str, path: Path) -> Login:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        client = "codex login" if name == "codex" else "claude auth login"
        hint = f"log in with `{client}` first (or name the file with --from PATH)"
        if name == "codex":
            hint += "; a Codex that keeps its login in the OS keyring needs cli_auth_credentials_store = \"file\""
        raise CordonError(f"{path}: no such file, so there is no {name} login to import", hint) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CordonError(f"{path}: cannot read: {e}", "check the file's permissions") from None
    try:
        return parse_client_file(name, text, source=str(path))
    except PlaceholderFile as e:
        raise CordonError(f"{path}: {e}: cordon holds this login already, or it was given back elsewhere",
                          f"`cordon status` lists the logins cordon holds; `cordon logout {name}` gives one back") \
            from None
    except LoginFormatError as e:
        raise CordonError(f"{path}: not a {name} subscription login: {e}",
                          "name the client's credential file with --from PATH") from None


def _write_client_file(path: Path, text: str) -> None:
    from cordon.store.atomic import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text, mode=0o600)


def _check_routes(config_path: Path | None, routes: Sequence[Route]) -> list[Route]:
    """The login's routes not yet in the file; ConfigError if another route holds one of its hosts."""
    if config_path is None or not config_path.is_file():
        return list(routes)
    from cordon.store.config import load_config
    cfg = load_config(config_path)
    out: list[Route] = []
    for r in routes:
        same = cfg.route(r.name)
        if same is not None and same.auth.type == "login" and same.auth.login == r.auth.login:
            continue             # kept as the user left it (an upstream override, say)
        for other in cfg.routes:
            if other.host == r.host or other.name == r.name:
                raise ConfigError(f"{config_path}: route '{other.name}' already uses "
                                  f"{'host ' + r.host if other.host == r.host else 'the name ' + r.name}",
                                  f"remove it first (`cordon route remove {other.name}`): an API-key route "
                                  "there would override the subscription login")
        out.append(r)
    return out


def login(name: str, *, env: Mapping[str, str], paths: Paths, source: str | None = None,
          config: str | None = None, scope: str | None = None) -> LoginResult:
    provider(name)
    from cordon.store.scope import resolve_scope
    path = Path(source).expanduser() if source else default_client_file(name, env, paths)
    if not path.is_absolute():
        path = paths.cwd / path
    new = _read_client_file(name, path)
    config_path = resolve_scope(paths, config, scope).config_path
    if config_path is None:
        config_path = paths.user_config      # no configuration yet: a login is the user's
    missing = _check_routes(config_path, login_routes(name))
    store = LoginStore(paths, env)
    with store.locked(name):
        replaced = store.load(name) is not None
        store.save(new)
    # the real tokens are safe in the store: now the client's own copy becomes placeholders
    _write_client_file(path, client_file(new, real=False))
    also = _same_login_elsewhere(name, new, path, env, paths)
    if also is not None:
        _write_client_file(also, client_file(new, real=False))
    added: list[str] = []
    from cordon.app.allow import approve_written
    from cordon.store.configedit import add_route
    for r in missing:
        add_route(config_path, r)
        added.append(r.name)
    if added:
        approve_written(paths, config_path, added)
    return LoginResult(login=new, client_file=path, config_path=config_path, routes_added=added,
                       replaced=replaced, also_rewritten=also)


def _same_login_elsewhere(name: str, login: Login, source: Path, env: Mapping[str, str],
                          paths: Paths) -> Path | None:
    """The client's default file when it holds the very login imported `--from` a copy: a second
    holder of the refresh token would spend it behind cordon's back."""
    default = default_client_file(name, env, paths)
    try:
        if default.resolve() == source.resolve():
            return None
        there = parse_client_file(name, default.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, LoginFormatError):
        return None
    return default if there.refresh_token == login.refresh_token else None


def ensure_login_routes(paths: Paths, config_path: Path, name: str) -> list[str]:
    """Add the login's routes to `config_path` where missing, approved as cordon wrote them."""
    from cordon.app.allow import approve_written
    from cordon.store.configedit import add_route
    added = []
    for r in _check_routes(config_path, login_routes(name)):
        add_route(config_path, r)
        added.append(r.name)
    if added:
        approve_written(paths, config_path, added)
    return added


def logout(name: str, *, env: Mapping[str, str], paths: Paths, target: str | None = None,
           config: str | None = None, scope: str | None = None) -> LogoutResult:
    provider(name)
    store = LoginStore(paths, env)
    with store.locked(name):
        current = store.load(name)
        if current is None:
            raise CordonError(f"cordon holds no {name} login", f"`cordon login {name}` imports one")
        if target:
            path = Path(target).expanduser()
            path = path if path.is_absolute() else paths.cwd / path
        else:
            path = Path(current.source) if current.source else default_client_file(name, env, paths)
        _check_not_real(path, name)
        _write_client_file(path, client_file(current, real=True))
        store.delete(name)
    removed = _remove_routes(name, paths, config, scope)
    return LogoutResult(login=current, client_file=path, routes_removed=removed)


def _check_not_real(path: Path, name: str, hint: str | None = None) -> None:
    """Refuse to overwrite a real login the user made since (`codex login` again, say)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    try:
        found = parse_client_file(name, text)
    except LoginFormatError:
        return                   # placeholders (or not a login at all): ours to replace
    if not is_placeholder(found):
        raise CordonError(f"{path} holds another real {name} login, made after `cordon login`",
                          hint or f"move it away first, or write cordon's login elsewhere: "
                                  f"`cordon logout {name} --to PATH`")


def _remove_routes(name: str, paths: Paths, config: str | None, scope: str | None) -> list[str]:
    from cordon.store.config import load_config
    from cordon.store.configedit import remove_route
    from cordon.store.scope import resolve_scope
    candidates: list[Path] = []
    if config or scope:
        p = resolve_scope(paths, config, scope).config_path
        if p is not None:
            candidates.append(p)
    else:
        found = paths.find_project_config()
        candidates += [p for p in (found, paths.user_config) if p is not None]
    removed: list[str] = []
    for p in candidates:
        if not p.is_file():
            continue
        try:
            cfg = load_config(p)
        except ConfigError:
            continue
        for r in cfg.routes:
            if r.auth.type == "login" and r.auth.login == name:
                remove_route(p, r.name)
                removed.append(f"{r.name} ({p})")
    return removed


class TellingLoginStore(LoginStore):
    """A LoginStore that tells `told` every token it reads or writes: the log redaction filter
    then knows the tokens a running proxy refreshed, not only those it started with."""

    def __init__(self, paths: Paths, env: Mapping[str, str], told: Callable[[str], None]) -> None:
        super().__init__(paths, env)
        self._told = told
        self._seen: set[str] = set()

    def _tell(self, login: Login) -> None:
        for value in (login.access_token, login.refresh_token, login.id_token):
            if value and value not in self._seen:
                self._seen.add(value)
                self._told(value)

    def load(self, name: str) -> Login | None:
        got = super().load(name)
        if got is not None:
            self._tell(got)
        return got

    def save(self, login: Login) -> None:
        self._tell(login)
        super().save(login)


def proxy_login_store(paths: Paths, env: Mapping[str, str], told: Callable[[str], None] | None) -> LoginStore:
    return LoginStore(paths, env) if told is None else TellingLoginStore(paths, env, told)


# --- sessions ---------------------------------------------------------------------------------------

def session_logins(routes: Sequence[Route]) -> list[str]:
    """The logins a session's routes inject (subscription mode for those clients)."""
    return sorted({r.auth.login for r in routes if r.auth.type == "login" and r.auth.role == "api"
                   and r.auth.login})


def held_logins(paths: Paths) -> list[str]:
    """The logins cordon holds, from the index alone (no keyring access)."""
    index = paths.logins_index
    if not index.is_file():
        return []
    try:
        names = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return sorted(n for n in names if n in PROVIDERS) if isinstance(names, dict) else []


def with_login_routes(routes: Sequence[Route], paths: Paths, *, zero_config: bool) -> list[Route]:
    """The session's routes plus the routes of every login cordon holds that the configuration lacks.

    A login is per user (like the keyring), so a project with its own cordon.toml,
    or none at all, still runs its agents in subscription mode. With no
    configuration file, a login wins over a preset made from an API key in the
    environment (that key would override the login in the client anyway).
    """
    names = held_logins(paths)
    if not names:
        return list(routes)
    out = list(routes)
    for name in names:
        for r in login_routes(name):
            clash = [x for x in out if x.host == r.host or x.name == r.name]
            if zero_config:
                out = [x for x in out if x not in clash]
            elif clash:
                continue
            out.append(r)
    return out


@dataclass
class Subscription:
    """What a subscription session hands the agent: variables to set and to drop, Codex's auth.json."""

    logins: dict[str, Login] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    codex_auth: tuple[Path, str] | None = None
    extra_routes: list[Route] = field(default_factory=list)   # workspace origins seen before


def subscription(routes: Sequence[Route], env: Mapping[str, str], paths: Paths,
                 codex_home: Path | None) -> Subscription:
    """Placeholders in each client's own format (reference/subscription-logins.md §3.2)."""
    from dataclasses import replace

    from cordon.core.oauth import claude_env
    out = Subscription()
    names = session_logins(routes)
    if not names:
        return out
    store = LoginStore(paths, env)
    for name in names:
        got = store.load(name)
        if got is None:
            raise CordonError(f"the configuration injects the {name} login, but cordon holds none",
                              f"run `cordon login {name}`")
        out.logins[name] = got
        out.drop += list(provider(name).api_key_vars)
        if name == "claude":
            out.env.update(claude_env(got))
            continue
        home = codex_home
        if home is None:
            h = env.get("CODEX_HOME")
            home = (Path(h).expanduser() if h else paths.home / ".codex")
        out.codex_auth = (home / "auth.json", client_file(got, real=False))
        api = next(r for r in routes if r.auth.type == "login" and r.auth.login == name and r.auth.role == "api")
        hosts = {r.host for r in routes}
        out.extra_routes += [replace(api, name=f"{api.name}@{h}", host=h) for h in got.origins if h not in hosts]
    return out


def prepare_codex_auth(path: Path, content: str) -> None:
    """Put the placeholder auth.json in the session's CODEX_HOME, refusing to replace a real login."""
    _check_not_real(path, "codex", f"`cordon login codex --from {path}` makes cordon hold that newer login "
                                   "(and leaves placeholders there)")
    try:
        if path.read_text(encoding="utf-8") == content:
            return
    except (OSError, UnicodeDecodeError):
        pass
    _write_client_file(path, content)


# --- status, doctor, secret check ---------------------------------------------------------------------

@dataclass(frozen=True)
class LoginInfo:
    """What may be shown about a login: never a token."""

    name: str
    plan: str | None
    expires_at: str | None           # the real access token's expiry (ISO 8601), None: unknown
    last_refresh: str | None
    problem: str | None = None       # e.g. listed in the index but gone from the keyring

    def describe(self) -> str:
        parts = [f"plan {self.plan or 'unknown'}",
                 f"access token expires {self.expires_at or 'unknown'}",
                 f"last refreshed {self.last_refresh or 'never by cordon'}"]
        return ", ".join(parts)

    def as_json(self) -> dict[str, str | None]:
        return {"login": self.name, "plan": self.plan, "expires_at": self.expires_at,
                "last_refresh": self.last_refresh, "problem": self.problem}


def login_infos(paths: Paths, env: Mapping[str, str], *, check: bool = False) -> list[LoginInfo]:
    """Every login cordon holds, from the index; `check` also reads each from the keyring."""
    store = LoginStore(paths, env)
    out: list[LoginInfo] = []
    for name, entry in sorted(store.index().items()):
        problem = None
        if check:
            try:
                if store.load(name) is None:
                    problem = "listed, but its tokens are not in the keyring"
            except CordonError as e:
                problem = e.message
        out.append(LoginInfo(name=name, plan=entry.get("plan"), expires_at=entry.get("expires_at"),
                             last_refresh=entry.get("last_refresh"), problem=problem))
    return out
