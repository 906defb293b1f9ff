"""Benchmark: training throughput of the demo's action models on SynthAVA (not collected by pytest).

Generates a SynthAVA like ``make demo``'s (``--videos``, ``--seconds``, flat colours) in a temp folder, builds
the training loader of each model of ``slowfast_det.tools.demo.MODELS`` exactly as the demo does (its config
overrides, ``DATA_LOADER.CACHE_CLIPS`` on or off) and times ``--steps`` SGD steps per setting, split into
data time (waiting for the loader: JPEG decode + augmentation + collate) and compute time (forward, backward,
SGD step). Prints clips/s for each. The first pass over the data decodes JPEGs even with the cache; a second
pass over the same items measures the cached path.

    python tests/benchmarks/bench_demo_training.py              # 2 torch threads, as the demo
    python tests/benchmarks/bench_demo_training.py --threads 1 --steps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ava_tools.synth import generate
from slowfast_det import builders
from slowfast_det.config import load_config
from slowfast_det.engine.distributed import init_distributed
from slowfast_det.engine.launch import build_split_loader
from slowfast_det.engine.loader import set_loader_epoch
from slowfast_det.engine.solver import build_optimizer
from slowfast_det.engine.trainer import detection_loss_sum
from slowfast_det.models import SlowFast
from slowfast_det.tools import demo


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = demo.DemoSettings()
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--seconds", type=int, default=d.seconds)
    p.add_argument("--steps", type=int, default=20, help="SGD steps timed per setting")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--data", type=Path, default=None, help="an existing SynthAVA folder (else generated)")
    return p


def _time_steps(cfg: object, steps: int) -> dict[str, float]:
    ctx = init_distributed(use_gpu=False)
    loader = build_split_loader(cfg, "train", ctx)
    model = SlowFast(**builders.model_kwargs(cfg))  # type: ignore[arg-type]
    optimizer = build_optimizer(model, **builders.optimizer_kwargs(cfg))  # type: ignore[arg-type]
    model.train()
    out: dict[str, float] = {}
    for epoch, name in ((0, "first pass"), (0, "second pass")):
        set_loader_epoch(loader, epoch)
        data_s = compute_s = 0.0
        clips = 0
        it = iter(loader)
        for _ in range(min(steps, len(loader))):
            tic = time.perf_counter()
            batch = next(it)
            toc = time.perf_counter()
            logits = model(batch["inputs"], batch["boxes"])
            loss = detection_loss_sum(logits, batch["labels"]) / batch["labels"].numel()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            compute_s += time.perf_counter() - toc
            data_s += toc - tic
            clips += int(batch["inputs"][0].shape[0])
        out[f"{name} data ms/clip"] = 1000 * data_s / clips
        out[f"{name} compute ms/clip"] = 1000 * compute_s / clips
        out[f"{name} clips/s"] = clips / (data_s + compute_s)
    return out


def main() -> None:
    args = get_args_parser().parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "synth"
            s = demo.DemoSettings()
            tic = time.perf_counter()
            generate(data, videos=args.videos, seconds=args.seconds, seed=0, width=s.width, height=s.height,
                     debug_colors=True, workers=args.threads, progress=False)  # fmt: skip
            print(f"SynthAVA {args.videos} videos x {args.seconds} s: {time.perf_counter() - tic:.1f} s")
        for name, config_name in demo.MODELS.items():
            for cache in (False, True):
                opts = demo.action_overrides(data, Path(tmp) / name, epochs=1, detection_thresh=0.5, seed=0)
                opts[opts.index("DATA_LOADER.CACHE_CLIPS") + 1] = str(cache)
                cfg = load_config(demo.CONFIG_DIR / config_name, opts)
                res = _time_steps(cfg, args.steps)
                print(f"{name:<9} cache={cache!s:<5} batch {cfg.TRAIN.BATCH_SIZE} threads {args.threads}: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in res.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
