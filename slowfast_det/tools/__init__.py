"""Command-line entry points (thin: ``get_args_parser()`` + ``main(args)`` over the library).

Shared by ``train_net`` and ``test_net``: the ``--cfg`` / overrides parser and the entry point that closes the
process group (torchrun) however ``main`` ends. Only argparse is imported here; torch stays out until ``main``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ava_tools.cli import add_common_arguments, run_cli

__all__ = ["config_args_parser", "run_config_cli"]


def config_args_parser(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    """A parser with ``--cfg``, the script's own options (``add_arguments``), ``--no-progress`` and the
    trailing ``KEY VALUE`` config overrides (``args.opts``)."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    add_common_arguments(parser)
    parser.add_argument("--cfg", required=True, help="YAML config (slowfast_det or PySlowFast)")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. SOLVER.BASE_LR 0.05")
    return parser


def run_config_cli(
    main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run ``main`` through :func:`ava_tools.cli.run_cli`, then shut the
    process group down (also on errors); returns the exit status."""
    from slowfast_det.engine.distributed import shutdown_distributed

    return run_cli(main, parser, argv, cleanup=shutdown_distributed)
