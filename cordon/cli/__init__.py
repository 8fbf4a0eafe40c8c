"""The command line: argument parsing, rendering and exit codes.

The only layer that prints or exits. Each command lives in `cmd_<name>.py`
with `register(subparsers)` and `run(args, ctx) -> int`.
"""
