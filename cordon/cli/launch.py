"""The console script's entry point: `cordon --version` without importing the CLI.

Starting the interpreter costs about 10 ms; importing the command line
(argparse, paths, error rendering) costs several times that, and `--version`
(shell prompts, package managers, health checks) needs none of it. Everything
else goes to `cordon.cli.main.entry` unchanged.
"""

from __future__ import annotations

import sys


def entry() -> None:
    if sys.argv[1:] == ["--version"]:
        from cordon import __version__

        # what argparse's version action in cordon.cli.main prints
        sys.stdout.write(f"cordon {__version__}\n")
        sys.exit(0)
    from cordon.cli.main import entry as run

    run()
