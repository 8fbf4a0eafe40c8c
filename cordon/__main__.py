"""`python -m cordon`: the same entry point as the console script."""

from cordon.cli.launch import entry

entry()
