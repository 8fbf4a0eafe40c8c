"""What the confined child must not reach: paths to mount over and variables to drop.

Values in, values out: the routes' secret sources, the config, the environment
mapping and `Paths` decide the list; the filesystem is only asked whether a
path exists (a mount needs something to cover). Knows where each keyring
backend, `op` and `pass` keep their files; never reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cordon.core.model import Config, Route
from cordon.store.paths import Paths, ensure_private_dir

# variables that hold, or lead to, a credential store's secrets
OP_VARS = ("OP_SERVICE_ACCOUNT_TOKEN", "OP_CONNECT_TOKEN", "OP_CONNECT_HOST")
BUS_VARS = ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL")


@dataclass(frozen=True)
class Mask:
    """Paths the child sees empty (directories) or as /dev/null (anything else)."""

    dirs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    drop_env: tuple[str, ...] = ()
    abstract_bus: bool = False           # the session bus is an abstract socket (needs Landlock)
    expose: tuple[tuple[str, bool], ...] = field(default=())   # (path, writable) shown inside a hidden dir


def bus_paths(address: str) -> tuple[list[str], bool]:
    """The socket paths in a D-Bus address list, and whether any is abstract (D-Bus spec, "Server Addresses")."""
    paths: list[str] = []
    abstract = False
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        if transport != "unix":
            continue
        for kv in params.split(","):
            k, _, v = kv.partition("=")
            if k == "path" and v:
                paths.append(_unescape(v))
            elif k == "abstract":
                abstract = True
    return paths, abstract


def _unescape(v: str) -> str:
    import urllib.parse
    return urllib.parse.unquote(v)


def _data_home(env: Mapping[str, str], paths: Paths) -> Path:
    data = env.get("XDG_DATA_HOME")
    return Path(data) if data and os.path.isabs(data) else paths.home / ".local" / "share"


def keyring_paths(env: Mapping[str, str], paths: Paths) -> tuple[list[str], bool]:
    """Every way into the keyring: its bus, the daemons' files, keyrings.alt's files."""
    data_home = _data_home(env, paths)
    out = [str(data_home / "python_keyring"),         # keyrings.alt (file backends, Linux data root)
           str(data_home / "keyrings"),                # gnome-keyring's stores
           str(data_home / "kwalletd"),                # KWallet's
           str(paths.home / ".local" / "share" / "python_keyring")]
    abstract = False
    address = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        found, abstract = bus_paths(address)
        out.extend(found)
    if paths.runtime_dir is not None:
        out.append(str(paths.runtime_dir / "bus"))     # the systemd user bus, D-Bus's default
        # gnome-keyring's control socket (not the directory: its ssh agent socket may live there too)
        out.append(str(paths.runtime_dir / "keyring" / "control"))
    elif not address:
        out.append(f"/run/user/{os.getuid()}/bus")
    return out, abstract


def escape_paths(env: Mapping[str, str], paths: Paths, uid: int) -> list[str]:
    """Sockets of programs outside that run what they are asked to: through one of them the child
    would be outside (and could read all of the above). Container engines (their access is root's),
    the user's systemd, terminal multiplexers, the X server; for root also the system bus and
    systemd's own."""
    runtime = str(paths.runtime_dir) if paths.runtime_dir is not None else f"/run/user/{uid}"
    out = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
           "/run/podman/podman.sock", f"{runtime}/docker.sock", f"{runtime}/podman", f"{runtime}/systemd",
           os.path.join(env.get("TMUX_TMPDIR") or "/tmp", f"tmux-{uid}"), f"/run/screen/S-{env.get('USER', '')}",
           "/tmp/.X11-unix"]        # an X server takes typed keys for any window, a terminal's too
    if uid == 0:
        out += ["/run/systemd/private", "/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket"]
    return out


def op_paths(env: Mapping[str, str], paths: Paths) -> list[str]:
    """`op`'s configuration (its session keys and daemon socket) and the 1Password agent's socket."""
    out = [str(paths.config_home / "op"), str(paths.home / ".op"), str(paths.home / ".1password"),
           str(paths.home / ".config" / "op")]
    if env.get("OP_CONFIG_DIR"):
        out.append(env["OP_CONFIG_DIR"])
    if paths.runtime_dir is not None:
        try:
            out.extend(str(p) for p in paths.runtime_dir.iterdir() if p.name.startswith("1Password"))
        except OSError:
            pass
    return out


def command_paths(argv: Sequence[str], env: Mapping[str, str], paths: Paths) -> list[str]:
    """Files a `command` source reads that cordon can see in its argv, and known stores."""
    if not argv:
        return []
    # files only: a directory argument (`--homedir ~`) may be where the agent works
    out = [a for a in argv[1:] if os.path.isabs(a) and not os.path.isdir(a)]
    name = os.path.basename(argv[0])
    if name in ("pass", "gopass", "passage"):
        out.append(env.get("PASSWORD_STORE_DIR") or str(paths.home / ".password-store"))
        out.append(str(paths.home / ".local" / "share" / "gopass"))
    if name == "op":
        out.extend(op_paths(env, paths))
    return out


def secret_paths(routes: Iterable[Route], env: Mapping[str, str], paths: Paths) -> tuple[list[str], bool]:
    out: list[str] = []
    uses_op = False
    for r in routes:
        s = r.auth.secret
        if s.source == "file" and s.path is not None:
            out.append(str(s.path))
        elif s.source == "command":
            out.extend(command_paths(s.command, env, paths))
            uses_op = uses_op or os.path.basename(s.command[0] if s.command else "") == "op"
        elif s.source == "1password":
            uses_op = True
    if uses_op:
        out.extend(op_paths(env, paths))
    return out, uses_op


def build_mask(config: Config, routes: Sequence[Route], env: Mapping[str, str], paths: Paths,
               expose: Sequence[tuple[str, bool]] = ()) -> Mask:
    """The mask for one session: the keyring, every secret's files, cordon's own files.

    `expose` lists files inside a hidden directory the child still needs (the
    session's record and lock, so a nested `cordon exec` finds the outer proxy).
    """
    wanted, abstract = keyring_paths(env, paths)
    secrets, uses_op = secret_paths(routes, env, paths)
    wanted += secrets
    wanted += escape_paths(env, paths, os.geteuid())
    # config, state, CA keys, tokens, records: made now if missing (the session is about to), so
    # what cordon writes there during the session is hidden too
    wanted.append(str(ensure_private_dir(paths.cordon_home)))
    if config.path is not None and config.scope in ("user", "explicit"):
        wanted.append(str(config.path))
    if config.tls.ca_key_path is not None:
        wanted.append(str(config.tls.ca_key_path))
    drop = [*BUS_VARS, "TMUX", "STY", *(OP_VARS if uses_op else ()),
            *(k for k in env if uses_op and k.startswith("OP_SESSION_"))]
    # never the root, the home, the working directory or one of their parents: the child works there
    keep = {"/", os.path.realpath(paths.home), os.path.realpath(paths.cwd)}
    keep |= {str(p) for k in list(keep) for p in Path(k).parents}
    dirs: dict[str, None] = {}
    files: dict[str, None] = {}
    for p in wanted:
        real = os.path.realpath(p)
        if real in keep:
            continue
        if os.path.isdir(real):
            dirs[real] = None
        elif os.path.lexists(real):
            files[real] = None
    # a path inside a directory that is hidden anyway needs no mount of its own
    top = sorted(dirs)
    kept = [d for d in top if not any(d.startswith(o + "/") for o in top if o != d)]
    covered = [f for f in files if not any(f.startswith(d + "/") for d in kept)]
    shown = tuple((os.path.realpath(p), w) for p, w in expose if os.path.exists(p))
    return Mask(dirs=tuple(kept), files=tuple(covered), drop_env=tuple(dict.fromkeys(drop)),
                abstract_bus=abstract, expose=shown)
