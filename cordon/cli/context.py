"""What a command runs with: streams, environment and paths (injected for tests)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cordon.store.paths import Paths


@dataclass
class Context:
    env: MutableMapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    cwd: Path | None = None

    @property
    def paths(self) -> Paths:
        return Paths.from_env(self.env, self.cwd)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def err(self, text: str) -> None:
        print(text, file=self.stderr)


def add_scope_args(p: argparse.ArgumentParser) -> None:
    """--config / --scope, shared by every command that picks a cordon.toml."""
    p.add_argument("-c", "--config", metavar="PATH", help="use this cordon.toml")
    p.add_argument("--scope", choices=("project", "user"),
                   help="project: ./cordon.toml (or nearest parent); user: ~/.config/cordon/cordon.toml")
