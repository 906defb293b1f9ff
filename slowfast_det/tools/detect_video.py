"""Per-person action CSVs from your own videos (``detect-video``).

Examples::

    detect-video clip.mp4          # zoo model SLOWFAST_32x2_R101_50_50 + COCO Faster R-CNN -> ./detect_video_out/
    detect-video clips/ --model SLOWFAST_64x2_R101_50_50 --output-dir out
    detect-video clips/*.mp4 --config configs/AVA/SLOWFAST_32x2_R101_50_50.yaml --weights model.pkl \\
        --output-dir out
    detect-video talk.mp4 --config CFG.yaml --weights https://host/model.pyth --output-dir out \\
        --stride 0.5 --start 60 --end 120 --topk 3 --render out/talk.mp4 --render-short-side 480

Every input video (files, folders, glob patterns) gives ``OUT/<name>.actions.csv`` with columns
``video_id,timestamp,person_id,x1,y1,x2,y2,detector_score,action_id,action_name,score`` (boxes normalised to
[0, 1], one row per person and action over ``--action-threshold``/``--topk``); ``--format ava`` writes
``OUT/<name>.ava.csv`` in the 8-column AVA detection format instead. Finished videos are skipped on a rerun
(``--overwrite`` redoes them); a video that fails is reported at the end and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ava_tools.cli import add_common_arguments, run_cli

__all__ = ["cli", "get_args_parser", "main"]


def _seconds(text: str) -> str:
    """argparse type: a non-negative decimal number of seconds, kept as text (read exactly later)."""
    from fractions import Fraction

    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return text


def _stride(text: str) -> str:
    from fractions import Fraction

    if Fraction(_seconds(text)) == 0:
        raise argparse.ArgumentTypeError("expected a stride > 0 seconds, got 0")
    return text


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Keyframe clips are sampled by time at the model's 30 fps whatever the video's frame rate: see "
               "slowfast_det.video.stream for the exact rule.",
    )
    add_common_arguments(parser)
    parser.add_argument("inputs", nargs="+", help="video files, folders of videos, or glob patterns")
    models, detectors = _zoo_names()
    parser.add_argument("--model", default=None, metavar="NAME",
                        help=f"AVA model from the model zoo (default {models[0]}): {', '.join(models)}; "
                             "downloaded once into the cache (slowfast-zoo list)")
    parser.add_argument("--config", "--cfg", default=None,
                        help="SlowFast YAML config (slowfast_det or PySlowFast) instead of the --model's")
    parser.add_argument("--weights", default=None, help="SlowFast weights (local path or URL) instead of the --model's")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")
    parser.add_argument("--output-dir", type=Path, default=Path("detect_video_out"),
                        help="folder for the per-video outputs (default ./detect_video_out)")
    det = parser.add_argument_group("person detector (detectron2 Faster R-CNN)")
    det.add_argument("--detector", default=None, metavar="NAME",
                     help=f"detector from the model zoo: {', '.join(detectors)} (default: the config's "
                          "DEMO.DETECTRON2_*, PySlowFast's being the first)")
    det.add_argument("--detector-config", default=None,
                     help="detectron2 model-zoo name or YAML (default: DEMO.DETECTRON2_CFG, "
                          "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml)")
    det.add_argument("--detector-weights", default=None,
                     help="path or URL, detectron2:// accepted (default: DEMO.DETECTRON2_WEIGHTS)")
    det.add_argument("--detector-opts", nargs="+", default=[], metavar="KEY VALUE",
                     help="detectron2 config overrides, e.g. INPUT.MIN_SIZE_TEST 600")
    det.add_argument("--detector-threshold", type=float, default=0.8,
                     help="keep person boxes with score >= this (default 0.8, as PySlowFast's AVA configs)")
    det.add_argument("--person-class", type=int, default=0, help="person class index of the detector (COCO: 0)")
    kf = parser.add_argument_group("keyframes")
    kf.add_argument("--stride", type=_stride, default="1.0", help="seconds between keyframes (default 1.0, as AVA)")
    kf.add_argument("--start", type=_seconds, default="0", help="first keyframe time in seconds (default 0)")
    kf.add_argument("--end", type=_seconds, default=None,
                    help="last keyframe time in seconds (default: end of the video)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--format", choices=("csv", "ava"), default="csv",
                     help="csv: <name>.actions.csv with header and person ids; ava: <name>.ava.csv, AVA detections")
    out.add_argument("--action-threshold", type=float, default=0.5, help="smallest action score written")
    out.add_argument("--topk", type=int, default=None, help="at most K actions per person")
    out.add_argument("--json", action="store_true", help="also write <name>.actions.json")
    out.add_argument("--render", nargs="?", const="", default=None, metavar="OUT.mp4",
                     help="draw boxes, ids and top actions: OUT.mp4 (one video) or a folder; no value: "
                          "OUTPUT_DIR/renders/")
    out.add_argument("--render-short-side", type=int, default=None, help="render short side (default: source size)")
    out.add_argument("--label-map", default=None,
                     help="label map .pbtxt for action names (default: the model's own, for the zoo the AVA "
                          "80-class list)")
    run = parser.add_argument_group("running")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    run.add_argument("--batch-size", type=int, default=4, help="keyframes per detector call and SlowFast forward")
    run.add_argument("--no-optimize", action="store_true",
                     help="run the plain model instead of slowfast_det.models.fused.optimize_for_inference (BN folded, "
                          "fused oneDNN convs; same outputs to float rounding)")
    run.add_argument("--tracker-iou", type=float, default=0.3, help="IoU needed to continue a track")
    run.add_argument("--tracker-max-age", type=int, default=3, help="keyframes a lost person can be re-found in")
    run.add_argument("--allow-truncated", action="store_true",
                     help="keep the decodable part of truncated files instead of failing them")
    run.add_argument("--overwrite", action="store_true", help="redo videos whose outputs already exist")
    run.add_argument("--cache-dir", default=None, help="download cache for URL weights (default $SLOWFAST_DET_CACHE "
                     "or ~/.cache/slowfast_det/weights)")
    run.add_argument("--offline", action="store_true",
                     help="use cached downloads only, never the network (also SLOWFAST_DET_OFFLINE=1)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _zoo_names() -> tuple[list[str], list[str]]:
    """Action-model and detector names for --help (built-in ones if the site's zoo file cannot be read)."""
    from slowfast_det.model_zoo import BUILTIN_ENTRIES, DEFAULT_MODEL, ZooError, list_models

    try:
        models, detectors = list_models("action"), list_models("detector")
    except ZooError:
        models = [e.name for e in BUILTIN_ENTRIES if e.kind == "action"]
        detectors = [e.name for e in BUILTIN_ENTRIES if e.kind == "detector"]
    return [DEFAULT_MODEL, *(m for m in models if m != DEFAULT_MODEL)], detectors


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(args: argparse.Namespace) -> int:
    """Run detect-video; returns the exit status (0 all done or skipped, 1 some video failed, 2 bad setup)."""
    import torch

    from ava_tools.labelmap import AvaFormatError
    from slowfast_det.builders import person_detector_kwargs, video_detector_kwargs
    from slowfast_det.checkpoint import CheckpointError, load_weights
    from slowfast_det.checkpoint.cache import WeightsError
    from slowfast_det.config import ConfigError, load_config
    from slowfast_det.detection.person import DetectorError, PersonDetector
    from slowfast_det.model_zoo import resolve_detector, resolve_model
    from slowfast_det.models import build_model
    from slowfast_det.models.fused import optimize_for_inference
    from slowfast_det.pipeline.detector import OutputOptions, VideoActionDetector, run_videos

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = not args.no_progress
    try:
        # zoo name (default) or hand-given config/weights; URLs are downloaded into the verified cache
        fetch = {"cache_dir": args.cache_dir, "offline": args.offline or None, "progress": progress}
        chosen = resolve_model(args.model, config=args.config, weights=args.weights, label_map=args.label_map)
        cfg = load_config(chosen.config, args.opts)
        labels = chosen.labels()
        device = _device(args.device)
        model: torch.nn.Module = build_model(cfg)
        load_weights(model, chosen.fetch_weights(**fetch))
        model = model.to(device).eval()
        if not args.no_optimize:
            model = optimize_for_inference(model)
        det_defaults = person_detector_kwargs(cfg)
        det = resolve_detector(
            args.detector, config=args.detector_config, weights=args.detector_weights, opts=args.detector_opts,
            default_config=det_defaults["config"], default_weights=det_defaults["weights"], **fetch,
        )
        detector = PersonDetector(
            config=det.config, weights=det.weights,
            score_threshold=args.detector_threshold, person_class=args.person_class, opts=list(det.opts),
            device=device, batch_size=args.batch_size, cache_dir=args.cache_dir, progress=progress,
        )
        runner = VideoActionDetector(
            model=model, detector=detector, device=device, batch_size=args.batch_size,
            tracker_iou=args.tracker_iou, tracker_max_age=args.tracker_max_age, **video_detector_kwargs(cfg),
        )
    except (ConfigError, AvaFormatError, CheckpointError, DetectorError, WeightsError, ValueError) as exc:
        print(f"detect-video: error: {exc}", file=sys.stderr)
        return 2
    render = None
    if args.render is not None:
        render = Path(args.render) if args.render else args.output_dir / "renders"
    options = OutputOptions(
        output_dir=args.output_dir, class_names=labels.names(), format=args.format, json=args.json,
        render=render, render_short_side=args.render_short_side, action_threshold=args.action_threshold,
        topk=args.topk, overwrite=args.overwrite,
    )
    tic = time.perf_counter()
    try:
        summary = run_videos(runner, args.inputs, options, stride=args.stride, start=args.start, end=args.end,
                             allow_truncated=args.allow_truncated, progress=progress)
    except ValueError as exc:
        print(f"detect-video: error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - tic
    for line in summary.lines():
        print(line)
    if summary.done:
        shares = ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items())
        print(f"{summary.video_seconds:.1f} s of video in {wall:.1f} s ({summary.video_seconds / wall:.2f}x); {shares}")
    return 1 if summary.failed else 0


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
