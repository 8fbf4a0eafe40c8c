"""The interactive `cordon route add|edit` wizard: questions in, the same flags out.

It only fills an argparse.Namespace with the answers, so a wizard route is
built and validated exactly like one given by flags. Runs only on a terminal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cordon.cli.context import Context
from cordon.core.credlike import looks_like_credential
from cordon.core.errors import UsageError
from cordon.core.model import Route
from cordon.core.routes import PRESETS, derive_name

SOURCES = ("keyring", "1password", "env", "file", "command")


class _Asker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def ask(self, question: str, default: str | None = None, *, required: bool = True) -> str:
        while True:
            suffix = f" [{default}]" if default else ""
            self.ctx.stdout.write(f"{question}{suffix}: ")
            self.ctx.stdout.flush()
            line = self.ctx.stdin.readline()
            if not line:
                raise UsageError("input ended before the wizard finished", "run it again, or pass flags")
            answer = line.strip()
            if answer:
                return answer
            if default is not None:
                return default
            if not required:
                return ""
            self.ctx.out("  (an answer is needed)")

    def ask_name(self, question: str, default: str) -> str:
        """A name (a keyring account): an answer that looks like a key is refused, and wiped
        from the terminal, so that the key never lands in cordon.toml or on the screen."""
        while True:
            answer = self.ask(question, default)
            if not looks_like_credential(answer):
                return answer
            if self.ctx.stdout.isatty():
                self.ctx.stdout.write("\x1b[1A\x1b[2K")     # up one line, erase it: the pasted key goes
            self.ctx.out(f"  that looks like a secret key, not a name: it was not kept. {question} is a label "
                         f"such as '{default}'; the key itself is asked for later, with the input hidden")

    def choose(self, question: str, options: Sequence[str], default: str) -> str:
        while True:
            answer = self.ask(f"{question} ({'/'.join(options)})", default)
            if answer in options:
                return answer
            self.ctx.out(f"  choose one of: {', '.join(options)}")

    def yes(self, question: str, default: bool = True) -> bool:
        while True:
            answer = self.ask(f"{question} ({'Y/n' if default else 'y/N'})", required=False).lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")


def wizard(args: argparse.Namespace, ctx: Context, base: Route | None) -> argparse.Namespace:
    """Ask for a route (defaults from `base` when editing); returns args with the answers set."""
    q = _Asker(ctx)
    ns = argparse.Namespace(**vars(args))
    preset = None
    if base is None:
        choice = q.choose("Provider", [*PRESETS, "custom"], "custom")
        if choice != "custom":
            preset = PRESETS[choice]
            ns.preset = choice
    if preset is None:
        ns.host = q.ask("Host (exact, e.g. api.example.com)", base.host if base else None)
    default_name = base.name if base else (preset.name if preset else derive_name(ns.host))
    ns.new_name = q.ask("Route name", default_name)
    if preset is None:
        old = base.auth if base else None
        ns.auth_type = q.choose("Auth type", ["header", "basic"], old.type if old else "header")
        if ns.auth_type == "basic":
            ns.username = q.ask("User name", old.username if old else None)
        else:
            ns.header_name = q.ask("Header name", old.header_name if old and old.type == "header"
                                   else "Authorization")
            if ns.header_name.lower() == "authorization":
                ns.scheme = q.ask("Scheme", (old.scheme if old and old.scheme else "Bearer"))
            else:
                ns.scheme = q.ask("Scheme (empty for none)", old.scheme if old else None, required=False)
        pe = ",".join(old.placeholder_env) if old else None
        ns.placeholder_env = [q.ask("Placeholder variables for children (comma-separated, empty for none)",
                                    pe, required=False)]
    spec = base.auth.secret if base else None
    ns.source = q.choose("Secret source", list(SOURCES), spec.source if spec else "keyring")
    keep = spec if spec is not None and spec.source == ns.source else None
    if ns.source == "keyring":
        ns.account = q.ask_name("Keyring account", (keep.account if keep else None) or ns.new_name)
        if base is None:
            ns.store_secret_now = q.yes("Store the secret in the keyring now?")
    elif ns.source == "1password":
        ns.vault = q.ask("1Password vault", keep.vault if keep else None)
        ns.item = q.ask("1Password item", keep.item if keep else None)
        ns.field = q.ask("1Password field", (keep.field if keep else None) or "credential")
        ns.op_account = q.ask("1Password account (empty for the default)",
                              keep.account if keep else None, required=False)
    elif ns.source == "env":
        ns.var = q.ask("Environment variable holding the secret", keep.var if keep else None)
    elif ns.source == "file":
        ns.path = q.ask("File holding the secret (mode 0600)", str(keep.path) if keep else None)
    else:
        import shlex
        ns.secret_command = q.ask("Command printing the secret", shlex.join(keep.command) if keep else None)
    return ns
