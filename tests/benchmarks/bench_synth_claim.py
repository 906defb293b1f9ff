"""The SlowFast paper's claim in miniature, on SynthAVA: a fast pathway helps motion-defined actions.

For each seed: generate a SynthAVA (the seed fixes the videos and the initialisations), then train and test
three CPU-sized models with the project's trainer and tester on ground-truth person boxes (so only the
action model differs):

* Slow-only 4x16 (``configs/synth/SLOW_4x16_R50_TINY.yaml``);
* SlowFast 4x16, alpha 4 (``SLOWFAST_16x4_R50_TINY.yaml``): the Slow-only model plus a thin fast pathway;
* wide Slow-only 4x16 (``SLOW_4x16_R50_WIDE.yaml``): about SlowFast's GFLOPs, spent on width.

The three models of one seed see the same data, so the comparison is **paired by seed**: for each seed the
gap ``mAP(SlowFast) - mAP(other)`` over the motion-defined classes (walk, run, move left/right, wave slow/fast)
is one observation, and the mean gap gets a 95% confidence interval from the t distribution with
``seeds - 1`` degrees of freedom (``mean ± t(0.975, n-1) · sd / sqrt(n)``, :func:`paired_gap`). Verdict per
comparison: **shown** (the interval lies above 0: SlowFast better), **refuted** (below 0: SlowFast worse)
or **inconclusive** (it contains 0). The appearance-defined classes (raise arms, crouch, hold object) are
reported the same way as a control: there the paper expects no gain from the fast pathway.

Prints GFLOPs (one clip, one box, test size), a per-seed table, a table of mAP mean ± std over seeds and
the gap table with the verdicts; ``--json`` writes everything. Each finished (seed, model) run is kept under
``--out`` with its parameters, so an interrupted run continues where it stopped.

Full run (5 seeds x 3 models, each trained on 18 videos x 17 keyframes for 12 epochs, about 3,700 clips; about
2 hours on 2 CPU cores, measured at about 0.1 s per Slow-only clip and 0.2 s per SlowFast clip, 1 thread)::

    python tests/benchmarks/bench_synth_claim.py --seeds 5 --videos 24 --seconds 20 --epochs 12 --debug-colors \\
        --out /tmp/bench_synth_claim --json /tmp/bench_synth_claim/claim.json

Seeds can be split over machines or sessions (``--first-seed``); a final run over all seeds with the same
``--out`` reuses the finished runs and prints the tables.

Smoke run (checks that the script works; its verdict means nothing)::

    python tests/benchmarks/bench_synth_claim.py --seeds 2 --videos 3 --seconds 8 --width 64 --height 48 \\
        --epochs 1 --threads 1 --out /tmp/bench_synth_claim_smoke
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from ava_tools.atomic import write_json_atomic
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
SLOWFAST = "SlowFast 4x16"
BASELINES = ("Slow-only 4x16", "Slow-only 4x16 wide")
KINDS = {kind: [c.name for c in SYNTH_CLASSES if c.kind == kind] for kind in ("motion", "appearance")}
MIN_SEEDS = 5  # fewer: a smoke run, the verdict is not reported as a result
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Gap:
    """Paired difference ``a - b`` over seeds: mean, 95% t-interval [lo, hi], seeds used, verdict."""

    mean: float
    lo: float
    hi: float
    sd: float
    n: int
    verdict: str


def paired_gap(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Gap:
    """The mean of ``a[i] - b[i]`` over seeds with its two-sided t confidence interval (NaN pairs dropped).

    Verdict: ``shown`` when the interval lies above 0, ``refuted`` when below, else ``inconclusive``
    (also with fewer than 2 seeds, where no interval exists).
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else math.nan
        return Gap(mean, -math.inf, math.inf, math.nan, n, "inconclusive")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    verdict = "shown" if lo > 0 else "refuted" if hi < 0 else "inconclusive"
    return Gap(mean, lo, hi, sd, n, verdict)


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
    data: Path,
    run_dir: Path,
    config: Path,
    *,
    epochs: int,
    seed: int,
    extra: list[str],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Train and test one model on GT boxes; the result is kept in ``run_dir/result.json`` and reused when
    the parameters are the same (checkpoints of a run with other parameters are removed first)."""
    result_path, params_path = run_dir / "result.json", run_dir / "params.json"
    if params_path.is_file() and json.loads(params_path.read_text()) != params:
        shutil.rmtree(run_dir)  # another experiment: auto-resume must not continue its checkpoints
    if result_path.is_file():
        return dict(json.loads(result_path.read_text()))
    write_json_atomic(params, params_path)
    opts = demo.action_overrides(data, run_dir, epochs=epochs, detection_thresh=0.5, seed=seed) + [
        "AVA.TEST_PREDICT_BOX_LISTS", "['val_gt_boxes.csv']",
    ] + extra  # fmt: skip
    tic = time.perf_counter()
    launch.train_from_config(load_config(config, opts), progress=False)
    train_s = time.perf_counter() - tic
    out = launch.test_from_config(load_config(config, opts), progress=False)
    assert out is not None
    table = out.result.per_class
    ap = {str(n): float(a) for n, a in zip(table["name"], table["ap"], strict=True)}
    res: dict[str, Any] = {"all": float(out.map)}
    for kind, names in KINDS.items():
        values = [ap[n] for n in names if not math.isnan(ap[n])]
        res[kind] = float(np.mean(values)) if values else float("nan")
    res["per_class"] = ap
    res["train_seconds"] = train_s
    write_json_atomic(res, result_path, allow_nan=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=MIN_SEEDS, help=f"number of seeds (>= {MIN_SEEDS} for a verdict)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--videos", type=int, default=24, help="SynthAVA videos per seed (a quarter are val)")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--debug-colors", action="store_true", help="flat-colour SynthAVA (learns in fewer steps)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--gpu", action="store_true", help="train and test on the GPU (NUM_GPUS 1)")
    p.add_argument("--workers", type=int, default=0, help="SynthAVA render processes (0: this one)")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_synth_claim"))
    p.add_argument("--json", type=Path, default=None, help="also write all results and gaps here")
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

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in MODELS}
    tic = time.perf_counter()
    for seed in seeds:
        data = args.out / f"synth_seed{seed}"
        generate(data, videos=args.videos, seconds=args.seconds, seed=seed, width=args.width,
                 height=args.height, debug_colors=args.debug_colors, workers=args.workers,
                 progress=False)  # fmt: skip
        ann = data / "annotations"
        write_groundtruth_boxes(ann / "ava_val_v2.2.csv", ann / "val_gt_boxes.csv")
        for name, config in configs.items():
            run_dir = args.out / f"seed{seed}" / MODELS[name].removesuffix(".yaml")
            params = {"videos": args.videos, "seconds": args.seconds, "width": args.width, "height": args.height,
                      "epochs": args.epochs, "debug_colors": args.debug_colors, "seed": seed,
                      "config": MODELS[name], "opts": list(args.opts)}
            extra = list(args.opts) + (["NUM_GPUS", "1"] if args.gpu else [])
            params["gpu"] = args.gpu
            res = run_one(data, run_dir, config, epochs=args.epochs, seed=seed, extra=extra, params=params)
            results[name].append(res)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {res[k]:.3f}" for k in ("all", *KINDS))
                  + f" (trained in {res['train_seconds']:.0f} s)", flush=True)

    def cell(values: list[float]) -> str:
        v = np.array(values, dtype=float)
        return f"{np.nanmean(v) * 100:.1f} ± {np.nanstd(v, ddof=1) * 100 if len(v) > 1 else math.nan:.1f}"

    print()
    print(f"SynthAVA {args.videos} videos x {args.seconds} s, {args.width}x{args.height}, "
          f"{args.epochs} epochs, debug colours {args.debug_colors}, "
          f"{len(seeds)} seeds, GT boxes; frame-level AVA mAP (%)")  # fmt: skip
    print()
    print("Per seed, motion classes (SlowFast - Slow-only, SlowFast - wide Slow-only):")
    print()
    print("| seed | " + " | ".join(MODELS) + " | gap vs Slow-only | gap vs wide |")
    print("|---" * (len(MODELS) + 3) + "|")
    for i, seed in enumerate(seeds):
        m = {name: results[name][i]["motion"] * 100 for name in MODELS}
        print(f"| {seed} | " + " | ".join(f"{m[n]:.1f}" for n in MODELS)
              + f" | {m[SLOWFAST] - m[BASELINES[0]]:+.1f} | {m[SLOWFAST] - m[BASELINES[1]]:+.1f} |")
    print()
    print("Mean ± std over seeds:")
    print()
    print("| model | GFLOPs | mAP all | mAP motion classes | mAP appearance classes |")
    print("|---|---|---|---|---|")
    for name in MODELS:
        rs = results[name]
        print(f"| {name} | {flops[name]:.3f} | {cell([r['all'] for r in rs])} | "
              f"{cell([r['motion'] for r in rs])} | "
              f"{cell([r['appearance'] for r in rs])} |")  # fmt: skip
    print()
    print(f"Paired gaps (SlowFast - other, mAP points), mean and {CONFIDENCE:.0%} t-interval over seeds:")
    print()
    print("| classes | comparison | gap | 95% CI | seeds | verdict |")
    print("|---|---|---|---|---|---|")
    gaps: dict[str, dict[str, Gap]] = {}
    for kind in ("motion", "appearance", "all"):
        gaps[kind] = {}
        for base in BASELINES:
            g = paired_gap([r[kind] for r in results[SLOWFAST]], [r[kind] for r in results[base]])
            gaps[kind][base] = g
            print(f"| {kind} | SlowFast - {base} | {g.mean * 100:+.1f} | [{g.lo * 100:+.1f}, {g.hi * 100:+.1f}] "
                  f"| {g.n} | {g.verdict} |")
    print()
    for base in BASELINES:
        g = gaps["motion"][base]
        claim = f"SlowFast beats {base} on motion classes"
        if len(seeds) < MIN_SEEDS:
            print(f"{claim}: smoke run ({len(seeds)} < {MIN_SEEDS} seeds), no verdict")
        else:
            print(f"{claim}: {g.verdict.upper()} (gap {g.mean * 100:+.1f} points, "
                  f"95% CI [{g.lo * 100:+.1f}, {g.hi * 100:+.1f}], {g.n} seeds)")
    elapsed = time.perf_counter() - tic
    print(f"\n({elapsed:.0f} s)")
    if args.json is not None:
        write_json_atomic({
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "seeds": seeds, "gflops": flops, "results": results,
            "gaps": {k: {b: asdict(g) for b, g in v.items()} for k, v in gaps.items()},
            "seconds": elapsed,
        }, args.json, allow_nan=True)


if __name__ == "__main__":
    main()
