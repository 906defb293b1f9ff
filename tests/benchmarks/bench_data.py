"""Benchmark: clips per second delivered by the AVA loader on CPU (not collected by pytest).

Builds (under a temp folder) two synthetic videos of ``--seconds`` s at 30 fps and ``--width x --height``
pixels, both as JPEG frames + a PySlowFast frame list and as H.264 MP4s, with 3 predicted boxes per keyframe.
Then, for the SlowFast 32x2 clip (32 frames, rate 2, alpha 4), it times the DataLoader with 0, 1 and 2
workers, reading JPEG frames and decoding the videos, for the test split (short side 256, full frame) and the
train split (jitter 256-320, crop 224, flip). Peak memory is the largest resident set of this process and of
any worker. If ``slowfast_det.models.build_model`` exists, it also times a CPU forward pass of SlowFast R50
(PySlowFast's ``SLOWFAST_32x2_R50_SHORT`` AVA config, random weights) on one test batch, to show whether the
loader would be the bottleneck.

    python tests/benchmarks/bench_data.py                 # defaults: 640x360, 12 s per video
    python tests/benchmarks/bench_data.py --clips 16 --no-model
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ava_tools.video_io import write_mp4
from slowfast_det.data import AvaDataset, VideoBatchSampler, ava_collate

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
REPO = Path(__file__).resolve().parents[2]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--seconds", type=int, default=12, help="length of each synthetic video")
    p.add_argument("--clips", type=int, default=24, help="clips timed per configuration")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-model", action="store_true", help="skip the model forward pass")
    return p


def _synthetic_frames(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Moving smooth texture (compresses like video, not like noise), BGR uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    base = cv2.resize(small, (width + 16 * n // 8 + 16, height), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(base[:, 2 * k : 2 * k + width]) for k in range(n)]


def _make_data(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = 30 * args.seconds
    videos = {f"bench{v}": _synthetic_frames(n, args.height, args.width, v) for v in range(2)}
    lines = ["original_vido_id video_id frame_id path labels\n"]
    boxes = []
    for i, (vid, frames) in enumerate(videos.items()):
        (root / "frames" / vid).mkdir(parents=True)
        for k, img in enumerate(frames):
            rel = f"{vid}/{vid}_{k + 1:06d}.jpg"
            cv2.imwrite(str(root / "frames" / rel), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            lines.append(f'{vid} {i} {k} {rel} ""\n')
        write_mp4(root / "videos" / f"{vid}.mp4", [f[:, :, ::-1] for f in frames], fps=30, crf=18)
        for sec in range(2, args.seconds - 1):
            for b in range(3):
                boxes.append(f"{vid},{sec},{0.1 + 0.2 * b:.3f},0.2,{0.25 + 0.2 * b:.3f},0.9,,0.95\n")
    (root / "list.csv").write_text("".join(lines))
    (root / "pred.csv").write_text("".join(boxes))
    return {"n_frames": n}


def _dataset(root: Path, split: str, seconds: int, video: bool) -> AvaDataset:
    return AvaDataset(
        split=split,
        frame_lists=[] if video else [root / "list.csv"],
        frame_dir=root / "frames",
        gt_box_lists=[],
        predicted_box_lists=[root / "pred.csv"],
        score_thresh=0.8,
        num_classes=80,
        num_frames=32,
        sampling_rate=2,
        slowfast_alpha=4,
        mean=MEAN,
        std=STD,
        keyframe_range=(2, seconds - 2),
        frame_origin_sec=0,
        video_dir=root / "videos" if video else None,
        video_cut_sec=(0.0, None),
    )


def _peak_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _time_loader(ds: AvaDataset, split: str, workers: int, clips: int, batch: int) -> float:
    n_batches = max(1, clips // batch)
    if split == "test":
        sampler = VideoBatchSampler(ds.keyframe_video_indices, batch)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=sampler, num_workers=workers, collate_fn=ava_collate
        )
    else:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=ava_collate, drop_last=True
        )
    it = iter(loader)
    first = next(it)  # worker start-up and the first (cold) clips are not timed
    done = 0
    start = time.perf_counter()
    for _ in range(n_batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        done += b["inputs"][0].shape[0]
    elapsed = time.perf_counter() - start
    del first, it, loader
    return done / elapsed


def _model_forward(ds: AvaDataset) -> tuple[float, tuple[int, ...]] | None:
    """Clips per second of a CPU forward pass on one test clip of ``ds`` (None without a model builder)."""
    try:
        from slowfast_det.config import load_config
        from slowfast_det.models import build_model
    except ImportError:
        return None
    cfg_path = (
        REPO.parent / "shared" / "pyslowfast-configs" / "configs" / "AVA" / "SLOWFAST_32x2_R50_SHORT.yaml"
    )
    if not cfg_path.is_file():
        print(f"(model: {cfg_path} not found, skipped)")
        return None
    cfg = load_config(cfg_path, ["NUM_GPUS", "0"])
    model = build_model(cfg).eval()
    batch = ava_collate([ds[0]])
    with torch.no_grad():
        model(batch["inputs"], batch["boxes"])  # warm-up
        start = time.perf_counter()
        reps = 2
        for _ in range(reps):
            model(batch["inputs"], batch["boxes"])
        per_clip = (time.perf_counter() - start) / reps
    return 1.0 / per_clip, tuple(batch["inputs"][1].shape)


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        _make_data(root, args)
        print(
            f"data: 2 videos x {args.seconds} s at 30 fps, {args.width}x{args.height}, JPEG q90 and H.264 "
            f"crf 18 ({time.perf_counter() - t0:.1f} s to make); clip 32 frames x rate 2, alpha 4; batch "
            f"{args.batch}; torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}"
        )
        print(f"{'split':6} {'source':6} {'workers':>7} {'clips/s':>8}")
        for split in ("test", "train"):
            for source in ("jpeg", "video"):
                ds = _dataset(root, split, args.seconds, source == "video")
                for workers in args.workers:
                    rate = _time_loader(ds, split, workers, args.clips, args.batch)
                    print(f"{split:6} {source:6} {workers:7d} {rate:8.2f}", flush=True)
        own, children = _peak_mb()
        print(
            f"peak RSS: main process {own:.0f} MB (of which importing torch + cv2 is most), "
            f"largest worker {children:.0f} MB"
        )
        if not args.no_model:
            res = _model_forward(_dataset(root, "test", args.seconds, False))
            if res is None:
                print("model: slowfast_det.models.build_model not available, skipped")
            else:
                rate, shape = res
                print(f"model: SlowFast R50 32x2 forward on CPU, fast input {shape}: {rate:.2f} clips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
