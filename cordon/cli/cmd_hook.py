"""`cordon hook bash|zsh|fish|direnv`: activation without (or with) direnv.

`hook bash|zsh|fish` prints a prompt hook to evaluate from the shell's rc
file; `hook direnv` prints the lines that load the direnv library. The hooks
call the hidden `hook export` (prompt hooks) and `hook use` (direnv library,
nix shellHook), which write shims and print what to evaluate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from cordon import __version__
from cordon.app.activation import export_ops, use_ops
from cordon.cli.context import Context
from cordon.core.errors import CordonError
from cordon.core.shellhooks import DEFAULT_AGENTS, SHELLS, render, render_direnv_snippet, render_hook

EPILOG = f"""\
bash:   eval "$(cordon hook bash)"       in ~/.bashrc
zsh:    eval "$(cordon hook zsh)"        in ~/.zshrc
fish:   cordon hook fish | source        in ~/.config/fish/config.fish
direnv: mkdir -p ~/.config/direnv && cordon hook direnv >> ~/.config/direnv/direnvrc,
        then `use cordon` in an .envrc

In a directory with a cordon.toml (or below one) the hook puts a directory of
shims first on PATH, one per agent ({", ".join(DEFAULT_AGENTS)} when found
on PATH, or the AGENTs named), each running `cordon exec -- <real agent>`, and
exports the routes' placeholder variables; leaving, it undoes exactly that.
"""


class _ListedChoices(dict[str, Any]):
    """Subcommands by name; iterating (what argparse lists in errors) skips the hidden ones."""

    def __init__(self, hidden: tuple[str, ...]) -> None:
        super().__init__()
        self.hidden = hidden

    def __iter__(self) -> Iterator[str]:
        return (k for k in super().__iter__() if k not in self.hidden)


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="print a shell hook (bash, zsh, fish) or the direnv library line",
        description="Activate cordon per directory: shims on PATH that run agents under `cordon exec`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    hs = p.add_subparsers(dest="hook_shell", metavar="{bash,zsh,fish,direnv}", required=True)
    # argparse's "invalid choice" lists every subcommand; the hooks' own ones stay unlisted
    hs.choices = hs._name_parser_map = _ListedChoices(hidden=("export", "use"))
    for shell in SHELLS:
        sp = hs.add_parser(shell, help=f"print the {shell} prompt hook")
        sp.add_argument("agents", nargs="*", metavar="AGENT",
                        help="agents to shim (default: those of " + ", ".join(DEFAULT_AGENTS) + " on PATH)")
        sp.set_defaults(run=run_hook)
    dp = hs.add_parser("direnv", help="print the lines that load the direnv library (`use cordon`)")
    dp.add_argument("--path", action="store_true", help="print only the library's path")
    dp.set_defaults(run=run_direnv)
    # called by the hooks themselves; hidden from --help
    ep = hs.add_parser("export")
    ep.add_argument("shell", choices=SHELLS)
    _common(ep)
    ep.set_defaults(run=run_export)
    up = hs.add_parser("use")
    up.add_argument("--shell", choices=(*SHELLS, "direnv"), default="bash")
    up.add_argument("--shim-dir", metavar="DIR")
    _common(up)
    up.set_defaults(run=run_use)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cordon", metavar="EXE", help="the cordon executable the shims run")
    p.add_argument("agents", nargs="*", metavar="AGENT")


def self_argv(ctx: Context, explicit: str | None = None) -> list[str]:
    """How a shim or hook runs this cordon again, by absolute path.

    A console script's argv[0] is its path; nixpkgs' wrapper sets argv[0] to
    the bare name (found on PATH); anything else (`python -m cordon`, tests)
    runs as this interpreter with `-m cordon`.
    """
    if explicit:
        return [os.path.abspath(explicit)]
    arg0 = sys.argv[0] if sys.argv else ""
    if Path(arg0).name == "cordon":
        if os.path.isabs(arg0) and os.access(arg0, os.X_OK):
            return [arg0]
        found = shutil.which(arg0, path=ctx.env.get("PATH"))
        if found:
            return [os.path.abspath(found)]
    return [sys.executable, "-m", "cordon"]


def library_path() -> Path:
    """The direnv library shipped inside the package (shell-hooks/ is package data)."""
    return Path(str(resources.files("cordon") / "shell-hooks" / "cordon.direnvrc")).resolve()


def run_hook(args: argparse.Namespace, ctx: Context) -> int:
    me = self_argv(ctx)
    ctx.stdout.write(render_hook(args.hook_shell, [*me, "hook", "export", args.hook_shell, *args.agents]))
    return 0


def run_direnv(args: argparse.Namespace, ctx: Context) -> int:
    lib = library_path()
    if not lib.is_file():
        raise CordonError(f"the direnv library is missing from this installation ({lib})",
                          "reinstall cordon; a checkout has it in shell-hooks/cordon.direnvrc")
    if args.path:
        ctx.out(str(lib))
        return 0
    me = self_argv(ctx)
    ctx.stdout.write(render_direnv_snippet(str(lib), me[0] if len(me) == 1 else None, __version__))
    return 0


def run_export(args: argparse.Namespace, ctx: Context) -> int:
    # Ctrl-C at the prompt must not leave half an activation behind (fish cannot ignore it for us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = self_argv(ctx, args.cordon)
    again = [*me, "hook", "export", args.shell, *(["--cordon", args.cordon] if args.cordon else []),
             *args.agents]
    ops = export_ops(ctx.env, ctx.paths, args.shell, args.agents, me, again)
    ctx.stdout.write(render(ops, args.shell))
    return 0


def run_use(args: argparse.Namespace, ctx: Context) -> int:
    me = self_argv(ctx, args.cordon)
    shim_dir = ctx.paths.cwd / args.shim_dir if args.shim_dir else None
    ops = use_ops(ctx.env, ctx.paths, args.shell, shim_dir, args.agents, me)
    ctx.stdout.write(render(ops, args.shell))
    return 0
