"""Train an AVA action detector (``slowfast-train``), on one process or under torchrun.

Examples::

    slowfast-train --cfg configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml OUTPUT_DIR runs/ava AVA.FRAME_DIR /data/frames
    torchrun --nproc_per_node=8 -m slowfast_det.tools.train_net --cfg CFG.yaml TRAIN.BATCH_SIZE 64

``TRAIN.BATCH_SIZE`` is the global batch (divided over the processes). With ``TRAIN.AUTO_RESUME`` (default)
training continues from the newest ``OUTPUT_DIR/checkpoints/checkpoint_epoch_*.pyth``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slowfast_det.tools import config_args_parser, run_config_cli

__all__ = ["cli", "get_args_parser", "main"]

DESCRIPTION = "Train an AVA action detector (PySlowFast recipe) on one process or under torchrun."


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", default=None, help="resume from this training checkpoint (.pyth)")


def get_args_parser() -> argparse.ArgumentParser:
    return config_args_parser(DESCRIPTION, _add_arguments)


def main(args: argparse.Namespace) -> None:
    """Train; the process group (under torchrun) stays up for further work, :func:`cli` closes it."""
    from slowfast_det.config import load_config
    from slowfast_det.engine.launch import train_from_config

    train_from_config(load_config(args.cfg, args.opts), resume=args.resume, progress=not args.no_progress)


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_config_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
