"""Edit `cordon.toml` in place: add, change or remove one route, keeping everything else.

tomlkit keeps comments, order, quoting and blank lines; a change touches only
the keys of the edited route whose meaning changes. Every write is validated
first (the result must load) and is atomic; a lock on the directory keeps two
concurrent edits from losing one. Never prints; never reads secrets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from cordon.core.errors import ConfigError
from cordon.core.model import DEFAULT_KEYRING_SERVICE, DEFAULT_PLACEHOLDER, Route
from cordon.core.routes import normalize_host
from cordon.store.atomic import atomic_write
from cordon.store.config import check_route, parse_config

NEW_FILE_HEADER = """\
# cordon configuration: routes whose credentials cordon injects.
# Reference: docs/configuration.md in cordon's source. Edit by hand or with `cordon route`.

listen = 6790   # port for `cordon start`; cordon always binds 127.0.0.1
"""

# defaults the parser fills in; an existing key holding one of these is kept as written
_DEFAULTS: dict[str, dict[str, Any]] = {
    "route": {},
    "match": {"paths": []},
    "auth": {"placeholder": DEFAULT_PLACEHOLDER, "placeholder_env": []},
    "secret": {"service": DEFAULT_KEYRING_SERVICE, "ttl": 0, "field": "credential"},
    "upstream": {"scheme": "https"},
}


def route_table(route: Route, *, defaults: bool = False) -> dict[str, Any]:
    """The `[[routes]]` table for a route (plain dicts). `defaults` adds implied values (for --json)."""
    s = route.auth.secret
    secret: dict[str, Any] = {"source": s.source}
    if s.source == "keyring":
        secret["account"] = s.account or route.name
        if defaults or s.service != DEFAULT_KEYRING_SERVICE:
            secret["service"] = s.service
        if s.decode:
            secret["decode"] = s.decode
    elif s.source == "1password":
        secret.update(vault=s.vault, item=s.item, field=s.field)
        if s.account:
            secret["account"] = s.account
        if defaults or s.timeout != 30.0:
            secret["timeout"] = _num(s.timeout)
    elif s.source == "env":
        secret["var"] = s.var
    elif s.source == "file":
        secret["path"] = str(s.path)
    elif s.source == "command":
        secret["command"] = list(s.command)
        if defaults or s.ttl:
            secret["ttl"] = _num(s.ttl)
        if defaults or s.timeout != 10.0:
            secret["timeout"] = _num(s.timeout)
    a = route.auth
    auth: dict[str, Any] = {"type": a.type}
    if a.type == "login":
        auth.update(login=a.login, role=a.role)
    elif a.type == "header":
        auth["header_name"] = a.header_name
        if a.scheme:
            auth["scheme"] = a.scheme
    elif a.type == "basic":
        auth["username"] = a.username
    if a.query_param:
        auth["query_param"] = a.query_param
    if a.type != "login":
        if a.placeholder_env or defaults:
            auth["placeholder_env"] = list(a.placeholder_env)
        if defaults or a.placeholder != DEFAULT_PLACEHOLDER:
            auth["placeholder"] = a.placeholder
        auth["secret"] = secret
    match: dict[str, Any] = {"host": route.host}
    if route.more_hosts:
        match["hosts"] = list(route.more_hosts)
    if route.paths or defaults:
        match["paths"] = list(route.paths)
    table: dict[str, Any] = {"name": route.name, "match": match, "auth": auth}
    u = route.upstream
    upstream: dict[str, Any] = {}
    if u.address:
        upstream["address"] = u.address
    if u.ca_file:
        upstream["ca_file"] = str(u.ca_file)
    if u.scheme != "https" or defaults:
        upstream["scheme"] = u.scheme
    if upstream or defaults:
        table["upstream"] = upstream
    return table


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An advisory lock on the config's directory for one read-modify-write."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failure to create or replace the config file into one ConfigError naming it."""
    try:
        yield
    except OSError as e:
        where = str(e.filename) if e.filename else str(path)
        if e.errno in (errno.EEXIST, errno.ENOTDIR):
            why = f"{path.parent} is not a directory"
        elif where in (str(path), str(path.parent)) or ".cordon-tmp-" in where:
            why = e.strerror or str(e)
        else:
            why = f"{where}: {e.strerror or e}"
        raise ConfigError(f"cannot write {path}: {why}",
                          f"make sure {path.parent} exists and is writable by you (the file is unchanged), "
                          "or pick another file with --config PATH or --scope") from None


def _read(path: Path) -> tuple[str, tomlkit.TOMLDocument]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = NEW_FILE_HEADER
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}", "check the file's permissions and encoding") from None
    parse_config(text, path)  # refuse to edit a file that does not load: the error names file:line
    return text, tomlkit.parse(text)


def _write(path: Path, doc: tomlkit.TOMLDocument) -> None:
    text = tomlkit.dumps(doc)
    parse_config(text, path)  # never write a file cordon itself would refuse
    atomic_write(path, text)


def _routes(doc: tomlkit.TOMLDocument) -> Any:
    routes = doc.get("routes")
    return [] if routes is None else routes


def _index(doc: tomlkit.TOMLDocument, name: str, path: Path) -> int:
    for i, t in enumerate(_routes(doc)):
        if t.get("name", normalize_host(str(t.get("match", {}).get("host", "")))) == name:
            return i
    raise ConfigError(f"{path}: no route named '{name}'", "see the names with `cordon route list`")


def _check_unique(doc: tomlkit.TOMLDocument, route: Route, path: Path, skip: int | None = None) -> None:
    cfg = parse_config(tomlkit.dumps(doc), path)
    for i, r in enumerate(cfg.routes):
        if i == skip:
            continue
        if r.name == route.name:
            raise ConfigError(f"{path}: a route named '{route.name}' already exists",
                              f"change it with `cordon route edit {route.name}`, or pick another --name")
        both = set(r.hosts) & set(route.hosts)
        if both:
            h = min(both)
            raise ConfigError(f"{path}: host {h} already has route '{r.name}'",
                              f"one route per host: change it with `cordon route edit {r.name}`")


def _to_tomlkit(table: Mapping[str, Any]) -> Table:
    t = tomlkit.table()
    for k, v in table.items():
        if isinstance(v, Mapping):
            t.add(k, _to_tomlkit(v))
        else:
            t.add(k, v)
    return t


def _last_table(t: Table) -> Table:
    last = list(t.values())[-1] if len(t) else None
    return _last_table(last) if isinstance(last, Table) else t


def _end_with_blank_line(doc: tomlkit.TOMLDocument) -> None:
    """Separate what the file ends with from an appended table by a blank line: a comment
    right above a header belongs to that header (see _cut_route_block), so a comment that
    ended the file must not end up touching the new table."""
    for _ in range(2):     # the file may not even end with a newline
        text = tomlkit.dumps(doc)
        if not text.strip() or text.endswith("\n\n"):
            return
        last = doc.body[-1][1] if doc.body else None
        if isinstance(last, AoT) and len(last):
            last = last[-1]
        if isinstance(last, Table):
            _last_table(last).add(tomlkit.nl())
        else:
            doc.add(tomlkit.nl())


def add_route(path: Path, route: Route) -> bool:
    """Append a route to `path` (created if missing). Returns True when the file was created."""
    path = Path(path)
    desired = route_table(route)
    check_route(desired, path.parent)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return _add_route(path, route, desired)


def _add_route(path: Path, route: Route, desired: dict[str, Any]) -> bool:
    with _locked(path.parent):
        created = not path.exists()
        _, doc = _read(path)
        _check_unique(doc, route, path)
        routes = doc.get("routes")
        new = _to_tomlkit(desired)
        _last_table(new).add(tomlkit.nl())  # a blank line before whatever follows in the file
        _end_with_blank_line(doc)
        if routes is None:
            aot = tomlkit.aot()
            aot.append(new)
            doc.append("routes", aot)
        elif isinstance(routes, AoT):
            routes.append(new)
        else:  # routes = [ {...} ] written inline
            routes.append(tomlkit.item(desired))
        _write(path, doc)
    return created


def _same(key: str, old: Any, new: Any, base: Path) -> bool:
    """Whether the value written in the file already means `new`."""
    old = old.unwrap() if hasattr(old, "unwrap") else old
    if key in ("path", "ca_file") and isinstance(old, str):
        p = Path(old).expanduser()
        return str(p if p.is_absolute() else base / p) == str(new)
    if key == "host" and isinstance(old, str):
        return normalize_host(old) == str(new)
    if key in ("placeholder_env", "paths") and isinstance(old, str):
        return bool([old] == new)
    if isinstance(old, int | float) and isinstance(new, int | float) and not isinstance(old, bool):
        return float(old) == float(new)
    return bool(old == new)


def _merge(table: Any, desired: Mapping[str, Any], defaults: Mapping[str, Any], base: Path,
           section: str) -> None:
    """Make `table` mean `desired`, touching only keys whose meaning changes."""
    for k in list(table.keys()):
        if k in desired:
            continue
        if isinstance(table[k], dict) and k in ("match", "auth", "secret", "upstream"):
            del table[k]          # a whole sub-table that is no longer wanted
        elif k in defaults and _same(k, table[k], defaults[k], base):
            continue              # written out explicitly, but means the default: keep
        else:
            del table[k]
    for k, v in desired.items():
        if isinstance(v, Mapping):
            if k in table and isinstance(table[k], dict):
                sub_defaults = _DEFAULTS.get(k, {})
                if k == "secret" and table[k].get("source", "keyring") != v.get("source"):
                    sub_defaults = {}   # another source: none of the old keys apply
                _merge(table[k], v, sub_defaults, base, k)
            else:
                new = _to_tomlkit(v)
                _last_table(new).add(tomlkit.nl())  # a blank line before whatever follows, as add_route does
                table[k] = new
        elif k in table:
            if not _same(k, table[k], v, base):
                table[k] = v
        else:
            _add_key(table, k, v)


def _add_key(table: Any, key: str, value: Any) -> None:
    """Add a key after the table's last key, not after the comments that lead into the next table."""
    body = getattr(getattr(table, "value", None), "body", None)
    if not isinstance(table, Table) or body is None:
        table[key] = value
        return
    trailing: list[Any] = []
    while body and body[-1][0] is None:
        trailing.insert(0, body.pop())
    table[key] = value
    body.extend(trailing)


def update_route(path: Path, name: str, route: Route) -> None:
    """Replace the route called `name` by `route`, keeping comments and unchanged keys."""
    path = Path(path)
    desired = route_table(route)
    check_route(desired, path.parent)
    if not path.exists():
        raise ConfigError(f"{path}: no such file", "add a route first with `cordon route add`")
    with _writing(path), _locked(path.parent):
        if not path.exists():
            raise ConfigError(f"{path}: no such file", "add a route first with `cordon route add`")
        _, doc = _read(path)
        i = _index(doc, name, path)
        _check_unique(doc, route, path, skip=i)
        table = _routes(doc)[i]
        if "upstream" not in desired and "upstream" in table:
            del table["upstream"]
        _merge(table, desired, _DEFAULTS["route"], path.parent, "route")
        _write(path, doc)


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")


def _cut_route_block(text: str, index: int) -> str | None:
    """`text` without the index-th `[[routes]]` block, its own leading comment and sub-tables.

    Comment lines right above a header belong to that header: the removed
    route's go with it, the next table's stay. None when the route is not
    written as a `[[routes]]` block (then tomlkit removes it).
    """
    lines = text.splitlines(keepends=True)
    headers = [(i, m.group(1).replace(" ", "")) for i, line in enumerate(lines)
               if (m := _HEADER.match(line))]
    starts = [i for i, (n, name) in enumerate(headers) if name == "routes" and lines[n].lstrip().startswith("[[")]
    if index >= len(starts):
        return None
    k = starts[index]
    h = headers[k][0]
    nxt = next((n for n, name in headers[k + 1:] if not name.startswith("routes.")
                or lines[n].lstrip().startswith("[[")), len(lines))
    start = h
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    end = nxt
    if nxt < len(lines):
        while end - 1 > h and lines[end - 1].lstrip().startswith("#"):
            end -= 1
    return "".join(lines[:start] + lines[end:])


def remove_route(path: Path, name: str) -> Route:
    """Delete the route called `name`; returns it as it was."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file", "there are no routes to remove")
    with _writing(path), _locked(path.parent):
        if not path.exists():
            raise ConfigError(f"{path}: no such file", "there are no routes to remove")
        text, doc = _read(path)
        i = _index(doc, name, path)
        before = parse_config(text, path).routes
        old = before[i]
        cut = _cut_route_block(text, i)
        if cut is not None:
            try:
                ok = parse_config(cut, path).routes == before[:i] + before[i + 1:]
            except ConfigError:
                ok = False
            if ok:
                atomic_write(path, cut)
                return old
        routes = _routes(doc)
        del routes[i]
        if len(routes) == 0 and isinstance(routes, AoT):
            del doc["routes"]
        _write(path, doc)
    return old
