"""``python -m ava_tools.evaluate``."""

from ava_tools.evaluate.cli import cli

cli()
