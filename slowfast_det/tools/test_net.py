"""Test an AVA action detector (``slowfast-test``): AVA-format detections, ground truth used, mAP.

Examples::

    slowfast-test --cfg CFG.yaml TEST.CHECKPOINT_FILE_PATH model.pyth OUTPUT_DIR runs/test
    torchrun --nproc_per_node=4 -m slowfast_det.tools.test_net --cfg CFG.yaml

Writes ``OUTPUT_DIR/detections.csv`` (one row per box and label-map class), ``OUTPUT_DIR/groundtruth.csv``
and ``OUTPUT_DIR/metrics.json``; prints mAP and per-class AP. The label map, ground truth and exclusion files
are ``AVA.LABEL_MAP_FILE``, ``AVA.GROUNDTRUTH_FILE`` and ``AVA.EXCLUSION_FILE`` under ``AVA.ANNOTATION_DIR``.
By default the current official evaluator's semantics apply and the exclusion file is not used;
``--use-exclusions`` evaluates as the earlier official release with ``-e EXCLUSION_FILE``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["cli", "get_args_parser", "main"]

DESCRIPTION = "Test an AVA action detector: AVA-format detection CSV, ground truth used, mAP and per-class AP."


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--cfg", required=True, help="YAML config (slowfast_det or PySlowFast)")
    parser.add_argument(
        "--use-exclusions",
        action="store_true",
        help="evaluate as the earlier official evaluator with -e AVA.EXCLUSION_FILE (default: current evaluator)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(args: argparse.Namespace) -> None:
    """Test and print the results (rank 0); the process group stays up, :func:`cli` closes it."""
    from slowfast_det.config import load_config
    from slowfast_det.engine.launch import test_from_config
    from slowfast_det.engine.tester import format_results

    cfg = load_config(args.cfg, args.opts)
    out = test_from_config(cfg, use_exclusions=args.use_exclusions, progress=not args.no_progress)
    if out is not None:
        print(format_results(out))


def cli(argv: Sequence[str] | None = None) -> None:
    from slowfast_det.engine.distributed import shutdown_distributed

    try:
        main(get_args_parser().parse_args(argv))
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    cli()
