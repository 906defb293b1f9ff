"""The command line of :func:`ava_tools.prepare.prepare` (slowfast-prepare, ava-prepare, -m ava_tools.prepare)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ava_tools.cli import add_common_arguments, run_cli
from ava_tools.prepare.extract import AVA_END_SEC, AVA_START_SEC, prepare

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m ava_tools.prepare``."""
    p = argparse.ArgumentParser(
        description="Cut AVA videos to [900, 1801) s, extract 30 fps JPEGs, write a PySlowFast frame list."
    )
    add_common_arguments(p)
    p.add_argument("videos", nargs="+", help="video files or folders of videos")
    p.add_argument("--frames", required=True, type=Path, help="output root: FRAMES/{vid}/{vid}_%%06d.jpg")
    p.add_argument("--frame-list", required=True, type=Path, help="frame list CSV to write (e.g. train.csv)")
    p.add_argument("--start-sec", type=float, default=AVA_START_SEC, help="cut start in seconds (default 900)")
    p.add_argument("--end-sec", type=float, default=AVA_END_SEC, help="cut end in seconds, exclusive (default 1801)")
    p.add_argument("--fps", type=float, default=30.0, help="output frame rate (default 30)")
    p.add_argument(
        "--ffmpeg",
        default="auto",
        help="auto (default: the ffmpeg on PATH, else imageio-ffmpeg's, else built-in), none (built-in: PyAV "
        "with ffmpeg 5.1's frame choice and -q:v 1 JPEGs), or the path of an ffmpeg to run",
    )
    p.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        help="built-in backend only: Pillow JPEGs of this quality instead of ffmpeg's -q:v 1",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a video shorter than the cut fails (default: keep the frames that exist, with a warning)",
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: none)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(args: argparse.Namespace) -> int:
    """Run the CLI; returns the exit status (1 if any video failed)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = prepare(
        args.videos,
        args.frames,
        args.frame_list,
        workers=args.workers,
        start_sec=args.start_sec,
        end_sec=args.end_sec,
        fps=args.fps,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        ffmpeg=args.ffmpeg,
        strict=args.strict,
    )
    print(summary.describe())
    return 0 if summary.ok else 1


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``ava-prepare``."""
    sys.exit(run_cli(main, get_args_parser(), argv))
