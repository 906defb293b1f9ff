"""The SlowFast paper's claim in miniature, on SynthAVA: a fast pathway helps motion-defined actions.

For each seed: generate a SynthAVA, then train and test three CPU-sized models with the project's trainer
and tester on ground-truth person boxes (so only the action model differs):

* Slow-only 4x16 (``configs/synth/SLOW_4x16_R50_TINY.yaml``);
* SlowFast 4x16, alpha 4 (``SLOWFAST_16x4_R50_TINY.yaml``): the Slow-only model plus a thin fast pathway;
* wide Slow-only 4x16 (``SLOW_4x16_R50_WIDE.yaml``): about SlowFast's GFLOPs, spent on width.

Prints the GFLOPs counted (one clip, one box, test size) and a markdown table of frame-level AVA mAP over
all classes, over the motion-defined classes (walk, run, move left/right, wave slow/fast) and over the
appearance-defined ones (raise arms, crouch, hold object): mean and standard deviation over the seeds.

    python tests/benchmarks/bench_synth_claim.py --seeds 3 --out /tmp/bench_synth_claim
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ava_tools.synth import SYNTH_CLASSES, generate
from slowfast_det.config import load_config
from slowfast_det.detection.training import write_groundtruth_boxes
from slowfast_det.engine import launch
from slowfast_det.models import build_model, count_gflops
from slowfast_det.tools import demo

MODELS = {
    "Slow-only 4x16": "SLOW_4x16_R50_TINY.yaml",
    "SlowFast 4x16": "SLOWFAST_16x4_R50_TINY.yaml",
    "Slow-only 4x16 wide": "SLOW_4x16_R50_WIDE.yaml",
}
KINDS = {kind: [c.name for c in SYNTH_CLASSES if c.kind == kind] for kind in ("motion", "appearance")}


def gflops(cfg: Any) -> float:
    """Multiply-add GFLOPs of one test clip (short side TEST_CROP_SIZE, square) with one box."""
    size, frames = cfg.DATA.TEST_CROP_SIZE, cfg.DATA.NUM_FRAMES
    with torch.device("meta"):
        model = build_model(cfg).eval()
        if cfg.MODEL.ARCH == "slowfast":
            clips = [
                torch.zeros(1, 3, frames // cfg.SLOWFAST.ALPHA, size, size),
                torch.zeros(1, 3, frames, size, size),
            ]
        else:
            clips = [torch.zeros(1, 3, frames, size, size)]
        boxes = torch.tensor([[0.0, 0.0, 0.0, size / 2, size]])
        return count_gflops(model, [clips, boxes])


def run_one(
    data: Path, run_dir: Path, config: Path, *, epochs: int, seed: int, extra: list[str]
) -> dict[str, float]:
    opts = demo.action_overrides(data, run_dir, epochs=epochs, detection_thresh=0.5, seed=seed) + [
        "AVA.TEST_PREDICT_BOX_LISTS", "['val_gt_boxes.csv']",
    ] + extra  # fmt: skip
    launch.train_from_config(load_config(config, opts), progress=False)
    out = launch.test_from_config(load_config(config, opts), progress=False)
    assert out is not None
    table = out.result.per_class
    ap = {str(n): float(a) for n, a in zip(table["name"], table["ap"], strict=True)}
    res = {"all": out.map}
    for kind, names in KINDS.items():
        values = [ap[n] for n in names if not math.isnan(ap[n])]
        res[kind] = float(np.mean(values)) if values else float("nan")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (datasets and initialisations)")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--debug-colors", action="store_true", help="flat-colour SynthAVA (learns in fewer steps)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_synth_claim"))
    p.add_argument("opts", nargs="*", help="extra KEY VALUE config overrides for every model")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    configs = {name: demo.CONFIG_DIR / f for name, f in MODELS.items()}
    flops = {name: gflops(load_config(c)) for name, c in configs.items()}
    for name, g in flops.items():
        print(
            f"{name:<22} {g:.3f} GFLOPs (one clip, one box, "
            f"{load_config(configs[name]).DATA.TEST_CROP_SIZE}px)"
        )

    results: dict[str, list[dict[str, float]]] = {name: [] for name in MODELS}
    tic = time.perf_counter()
    for seed in range(args.seeds):
        data = args.out / f"synth_seed{seed}"
        generate(data, videos=args.videos, seconds=args.seconds, seed=seed, width=args.width,
                 height=args.height, debug_colors=args.debug_colors, progress=False)  # fmt: skip
        ann = data / "annotations"
        write_groundtruth_boxes(ann / "ava_val_v2.2.csv", ann / "val_gt_boxes.csv")
        for name, config in configs.items():
            run_dir = args.out / f"seed{seed}" / MODELS[name].removesuffix(".yaml")
            res = run_one(data, run_dir, config, epochs=args.epochs, seed=seed, extra=list(args.opts))
            results[name].append(res)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)

    def cell(values: list[float]) -> str:
        v = np.array(values, dtype=float)
        return f"{np.nanmean(v) * 100:.1f} ± {np.nanstd(v) * 100:.1f}"

    print()
    print(f"SynthAVA {args.videos} videos x {args.seconds} s, {args.width}x{args.height}, "
          f"{args.epochs} epochs, debug colours {args.debug_colors}, "
          f"{args.seeds} seeds, GT boxes; frame-level AVA mAP (%) mean ± std over seeds")  # fmt: skip
    print()
    print("| model | GFLOPs | mAP all | mAP motion classes | mAP appearance classes |")
    print("|---|---|---|---|---|")
    for name in MODELS:
        rs = results[name]
        print(f"| {name} | {flops[name]:.3f} | {cell([r['all'] for r in rs])} | "
              f"{cell([r['motion'] for r in rs])} | "
              f"{cell([r['appearance'] for r in rs])} |")  # fmt: skip
    print(f"\n({time.perf_counter() - tic:.0f} s)")


if __name__ == "__main__":
    main()
