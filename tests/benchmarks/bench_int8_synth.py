"""Benchmark: what ``optimize_for_inference(precision="int8")`` costs in AP on SynthAVA (not a pytest file).

Generates a small SynthAVA set (``ava_tools.synth.generate``), trains the tiny SlowFast of
``tests/test_train_test.py`` (width 4, 8 frames, 48-pixel crops; ground-truth boxes as test detections) with
``slowfast-train``, then scores the val set with the plain eval model, the fused fp32 path and the int8 path
(calibrated on its first ``--calibration`` test batches, then a second, fully int8 pass), each evaluated with
the official AVA semantics. Prints frame mAP per path and max |Δ score| (sigmoid, absolute) of int8 against
fused fp32. The tiny model is too thin for int8 to be faster (see ``bench_model.py --precision int8`` for
speed); this measures the score error on a trained model and real frames.

    python tests/benchmarks/bench_int8_synth.py --videos 8 --seconds 12 --epochs 6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the tiny config of the engine tests

from test_train_test import TINY  # noqa: E402

from ava_tools.synth import generate  # noqa: E402
from slowfast_det import builders  # noqa: E402
from slowfast_det.checkpoint import load_weights  # noqa: E402
from slowfast_det.config import load_config  # noqa: E402
from slowfast_det.engine.distributed import init_distributed  # noqa: E402
from slowfast_det.engine.launch import build_split_loader  # noqa: E402
from slowfast_det.engine.tester import evaluate_predictions, predict  # noqa: E402
from slowfast_det.engine.trainer import find_last_checkpoint  # noqa: E402
from slowfast_det.models import build_model  # noqa: E402
from slowfast_det.models.fused import optimize_for_inference  # noqa: E402
from slowfast_det.tools import train_net  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8, help="SynthAVA videos (a quarter go to val)")
    p.add_argument("--seconds", type=int, default=12, help="seconds per video")
    p.add_argument("--epochs", type=int, default=6, help="training epochs of the tiny model")
    p.add_argument("--calibration", type=int, default=8, help="test batches the int8 path calibrates on")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the data and the run here")
    return p


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or Path(tmp)
        synth = root / "synth"
        if not (synth / "annotations").is_dir():
            generate(synth, videos=args.videos, seconds=args.seconds, seed=0, width=96, height=72, progress=False)
        cfg_path = root / "tiny.yaml"
        cfg_path.write_text(TINY.format(root=synth))
        out = root / "run"
        opts = ["OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", str(args.epochs)]
        if find_last_checkpoint(out) is None:
            try:
                train_net.cli(["--cfg", str(cfg_path), "--no-progress", *opts])
            except SystemExit as exit_:
                if exit_.code:
                    raise
        cfg = load_config(cfg_path, opts)
        ctx = init_distributed(**builders.distributed_kwargs(cfg))
        model = build_model(cfg)
        load_weights(model, find_last_checkpoint(out))
        model.eval()
        loader = build_split_loader(cfg, "test", ctx)
        eval_kwargs = builders.evaluation_kwargs(cfg)
        int8 = optimize_for_inference(model, precision="int8", calibration_calls=args.calibration)
        predict(int8, loader, device=ctx.device, progress=False)  # calibrates on the first batches
        runs = {
            "plain eval": model,
            "fused fp32": optimize_for_inference(model),
            "int8": int8,
        }
        preds = {name: predict(m, loader, device=ctx.device, progress=False) for name, m in runs.items()}
        print(
            f"SynthAVA {args.videos} videos x {args.seconds} s (96x72), tiny SlowFast (width 4) after "
            f"{args.epochs} epochs; val: {len(preds['int8'])} boxes; int8 calibrated on {args.calibration} test "
            "batches\n| path | frame mAP |\n|---|---|"
        )
        for name, p in preds.items():
            print(f"| {name} | {evaluate_predictions(p, **eval_kwargs).map:.4f} |")
        diff = np.abs(preds["int8"].scores - preds["fused fp32"].scores).max()
        print(f"max |Δ score| int8 vs fused fp32: {diff:.1e} (sigmoid scores, absolute)")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
