"""Command-line entry points (thin: ``get_args_parser()`` + ``main(args)`` over the library).

Shared by ``train_net`` and ``test_net``: the ``--cfg`` / overrides parser and the entry point that closes the
process group (torchrun) however ``main`` ends. Only argparse is imported here; torch stays out until ``main``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

__all__ = ["config_args_parser", "run_config_cli"]


def config_args_parser(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    """A parser with ``--cfg``, the script's own options (``add_arguments``), ``--no-progress`` and the
    trailing ``KEY VALUE`` config overrides (``args.opts``)."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--cfg", required=True, help="YAML config (slowfast_det or PySlowFast)")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. SOLVER.BASE_LR 0.05")
    return parser


def run_config_cli(
    main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``), run ``main``, then shut the process group down (also on errors)."""
    from slowfast_det.engine.distributed import shutdown_distributed

    try:
        main(parser.parse_args(argv))
    finally:
        shutdown_distributed()
