"""The command line: argument parsing, rendering and exit codes.

The only layer that prints or exits. Each command lives in `cmd_<name>.py`
with `register(subparsers)` and `run(args, ctx) -> int`: it parses, calls one
`cordon.app` function and renders the result.

May import: `core`, `store` and `app`. Never `proxy`.
"""
