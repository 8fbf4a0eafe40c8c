"""Where cordon keeps its files: config discovery and per-scope state.

The only module that reads HOME / XDG variables, and only from the mapping it
is handed (tests pass a throwaway environment). No sockets, no keyring.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon.core.errors import CordonError

CONFIG_NAME = "cordon.toml"


def namespace_for(project_dir: Path) -> str:
    """`<dirname>-<sha256(abs dir)[:8]>`, Cordon's per-project name."""
    import hashlib  # (imported here: every command loads this module, few hash a path)

    absdir = str(project_dir.resolve())
    digest = hashlib.sha256(absdir.encode()).hexdigest()[:8]
    return f"{project_dir.resolve().name or 'root'}-{digest}"


@dataclass(frozen=True)
class Paths:
    """Resolved base directories for one invocation."""

    home: Path
    config_home: Path          # $XDG_CONFIG_HOME or ~/.config
    runtime_dir: Path | None   # $XDG_RUNTIME_DIR when it is usable
    cwd: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Paths:
        env = os.environ if env is None else env
        home = Path(env.get("HOME") or Path.home())
        xdg = env.get("XDG_CONFIG_HOME")
        config_home = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
        rt = env.get("XDG_RUNTIME_DIR")
        runtime = Path(rt) if rt and os.path.isabs(rt) and os.path.isdir(rt) else None
        return cls(home=home, config_home=config_home, runtime_dir=runtime,
                   cwd=(cwd or Path(os.getcwd())))

    @property
    def cordon_home(self) -> Path:
        return self.config_home / "cordon"

    @property
    def logins_index(self) -> Path:
        """The subscription logins cordon holds (no tokens: cordon.store.logins)."""
        return self.cordon_home / "logins.json"

    @property
    def user_config(self) -> Path:
        return self.cordon_home / CONFIG_NAME

    def find_project_config(self) -> Path | None:
        """cordon.toml in the working directory or its nearest parent (a directory of that
        name counts too, so that loading it fails loudly instead of being skipped)."""
        here = self.cwd.resolve()
        for d in (here, *here.parents):
            cand = d / CONFIG_NAME
            if cand.exists():
                return cand
        return None

    def state_dir(self, scope: str, project_dir: Path | None = None) -> Path:
        """Per-scope state (CA, tokens): projects/<ns>/ or user/."""
        if scope == "user":
            return self.cordon_home / "user"
        base = project_dir if project_dir is not None else self.cwd
        return self.cordon_home / "projects" / namespace_for(base)

    def state_dir_for_config(self, config_path: Path | None, scope: str) -> Path:
        """State directory that belongs to a config file (user file → user/)."""
        if config_path is not None and config_path.resolve() == self.user_config.resolve():
            return self.state_dir("user")
        if scope == "user":
            return self.state_dir("user")
        return self.state_dir("project", config_path.parent if config_path else self.cwd)

    @property
    def sessions_dir(self) -> Path:
        """Records of running `cordon exec` sessions (for crash repair)."""
        return self.cordon_home / "sessions"

    @property
    def session_root(self) -> Path:
        """Parent of per-session directories: $XDG_RUNTIME_DIR/cordon or a private temp dir."""
        if self.runtime_dir is not None:
            return self.runtime_dir / "cordon"
        import tempfile  # (imported here: it pulls in shutil, random and hashlib)

        return Path(tempfile.gettempdir()) / f"cordon-{os.getuid()}"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700; tighten it if it exists.

    The mode is checked and changed on an open descriptor of the directory
    (`fstat`/`fchmod`), and only when it is ours: never through a link to
    someone else's. Directories in a shared place use `privatedir` instead.
    """
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            if st.st_uid != os.getuid():
                raise CordonError(f"{path} belongs to another user and others can read it",
                                  f"remove {path}, or point XDG_CONFIG_HOME at a directory of your own")
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path
