"""Test an AVA action detector (``slowfast-test``): AVA-format detections, ground truth used, mAP.

Examples::

    slowfast-test --cfg CFG.yaml TEST.CHECKPOINT_FILE_PATH model.pyth OUTPUT_DIR runs/test
    torchrun --nproc_per_node=4 -m slowfast_det.tools.test_net --cfg CFG.yaml

Writes ``OUTPUT_DIR/detections.csv`` (one row per box and label-map class) and ``OUTPUT_DIR/groundtruth.csv``,
then evaluates and writes ``OUTPUT_DIR/metrics.json``; prints mAP and per-class AP; ``--report`` adds
``OUTPUT_DIR/report.html`` (:mod:`slowfast_det.report.dataset`). Non-finite (NaN) scores stop the run with a
message naming the checkpoint, the first video and keyframe and how many scores are affected;
``--allow-nonfinite`` writes them out and evaluates without them.

The label map, ground truth and exclusion files are ``AVA.LABEL_MAP_FILE``, ``AVA.GROUNDTRUTH_FILE`` and
``AVA.EXCLUSION_FILE`` under ``AVA.ANNOTATION_DIR``; the label map's class ids must be model classes (at most
``MODEL.NUM_CLASSES``). By default the current official evaluator's semantics apply and the exclusion file is not used;
``--use-exclusions`` evaluates as the earlier official release with ``-e EXCLUSION_FILE``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slowfast_det.tools import config_args_parser, run_config_cli

__all__ = ["cli", "get_args_parser", "main"]

DESCRIPTION = "Test an AVA action detector: AVA-format detection CSV, ground truth used, mAP and per-class AP."


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--use-exclusions",
        action="store_true",
        help="evaluate as the earlier official evaluator with -e AVA.EXCLUSION_FILE (default: current evaluator)",
    )
    parser.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="write NaN/infinite scores out (as nan) and evaluate without them, instead of stopping (default)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write OUTPUT_DIR/report.html: per-class AP and ground truth against predicted boxes per "
        "keyframe (thumbnails from AVA.FRAME_DIR); self-contained, opens offline",
    )


def get_args_parser() -> argparse.ArgumentParser:
    return config_args_parser(DESCRIPTION, _add_arguments)


def main(args: argparse.Namespace) -> None:
    """Test and print the results (rank 0); the process group stays up, :func:`cli` closes it."""
    from slowfast_det.config import load_config
    from slowfast_det.engine.launch import test_from_config
    from slowfast_det.engine.tester import format_results

    cfg = load_config(args.cfg, args.opts)
    out = test_from_config(
        cfg, use_exclusions=args.use_exclusions, allow_nonfinite=args.allow_nonfinite, progress=not args.no_progress
    )
    if out is not None:
        print(format_results(out))
        if args.report:
            from slowfast_det.builders import dataset_report_kwargs
            from slowfast_det.report import write_dataset_report

            print(f"report: {write_dataset_report(**dataset_report_kwargs(cfg))}")


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_config_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
