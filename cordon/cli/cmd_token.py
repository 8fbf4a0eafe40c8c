"""`cordon token`: not built yet (see the open issues)."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.cli.context import Context
from cordon.errors import CordonError


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(name, help="(not built yet)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise CordonError(f"'cordon {args.command}' is not built yet", "see the README's status section")
