"""Benchmark detect-video on a live stream: flat memory, bounded latency, skipped keyframes (not a timed test).

Usage::

    python tests/benchmarks/bench_live.py                 # 30 minutes (the full run)
    python tests/benchmarks/bench_live.py --minutes 3     # a short look

A real ffmpeg (imageio-ffmpeg's binary) loops a synthetic 640x360 30 fps H.264 video (three walking rectangles
on a textured background) for ``--minutes`` at 1x speed (``-re``) as MPEG-TS over TCP on 127.0.0.1, and
:func:`slowfast_det.pipeline.live.run_live` processes it in this process with the project's CPU-sized SlowFast
(``synth/SLOWFAST_16x4_R50_TINY``) and a small R18-FPN detector set to find 3 people per keyframe (random
weights, seeded: speed does not depend on their values), keyframes every second, keep-the-newest skipping.

Reported: resident memory (``VmRSS``, sampled every 2 s) at its peak in the first window and in the last window
(5 minutes each, or a third of the run when shorter), latency p50/p95/max, keyframes processed and skipped.
Run it on 2 cores (``taskset -c 0,1``) with ``--threads`` torch threads (default 1: the reader thread decodes on
the other core).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DETECTOR_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build_runner(threads: int):  # noqa: ANN201 - a VideoActionDetector
    import torch
    from bench_detect_video import SMALL_DETECTOR_OPTS

    from slowfast_det import configs
    from slowfast_det.builders import video_detector_kwargs
    from slowfast_det.config import load_config
    from slowfast_det.detection.person import PersonDetector
    from slowfast_det.models import build_model
    from slowfast_det.models.fused import optimize_for_inference
    from slowfast_det.pipeline.detector import VideoActionDetector

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(configs.path("synth/SLOWFAST_16x4_R50_TINY"))
    model = optimize_for_inference(build_model(cfg).eval())
    opts = list(SMALL_DETECTOR_OPTS) + ["TEST.DETECTIONS_PER_IMAGE", "3"]
    detector = PersonDetector(config=DETECTOR_CONFIG, weights=None, opts=opts, score_threshold=0.5)
    predictor = detector.model.roi_heads.box_predictor
    deltas = detector.model.proposal_generator.rpn_head.anchor_deltas
    with torch.no_grad():  # proposals = anchors, every proposal a person: the 3 best are kept (as bench_detect_video)
        for layer in (deltas, predictor.bbox_pred, predictor.cls_score):
            layer.weight.zero_()
            layer.bias.zero_()
        predictor.cls_score.bias[0] = 5.0
    return VideoActionDetector(model=model, detector=detector, batch_size=1, **video_detector_kwargs(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="stream length (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-queue", type=int, default=2)
    parser.add_argument("--max-latency", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import imageio_ffmpeg
    from bench_detect_video import make_video

    from slowfast_det.pipeline.live import LiveOptions, run_live
    from slowfast_det.video.live import ReconnectPolicy, StreamSource

    work = Path(tempfile.mkdtemp(prefix="bench_live_"))
    video = make_video(work / "walk.mp4", 60, 640, 360)
    runner = build_runner(args.threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seconds = args.minutes * 60
    sender = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-i", str(video), "-t", f"{seconds:.0f}", "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen"],
        stdin=subprocess.DEVNULL)
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    tic = time.monotonic()

    def sample() -> None:
        while not done.wait(2.0):
            samples.append((time.monotonic() - tic, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(0.5)
    options = LiveOptions(output_dir=work / "out", name="bench", class_names={}, action_threshold=0.0, topk=5,
                          max_queue=args.max_queue, max_latency_s=args.max_latency,
                          reconnect=ReconnectPolicy(attempts=0), overwrite=True)
    try:
        summary = run_live(runner, StreamSource(f"tcp://127.0.0.1:{port}"), options, progress=False)
    finally:
        done.set()
        sender.kill()
        sender.wait()
    window = min(300.0, seconds / 3)
    first = [m for t, m in samples if t <= window]
    last = [m for t, m in samples if t >= samples[-1][0] - window]
    result = {
        "minutes": args.minutes, "threads": args.threads, "window_s": window,
        "rss_first_window_peak_mb": round(max(first), 1), "rss_last_window_peak_mb": round(max(last), 1),
        "rss_growth_pct": round(100 * (max(last) - max(first)) / max(first), 2),
        "latency": summary.latency, "keyframes_done": summary.keyframes_done,
        "keyframes_skipped": summary.keyframes_skipped, "keyframes_late": summary.keyframes_late,
        "ended_by": summary.ended_by, "frames_decoded": summary.frames_decoded, "timings": summary.timings,
        "cpus": os.sched_getaffinity(0).__len__(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
