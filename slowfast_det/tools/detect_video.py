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
``OUT/<name>.ava.csv`` in the 8-column AVA detection format instead, and ``OUT/<name>.meta.json`` records the
settings that made them. A rerun skips a video only when its outputs were made with the same settings (model
config, weights sha256, detector, keyframe times, thresholds, format, label map, tool version); outputs made
with other settings are kept and reported with the settings that differ (``--overwrite`` redoes them). A video
that fails (unreadable, non-finite scores, ...) is reported at the end and makes the exit status 1; a video that
another run into the same folder is processing is left to it.

Decoding, person detection, clip preprocessing, SlowFast and tracking run as overlapped stages (threads with
bounded queues; ``--pipeline sequential`` runs them one after the other, with the same outputs); the summary
gives keyframes/s and each stage's busy seconds.

Inputs, the output folder, the device and the label map are checked before any model loads: problems with them
are reported at once (exit status 2 when nothing can be done).

**Live streams** (one per run): ``detect-video rtsp://cam/stream`` (also ``rtmp://``, ``http(s)://`` incl. HLS,
``tcp://``, ``udp://``, ``srt://``, ``/dev/video0``, ``-`` for stdin) runs with bounded latency and appends rows
as they come (:mod:`slowfast_det.pipeline.live`). **Many machines**: ``torchrun --nnodes N --nproc_per_node K -m
slowfast_det.tools.detect_video INPUTS... --output-dir OUT`` shards the videos over the ranks
(:mod:`slowfast_det.pipeline.shard`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ava_tools.cli import UserError, add_common_arguments, run_cli

if TYPE_CHECKING:
    from slowfast_det.engine.distributed import DistContext
    from slowfast_det.pipeline.detector import VideoActionDetector
    from slowfast_det.pipeline.live import LiveOptions

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
    """argparse type: seconds > 0."""
    from fractions import Fraction

    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a stride > 0 seconds, got {text}")
    return text


def _score(text: str) -> float:
    """argparse type: a score threshold in [0, 1] (scores are probabilities)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"expected a score threshold in [0, 1] (scores are probabilities), got {text}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detect-video", description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Keyframe clips are sampled by time at the model's 30 fps whatever the video's frame rate: see "
               "slowfast_det.video.stream for the exact rule.",
    )
    add_common_arguments(parser)
    parser.add_argument("inputs", nargs="+",
                        help="video files, folders of videos, or glob patterns; or one live stream: a URL (rtsp://, "
                             "rtmp://, http(s):// incl. HLS .m3u8, tcp://, udp://, srt://), a V4L2 device "
                             "(/dev/video0), or - for a pipe on stdin")
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
    det.add_argument("--detector-threshold", type=_score, default=None,
                     help="keep person boxes with score >= this, in [0, 1] (default: the config's "
                          "DEMO.DETECTRON2_THRESH, 0.8 as PySlowFast's AVA configs)")
    det.add_argument("--person-class", type=int, default=0, help="person class index of the detector (COCO: 0)")
    kf = parser.add_argument_group("keyframes")
    kf.add_argument("--stride", type=_stride, default="1.0",
                    help="seconds between keyframes, > 0 (default 1.0, as AVA)")
    kf.add_argument("--start", type=_seconds, default="0", help="first keyframe time in seconds (default 0)")
    kf.add_argument("--end", type=_seconds, default=None,
                    help="last keyframe time in seconds (default: end of the video)")
    kf.add_argument("--duration", type=_stride, default=None,
                    help="process keyframes in [start, start + DURATION) seconds (video or stream clock), then "
                         "end cleanly; instead of --end")
    out = parser.add_argument_group("outputs")
    out.add_argument("--format", choices=("csv", "ava"), default="csv",
                     help="csv: <name>.actions.csv with header and person ids; ava: <name>.ava.csv, AVA detections")
    out.add_argument("--action-threshold", type=_score, default=0.5,
                     help="smallest action score written, in [0, 1] (default 0.5)")
    out.add_argument("--topk", type=_positive_int, default=None, help="at most K >= 1 actions per person")
    out.add_argument("--json", action="store_true", help="also write <name>.actions.json")
    out.add_argument("--render", nargs="?", const="", default=None, metavar="OUT.mp4",
                     help="draw boxes, ids and top actions: OUT.mp4 (one video) or a folder; no value: "
                          "OUTPUT_DIR/renders/; a contact sheet OUT.contact.png of keyframes is written beside it")
    out.add_argument("--render-short-side", type=int, default=None,
                     help="render short side in pixels (default: the source size, sources smaller than 480 "
                          "upscaled to 480)")
    out.add_argument("--report", action="store_true",
                     help="also write OUT/<name>.report.html: a self-contained page with a per-person action "
                          "timeline and the video (the render if any); needs --format csv")
    out.add_argument("--label-map", default=None,
                     help="label map .pbtxt for action names; its largest id must equal MODEL.NUM_CLASSES "
                          "(default: the model's own; for the zoo and hand-given configs the AVA 80-class list)")
    run = parser.add_argument_group("running")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    run.add_argument("--batch-size", type=_positive_int, default=4,
                     help="keyframes per detector call and SlowFast forward")
    run.add_argument("--pipeline", choices=("overlapped", "sequential"), default="overlapped",
                     help="overlapped (default): decoding, person detection, clip preprocessing, SlowFast and "
                          "tracking run as threads joined by bounded queues; sequential: one after the other (for "
                          "debugging). Same outputs; the summary gives each stage's busy seconds")
    run.add_argument("--no-optimize", action="store_true",
                     help="run the plain model instead of slowfast_det.models.fused.optimize_for_inference (BN folded, "
                          "fused oneDNN convs; same outputs to float rounding)")
    run.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                     help="int8 (CPU): int8 backbone convs after 8 fp32 calibration batches, 1.8-2.5x faster than "
                          "fp32; scores move by up to ~0.1 (README: int8 inference)")
    run.add_argument("--tracker-iou", type=float, default=0.3,
                     help="IoU with a track's predicted box that continues it even beyond the motion gate")
    run.add_argument("--tracker-max-age", type=int, default=3, help="keyframes a lost person can be re-found in")
    run.add_argument("--allow-truncated", action="store_true",
                     help="keep the decodable part of truncated files instead of failing them")
    run.add_argument("--allow-nonfinite", action="store_true",
                     help="write the outputs of videos with NaN/inf action or detector scores (with a warning) "
                          "instead of failing them")
    run.add_argument("--overwrite", action="store_true",
                     help="redo videos whose outputs already exist, whatever settings made them")
    run.add_argument("--cache-dir", default=None,
                     help="download cache for URL weights, also where weights hashes are remembered (default "
                          "$SLOWFAST_DET_CACHE or ~/.cache/slowfast_det/weights)")
    run.add_argument("--offline", action="store_true",
                     help="use cached downloads only, never the network (also SLOWFAST_DET_OFFLINE=1)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    live = parser.add_argument_group(
        "live streams", "latency-bounded runs on a stream (see slowfast_det.pipeline.live for the policies); "
        "outputs OUT/<name>.actions.csv (appended), .actions.jsonl with --json, .live.json (stats)")
    live.add_argument("--name", default=None, help="output name of the stream (default: from the URL; stdin: stdin)")
    live.add_argument("--flush-every", type=_positive_int, default=10,
                      help="append the rows to the outputs every N processed keyframes (a crash loses at most N)")
    live.add_argument("--skip", choices=("auto", "newest", "none"), default="auto",
                      help="when inference is slower than real time: newest = skip the oldest waiting keyframes "
                           "(bounded latency), none = wait and skip nothing; auto = newest for URLs and devices, "
                           "none for stdin")
    live.add_argument("--max-queue", type=_positive_int, default=None,
                      help="keyframes waiting for inference at most (default: --batch-size)")
    live.add_argument("--max-latency", type=_stride, default="10",
                      help="skip keyframes that waited longer than this many seconds (default 10)")
    live.add_argument("--reconnect", type=int, default=5, metavar="N",
                      help="reconnection attempts after a drop, with exponential backoff 0.5 s, 1 s, 2 s... up to "
                           "10 s (default 5; 0: end at the first drop)")
    live.add_argument("--stream-timeout", type=_stride, default="10",
                      help="seconds to wait when opening the stream or for its data before calling it dropped")
    live.add_argument("--stream-option", action="append", default=[], metavar="KEY=VALUE",
                      help="FFmpeg protocol/demuxer option, repeatable (e.g. rtsp_transport=udp)")
    live.add_argument("--track-gap", type=_seconds, default=None,
                      help="tracks end after a stream outage longer than this many seconds (default: "
                           "--tracker-max-age x --stride)")
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
    """The torch device to use for ``--device name``; a device that is not there is a :class:`UserError`."""
    import torch

    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(cuda_count)])
    if name == "auto":
        return "cuda" if cuda_count else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(
            f"--device {name!r} is not a device name: use cpu, cuda, cuda:N or auto (available here: {available})"
        ) from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if cuda_count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise UserError(f"--device {name}: no CUDA GPU is available on this machine (torch {torch.__version__}, "
                            f"{build}); available: {available}. Use --device cpu (or auto)")
        if device.index is not None and device.index >= cuda_count:
            raise UserError(f"--device {name}: this machine has {cuda_count} CUDA device(s); available: {available}")
        return name
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]  # torch lists every backend
        raise UserError(f"--device {name} is not usable here ({reason}); available: {available}") from None
    return name


def _plain(cfg: object) -> object:
    """A config node as plain JSON data (tuples -> lists)."""
    return json.loads(json.dumps(cfg))


def main(args: argparse.Namespace) -> int:
    """Run detect-video; returns the exit status (0 all done or skipped, 1 some video failed).

    Setup problems (inputs, output folder, device, config, label map, weights) raise :class:`UserError`
    (exit status 2 through :func:`ava_tools.cli.run_cli`), all but weights mismatches before any model loads.
    """
    from fractions import Fraction

    from ava_tools.atomic import check_output_folder
    from slowfast_det.pipeline.detector import expand_inputs

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.report and args.format != "csv":
        raise UserError("--report needs --format csv (the AVA format has no person ids)")
    progress = not args.no_progress
    # cheap checks first: a typo in a path must not cost a model load (or a whole run) to find
    if args.end is not None and Fraction(args.end) < Fraction(args.start):
        raise UserError(f"--end {args.end} is before --start {args.start}")
    if args.duration is not None:
        if args.end is not None:
            raise UserError("give --end or --duration, not both")
        args.end = str(_duration_end(Fraction(args.start), Fraction(args.duration), Fraction(args.stride)))
    stream = _stream_input(args)
    videos: list[Path] = []
    problems: list[tuple[str, str]] = []
    if stream is None:
        videos, problems = expand_inputs(args.inputs)
        if not videos:
            raise UserError("no usable video in the inputs: " + "; ".join(f"{spec}: {why}" for spec, why in problems))
        for spec, why in problems:
            print(f"detect-video: warning: {spec}: {why} (skipped; the other inputs go on)", file=sys.stderr)
    check_output_folder(args.output_dir, what="--output-dir")
    render = None
    if args.render is not None:
        render = Path(args.render) if args.render else args.output_dir / "renders"
        if render.suffix.lower() == ".mp4" and len(videos) > 1:
            raise UserError(f"--render {render}: with {len(videos)} videos, name a folder, not an .mp4 file")
        check_output_folder(render.parent if render.suffix.lower() == ".mp4" else render, what="--render folder")
    live_options = None
    if stream is not None:
        live_options = _live_options(args, stream, render)  # checks existing outputs before any model loads
    dist = _distributed(args)
    device = str(dist.device) if dist is not None else _device(args.device)
    if args.precision == "int8" and (args.no_optimize or not device.startswith("cpu")):
        raise UserError(f"--precision int8 runs the optimised model on CPU (got --device {device}"
                        f"{' and --no-optimize' if args.no_optimize else ''})")

    from slowfast_det.builders import person_detector_kwargs
    from slowfast_det.checkpoint.cache import cached_sha256
    from slowfast_det.config import load_config
    from slowfast_det.detection.person import load_detectron2_config
    from slowfast_det.model_zoo import resolve_detector, resolve_model
    from slowfast_det.pipeline.detector import OutputOptions, run_videos

    # a zoo name (default) or a hand-given config/weights; URLs are downloaded into the verified cache
    fetch = {"cache_dir": args.cache_dir, "offline": args.offline or None, "progress": progress}
    chosen = resolve_model(args.model, config=args.config, weights=args.weights, label_map=args.label_map)
    cfg = load_config(chosen.config, args.opts)
    labels = chosen.labels()
    num_classes = int(cfg.MODEL.NUM_CLASSES)
    if labels.num_classes != num_classes:
        what = args.label_map if args.label_map else f"the default label map (bundled {chosen.label_map})"
        raise UserError(
            f"the model has {num_classes} classes (MODEL.NUM_CLASSES of {chosen.config}) but {what} has "
            f"{labels.num_classes} (its largest id): action names would be wrong. Pass --label-map with the "
            f"label map of the model's {num_classes} classes"
        )
    det_defaults = person_detector_kwargs(cfg)
    det_threshold = det_defaults["score_threshold"] if args.detector_threshold is None else args.detector_threshold
    weights = chosen.fetch_weights(**fetch)
    det = resolve_detector(
        args.detector, config=args.detector_config, weights=args.detector_weights, opts=args.detector_opts,
        default_config=det_defaults["config"], default_weights=det_defaults["weights"], **fetch,
    )
    det_config, det_weights, det_opts = det.config, det.weights, list(det.opts)
    det_cfg = load_detectron2_config(det_config, det_opts)
    settings = {
        "model": {"config": _plain(cfg), "weights_sha256": cached_sha256(weights, cache_dir=args.cache_dir),
                  **({"precision": "int8"} if args.precision == "int8" else {})},  # fp32 runs keep their records
        "detector": {
            "config": str(det_config),
            "config_sha256": hashlib.sha256(det_cfg.dump().encode()).hexdigest(),
            "weights_sha256": cached_sha256(det_weights, cache_dir=args.cache_dir) if det_weights else None,
            "threshold": det_threshold,
            "person_class": args.person_class,
        },
        "tracker": {"iou": args.tracker_iou, "max_age": args.tracker_max_age},
    }
    info = {"model": args.model, "config": str(chosen.config), "opts": list(args.opts), "weights": str(weights),
            "detector_weights": None if det_weights is None else str(det_weights),
            "detector_opts": det_opts, "label_map": labels.source}

    def build_runner() -> VideoActionDetector:
        """Both models, loaded only once some video needs them."""
        import torch

        from slowfast_det.builders import video_detector_kwargs
        from slowfast_det.checkpoint import load_weights
        from slowfast_det.detection.person import PersonDetector
        from slowfast_det.models import build_model
        from slowfast_det.models.fused import optimize_for_inference
        from slowfast_det.pipeline.detector import VideoActionDetector

        try:
            model: torch.nn.Module = build_model(cfg)
            load_weights(model, weights)
            model = model.to(device).eval()
            if not args.no_optimize:
                model = optimize_for_inference(model, precision=args.precision)
            detector = PersonDetector(
                config=det_config, weights=det_weights, score_threshold=det_threshold,
                person_class=args.person_class, opts=det_opts, device=device, batch_size=args.batch_size,
                cache_dir=args.cache_dir, progress=progress,
            )
            return VideoActionDetector(
                model=model, detector=detector, device=device, batch_size=args.batch_size,
                tracker_iou=args.tracker_iou, tracker_max_age=args.tracker_max_age,
                allow_nonfinite=args.allow_nonfinite, weights_name=str(weights),
                detector_weights_name=str(det_weights) if det_weights else None, pipeline=args.pipeline,
                **video_detector_kwargs(cfg),
            )
        except UserError:
            raise
        except ValueError as exc:  # a config value the model builders reject
            raise UserError(f"{chosen.config}: {exc}") from exc

    options = OutputOptions(
        output_dir=args.output_dir, class_names=labels.names(), format=args.format, json=args.json,
        render=render, render_short_side=args.render_short_side, action_threshold=args.action_threshold,
        topk=args.topk, overwrite=args.overwrite, settings=settings, info=info,
    )
    if stream is not None and live_options is not None:
        return _run_stream(args, stream, build_runner, replace(live_options, class_names=labels.names(),
                                                               settings=settings, info=info))
    if dist is not None:
        from slowfast_det.pipeline.shard import run_sharded

        return run_sharded(build_runner, videos, options, dist=dist, stride=args.stride, start=args.start,
                           end=args.end, allow_truncated=args.allow_truncated, progress=progress,
                           report=args.report, problems=problems)
    tic = time.perf_counter()
    summary = run_videos(build_runner, args.inputs, options, stride=args.stride, start=args.start, end=args.end,
                         allow_truncated=args.allow_truncated, progress=progress)
    wall = time.perf_counter() - tic
    for line in summary.lines():
        print(line)
    report_failed = False
    if args.report:
        from slowfast_det.report import write_detect_video_reports

        lines, report_failed = write_detect_video_reports(summary.done + summary.skipped, options, stride=args.stride)
        print(*lines, sep="\n")
    if summary.done:
        print(f"{summary.video_seconds:.1f} s of video in {wall:.1f} s with model loading "
              f"({summary.video_seconds / wall:.2f}x); pipeline {args.pipeline}")
        print(*summary.stage_lines(), sep="\n")
    return 1 if summary.failed or report_failed else 0


def _duration_end(start: Fraction, duration: Fraction, stride: Fraction) -> Fraction:
    """The last keyframe of [start, start + duration): ``start + (ceil(duration / stride) - 1) x stride``."""
    return start + (math.ceil(duration / stride) - 1) * stride


def _stream_input(args: argparse.Namespace) -> str | None:
    """The live stream among the inputs (None: files only); a stream must be the only input."""
    from slowfast_det.video.live import is_stream_input, stdin_is_terminal

    streams = [spec for spec in args.inputs if is_stream_input(spec)]
    if not streams:
        return None
    if len(args.inputs) > 1:
        raise UserError(f"a live stream ({streams[0]}) must be the only input: run one detect-video per stream "
                        f"(inputs: {', '.join(args.inputs)})")
    if args.report:
        raise UserError("--report is for video files; a stream's rows are in its CSV (and --render draws them)")
    if streams[0] == "-" and stdin_is_terminal():
        raise UserError("input - reads a video stream from stdin, but stdin is a terminal: pipe a video into it "
                        "(e.g. cat video.ts | detect-video -)")
    return streams[0]


def _live_options(args: argparse.Namespace, stream: str, render: Path | None) -> LiveOptions:
    """The live-run options of the command line (class names and settings are filled in later)."""
    from slowfast_det.pipeline.live import LiveOptions, live_output_paths
    from slowfast_det.video.live import ReconnectPolicy, stream_name

    name = args.name or stream_name(stream)
    skip = args.skip if args.skip != "auto" else ("none" if stream == "-" else "newest")
    track_gap = float(args.track_gap) if args.track_gap is not None else args.tracker_max_age * float(
        Fraction(args.stride))
    if args.reconnect < 0:
        raise UserError(f"--reconnect {args.reconnect}: expected a number of attempts >= 0")
    options = LiveOptions(
        output_dir=args.output_dir, name=name, class_names={}, format=args.format, json=args.json, render=render,
        render_short_side=args.render_short_side, action_threshold=args.action_threshold, topk=args.topk,
        flush_every=args.flush_every, skip=skip, max_queue=args.max_queue or args.batch_size,
        max_latency_s=float(Fraction(args.max_latency)), track_gap_s=track_gap,
        reconnect=ReconnectPolicy(attempts=args.reconnect), overwrite=args.overwrite,
    )
    existing = [str(p) for k, p in live_output_paths(options).items() if k != "stats" and p.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{', '.join(existing)} already exist(s): a live run does not skip or append to earlier "
                        "outputs; pass --overwrite to replace them, or --name/--output-dir for new ones")
    for option in args.stream_option:
        if "=" not in option:
            raise UserError(f"--stream-option {option!r}: expected KEY=VALUE (an FFmpeg option)")
    return options


def _run_stream(args: argparse.Namespace, stream: str, build_runner: Callable[[], VideoActionDetector],
                options: LiveOptions) -> int:
    """detect-video on one live stream; prints the summary, returns 0 (1 when the run failed)."""
    from slowfast_det.pipeline.live import run_live
    from slowfast_det.video.live import StreamSource

    timeout = float(Fraction(args.stream_timeout))
    source = StreamSource(stream, open_timeout_s=timeout, read_timeout_s=timeout,
                          options=dict(o.split("=", 1) for o in args.stream_option))
    summary = run_live(build_runner, source, options, stride=args.stride, start=args.start, end=args.end,
                       progress=not args.no_progress,
                       on_connect=lambda: print(f"detect-video: reading {stream}", file=sys.stderr, flush=True))
    for line in summary.lines():
        print(line)
    return 1 if summary.ended_by == "failed" else 0


def _distributed(args: argparse.Namespace) -> DistContext | None:
    """The torchrun process group (gloo on CPU; each rank on cuda:LOCAL_RANK with a GPU), None for one process."""
    import os

    from slowfast_det.engine.distributed import init_distributed

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    if _stream_input(args) is not None:
        raise UserError("a live stream runs in one process: start detect-video without torchrun")
    use_gpu = args.device != "cpu"
    # collectives wait for the slowest rank's shard: a generous timeout (the work itself has none)
    return init_distributed(use_gpu=use_gpu, timeout_s=7 * 24 * 3600.0)


def _shutdown() -> None:
    """Close a torchrun process group, if one was made (torch is not imported just for this)."""
    module = sys.modules.get("slowfast_det.engine.distributed")
    if module is not None:
        module.shutdown_distributed()


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(main, get_args_parser(), argv, cleanup=_shutdown))


if __name__ == "__main__":
    cli()
