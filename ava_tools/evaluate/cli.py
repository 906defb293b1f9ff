"""The command line (``slowfast-evaluate``, ``ava-evaluate``, ``python -m ava_tools.evaluate``): a drop-in for
ActivityNet's ``get_ava_performance.py``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass

from ava_tools.atomic import check_output_file
from ava_tools.cli import UserError, add_common_arguments, is_user_error, run_cli
from ava_tools.evaluate.core import EvalResult, evaluate
from ava_tools.evaluate.report import format_report, plot_per_class, write_metrics_json
from ava_tools.evaluate.rows import MAP_KEY
from ava_tools.labelmap import (
    AvaFormatError,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ava_tools.evaluate",
        description="AVA frame-mAP, numerically identical to ActivityNet's get_ava_performance.py, fast.",
    )
    add_common_arguments(parser)
    parser.add_argument("-l", "--labelmap", default=None,
                        help="label map .pbtxt (default: the bundled ava_action_list_v2.2_for_activitynet_2019)")
    parser.add_argument("-g", "--groundtruth", required=True, help="ground-truth CSV")
    parser.add_argument("-d", "--detections", required=True, help="detections CSV")
    parser.add_argument("-e", "--exclusions", default=None,
                        help="excluded timestamps CSV; selects the earlier official release's semantics")
    parser.add_argument("--json", default=None, help="write the official metrics dict to this JSON file")
    parser.add_argument("--plot", default=None, help="write a per-class AP bar chart (PNG) to this file")
    parser.add_argument("--sort", choices=("id", "name", "ap"), default="id", help="table order")
    parser.add_argument("--iou", type=float, nargs="+", default=[],
                        help="also report (not official) frame-mAP at these IoU thresholds")
    parser.add_argument("--no-range-check", action="store_true",
                        help="accept coordinates outside [0, 1] and inverted GT boxes like the official")
    return parser


def _write_output(option: str, path: str, write: Callable[[], None]) -> None:
    """Run ``write``; an OS error names the user's path, not the temporary file of the atomic write."""
    try:
        write()
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write it ({e.strerror or e})") from e


def _empty_detections_warning(result: EvalResult, detections: str) -> str | None:
    """A warning when the detections cannot score anything (the mAP is then 0 for reasons of input)."""
    rows = result.stats["detection_rows"]
    if rows == 0:
        return f"{detections}: the detection file has no rows; every class with ground truth gets AP 0"
    if result.stats["detections_evaluated"] == 0:
        return (
            f"{detections}: none of its {rows} row(s) is a detection of a label-map class on a scored "
            "ground-truth keyframe (check video ids, timestamps and class ids); every class with ground truth "
            "gets AP 0"
        )
    return None


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; returns the exit status (2 on bad input, message on stderr)."""
    try:
        for t in args.iou:
            if not 0.0 <= t <= 1.0:
                raise AvaFormatError(f"--iou thresholds must lie in [0, 1], got {t}")
        # before the evaluation: a bad output path must not cost the computed metrics
        for option, path in (("--json", args.json), ("--plot", args.plot)):
            if path:
                check_output_file(path, what=option)
        result = evaluate(args.groundtruth, args.detections, args.labelmap, args.exclusions,
                          iou_thresholds=args.iou, check_range=not args.no_range_check)
        if args.json:
            _write_output("--json", args.json, lambda: write_metrics_json(result.metrics, args.json))
        if args.plot:
            _write_output("--plot", args.plot, lambda: plot_per_class(result, args.plot, args.sort))
    except (UserError, OSError) as e:
        if getattr(args, "debug", False) or not is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(f"{MAP_KEY}: {result.mean_ap:.6f}  (metrics written to {args.json})")
    else:
        print(format_report(result, args.sort))
    if (warning := _empty_detections_warning(result, args.detections)) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``ava-evaluate``."""
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
