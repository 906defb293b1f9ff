"""Benchmark detect-video on CPU: overlapped vs sequential pipeline, stage busy times, peak RSS vs video length.

Usage: ``python tests/benchmarks/bench_detect_video.py [--quick] [--skip-r101] [--skip-memory] [--skip-policies]
[--repeat N]``

Runs (each in its own subprocess, so ``ru_maxrss`` is that run's peak); the small and R101 runs are made with
``--pipeline sequential`` and ``overlapped`` one after the other, and printed side by side: wall time, the sum
of the stages' busy seconds, the slowest stage's busy seconds, ``wall / sum`` (1.0 = no overlap), ``wall /
slowest`` (1.0 = the slowest stage alone: the best an overlap can do), keyframes/s, the speed-up and whether the
output CSVs are byte-identical. The small model is also run with the overlapped pipeline's other CPU thread
policies (``shared``: the model stages take turns with all threads; ``all``: each all threads) against the
default ``split`` (each half of the threads), and the sequential pipeline with one torch thread (to tell the
gain of overlapping from that of using fewer threads). Variants run in turns, ``--repeat`` times each (median
shown), so that a change of the machine's load hits them alike.

* **small**: ``configs/synth/SLOWFAST_16x4_R50_TINY.yaml`` (the project's CPU-sized SlowFast) with the
  detectron2 model-zoo Faster R-CNN R50-FPN (``INPUT.MIN_SIZE_TEST`` = the video's short side, 1000 RPN
  proposals) on a synthetic 640x360 30 fps video, keyframes every second;
* **R101**: ``configs/AVA/SLOWFAST_32x2_R101_50_50.yaml`` (DATA.TEST_CROP_SIZE 256) with the same detector;
* **memory**: the small model with a small R18-FPN detector on 1-minute and 10-minute 160x120 videos: peak
  RSS must not grow with the length (< 10 % apart).

No pretrained weights exist offline: models are randomly initialised (seeded); the detector's box classifier
is set to call its 3 best proposals persons, so every keyframe has 3 people to score, as a typical AVA
keyframe (RPN box deltas zeroed so that proposals are anchors rather than the whole frame). Speed does not
depend on the weights' values otherwise. ``decode`` is decoding + colour conversion + test
resize + clip bookkeeping, ``track`` the tracker; ``decode + track`` must stay under 15 % of the wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from slowfast_det import configs

REPO = Path(__file__).resolve().parents[2]
SMALL_CONFIG = configs.path("synth/SLOWFAST_16x4_R50_TINY")
R101_CONFIG = configs.path("AVA/SLOWFAST_32x2_R101_50_50")
DETECTOR_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
SMALL_DETECTOR_OPTS = [
    "INPUT.MIN_SIZE_TEST",
    "120",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.RESNETS.DEPTH",
    "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "MODEL.FPN.OUT_CHANNELS",
    "64",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "256",
]


def make_video(path: Path, seconds: int, width: int, height: int, fps: int = 30) -> Path:
    """H.264 video of three rectangles walking over a textured background (streamed, constant memory)."""
    import av

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(seconds * fps):
            frame = background.copy()
            for k in range(3):
                x = int((0.1 + 0.3 * k + 0.002 * i) % 0.9 * width)
                y = height // 4
                frame[y : y + height // 2, x : x + width // 10] = (200, 80 + 40 * k, 50)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    os.replace(tmp, path)
    return path


def run_child(spec: dict) -> dict:
    """Build the pipeline described by ``spec``, run it on ``spec['video']``, report timings and peak RSS."""
    import torch

    from slowfast_det.builders import video_detector_kwargs
    from slowfast_det.config import load_config
    from slowfast_det.detection.person import PersonDetector
    from slowfast_det.models import build_model
    from slowfast_det.models.fused import optimize_for_inference
    from slowfast_det.pipeline.detector import OutputOptions, VideoActionDetector, run_videos

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cfg = load_config(spec["config"], spec.get("overrides", []))
    model = optimize_for_inference(build_model(cfg).eval())
    opts = list(spec["detector_opts"]) + ["TEST.DETECTIONS_PER_IMAGE", "3"]
    detector = PersonDetector(config=DETECTOR_CONFIG, weights=None, opts=opts, score_threshold=0.5)
    predictor = detector.model.roi_heads.box_predictor
    deltas = detector.model.proposal_generator.rpn_head.anchor_deltas
    with torch.no_grad():
        # random deep features are huge: without this every proposal becomes the whole frame. Proposals =
        # anchors (RPN_POST_NMS_TOPK_TEST of them, as a trained RPN gives), boxes = proposals, and every
        # proposal is a person (p = 0.65): the 3 best are kept.
        for layer in (deltas, predictor.bbox_pred, predictor.cls_score):
            layer.weight.zero_()
            layer.bias.zero_()
        predictor.cls_score.bias[0] = 5.0
    runner = VideoActionDetector(
        model=model, detector=detector, batch_size=spec.get("batch_size", 4), pipeline=spec.get("pipeline",
                                                                                                   "overlapped"),
        cpu_policy=spec.get("cpu_policy", "split"), **video_detector_kwargs(cfg)
    )
    with tempfile.TemporaryDirectory() as out:
        options = OutputOptions(output_dir=Path(out), class_names={}, action_threshold=0.0, topk=5)
        tic = time.perf_counter()
        summary = run_videos(runner, [spec["video"]], options, progress=False)
        wall = time.perf_counter() - tic
        table = next(Path(out).glob("*.csv")).read_bytes()
        rows = table.count(b"\n") - 1
    if summary.failed:
        raise RuntimeError(summary.failed)
    return {
        "wall_s": wall,
        "pipeline_wall_s": summary.wall_seconds,
        "video_s": summary.video_seconds,
        "keyframes": summary.keyframes,
        "timings": summary.timings,
        "rows": rows,
        "csv_sha256": hashlib.sha256(table).hexdigest(),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def _spawn(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(name: str, r: dict) -> None:
    t = r["timings"]
    wall = r["wall_s"]
    shares = ", ".join(f"{k} {100 * v / wall:.1f}%" for k, v in t.items() if k != "render")
    overhead = 100 * (t["decode"] + t["track"]) / wall
    print(
        f"{name}: {r['video_s']:.0f} s of video in {wall:.1f} s = {r['video_s'] / wall:.3f} video-s per s; "
        f"{shares}; decode+bookkeeping {overhead:.1f}% ({'OK' if overhead < 15 else 'OVER 15%'}); "
        f"peak RSS {r['maxrss_mb']:.0f} MB; {r['rows']} rows; torch threads {r['threads']}"
    )


def _stages(r: dict) -> tuple[float, float, str]:
    """(sum of the stages' busy seconds, the slowest stage's, its name); the render stage is not run here."""
    busy = {k: v for k, v in r["timings"].items() if k != "render"}
    slowest = max(busy, key=lambda k: busy[k])
    return sum(busy.values()), busy[slowest], slowest


def _compare(name: str, runs: dict[str, dict]) -> None:
    """Print the runs of one workload side by side (the first is the reference of the speed-up and outputs)."""
    print(f"{name}:")
    ref_name = next(iter(runs))
    ref = runs[ref_name]
    print(f"  {'run':<22} {'wall s':>7} {'sum s':>7} {'slowest s':>16} {'wall/sum':>8} {'wall/slowest':>12} "
          f"{'kf/s':>6} {'speed-up':>8}  outputs")
    for label, r in runs.items():
        wall = r["pipeline_wall_s"]
        total, slowest, which = _stages(r)
        same = "identical" if r["csv_sha256"] == ref["csv_sha256"] else "DIFFER"
        print(f"  {label:<22} {wall:7.2f} {total:7.2f} {slowest:7.2f} {which:>8} {wall / total:8.2f} "
              f"{wall / slowest:12.2f} {r['keyframes'] / wall:6.2f} {ref['pipeline_wall_s'] / wall:7.2f}x  "
              f"{same if label != ref_name else 'reference'}")
        print("  " + " " * 22 + " busy: " + ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items()
                                                     if k != "render"))


def _interleaved(variants: dict[str, dict], repeat: int) -> dict[str, dict]:
    """Each variant ``repeat`` times, in turns (A B C A B C ...: a change of the machine's load hits them
    alike); per variant the run of median wall time."""
    runs: dict[str, list[dict]] = {label: [] for label in variants}
    for _ in range(repeat):
        for label, spec in variants.items():
            runs[label].append(_spawn(spec))
    return {label: sorted(rs, key=lambda r: r["pipeline_wall_s"])[len(rs) // 2] for label, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="shorter videos (throughput 10 s, memory 1 vs 5 min)")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-r101", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-policies", action="store_true", help="no shared/all CPU policy runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant, in turns; the median is shown")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_detect_video")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs; all ratios below are from this one run")
    seconds = 10 if args.quick else 20
    video = make_video(args.workdir / f"walk_{seconds}s_640x360.mp4", seconds, 640, 360)
    small = {
        "config": str(SMALL_CONFIG),
        "video": str(video),
        "detector_opts": ["INPUT.MIN_SIZE_TEST", "360"],
    }
    if not args.skip_small:
        variants = {"sequential": dict(small, pipeline="sequential"),
                    "overlapped (split)": dict(small, pipeline="overlapped", cpu_policy="split")}
        if not args.skip_policies:
            variants["overlapped (shared)"] = dict(small, pipeline="overlapped", cpu_policy="shared")
            variants["overlapped (all)"] = dict(small, pipeline="overlapped", cpu_policy="all")
            variants["sequential, 1 thread"] = dict(small, pipeline="sequential", threads=1)
        name = "small (SLOWFAST_16x4_R50_TINY, 96 px; R50-FPN detector at 360 px)"
        runs = _interleaved(variants, args.repeat)
        _compare(name, runs)
        _report(f"{name}, overlapped", runs["overlapped (split)"])
    if not args.skip_r101:
        r101 = dict(small, config=str(R101_CONFIG), overrides=["DATA.TEST_CROP_SIZE", "256"])
        r101["video"] = str(make_video(args.workdir / "walk_8s_640x360.mp4", 8, 640, 360))
        _compare("SLOWFAST_32x2_R101_50_50 at 256 px (R50-FPN detector at 360 px)",
                 _interleaved({"sequential": dict(r101, pipeline="sequential"),
                               "overlapped (split)": dict(r101, pipeline="overlapped"),
                               "sequential, 1 thread": dict(r101, pipeline="sequential", threads=1)}, args.repeat))
    if not args.skip_memory:
        minutes = (1, 5) if args.quick else (1, 10)
        peaks = []
        for m in minutes:
            mem_video = make_video(args.workdir / f"walk_{m}min_160x120.mp4", 60 * m, 160, 120)
            r = _spawn({"config": str(SMALL_CONFIG), "video": str(mem_video), "detector_opts": SMALL_DETECTOR_OPTS})
            _report(f"memory, {m}-minute 160x120 video (small model, R18-FPN detector at 120 px)", r)
            peaks.append(r["maxrss_mb"])
        diff = abs(peaks[1] - peaks[0]) / peaks[0] * 100
        print(
            f"peak RSS {minutes[0]} min {peaks[0]:.0f} MB vs {minutes[1]} min {peaks[1]:.0f} MB: {diff:.1f}% apart "
            f"({'OK' if diff < 10 else 'OVER 10%'})"
        )


if __name__ == "__main__":
    main()
