"""``python -m ava_tools.prepare``."""

from ava_tools.prepare.cli import cli

cli()
