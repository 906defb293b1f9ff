"""Frame-index-coded videos and a runner of PySlowFast's two ffmpeg commands, for comparing frame choices.

Used by ``tests/test_prepare_ffmpeg.py`` and ``tests/benchmarks/bench_prepare_ffmpeg.py`` (``from ffmpeg_cases
import ...``; pytest puts tests/ on ``sys.path``, the benchmark adds it). Every frame shows its own index as
black/white 16x16 blocks (2 rows), which survive H.264 and JPEG coding; so the JPEGs a real ffmpeg writes
say which source frame each one shows.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

BLOCK = 16


def index_frame(index: int, bits: int = 10) -> np.ndarray:
    """(2*BLOCK, ceil(bits/2)*BLOCK, 3) uint8 frame showing ``index`` in binary, bit 0 top-left."""
    cols = (bits + 1) // 2
    img = np.zeros((2 * BLOCK, cols * BLOCK, 3), np.uint8)
    for bit in range(bits):
        if (index >> bit) & 1:
            r, c = divmod(bit, cols)
            img[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    return img


def read_index(path: Path, bits: int = 10) -> int:
    """Decode the index drawn by :func:`index_frame` from an image file (centre of each block)."""
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    cols = (bits + 1) // 2
    q = BLOCK // 4
    value = 0
    for bit in range(bits):
        r, c = divmod(bit, cols)
        block = img[r * BLOCK + q : (r + 1) * BLOCK - q, c * BLOCK + q : (c + 1) * BLOCK - q]
        if block.std() >= 20:
            raise ValueError(f"{path}: block {bit} is not flat")
        value |= int(block.mean() > 128) << bit
    return value


def write_index_video(
    path: Path,
    times: Sequence[Fraction],
    *,
    rate: Fraction,
    time_base: Fraction,
    audio: bool,
    bits: int = 10,
) -> Path:
    """Encode frames ``0..len(times)-1`` (H.264, frame i at ``times[i]`` s) with an optional AAC track.

    Args:
        path: output file; the suffix picks the container (.mp4, .mkv).
        times: presentation time of each frame in seconds, increasing, multiples of ``time_base``.
        rate: nominal frame rate given to the encoder (frames/s).
        time_base: the stream and codec time base (seconds per tick).
        audio: add a mono 48 kHz AAC track (a quiet tone) as long as the video.
        bits: index bits drawn per frame (frames must number under ``2**bits``).
    """
    if len(times) >= 1 << bits:
        raise ValueError(f"{len(times)} frames need more than {bits} index bits")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        h, w = index_frame(0, bits).shape[:2]
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.codec_context.thread_count = 1
        video.options = {"crf": "12", "preset": "veryfast", "threads": "1"}
        a_stream = None
        if audio:
            a_stream = container.add_stream("aac", rate=48000, layout="mono")
        n_samples = 0
        end = float(times[-1]) + 1.0 / float(rate)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(index_frame(i, bits), format="rgb24")
            frame.pts = int(Fraction(t) / time_base)
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
            while a_stream is not None and n_samples < min(float(t) + 0.1, end) * 48000:
                tone = 0.1 * np.sin(2 * np.pi * 440 * (n_samples + np.arange(1024)) / 48000)
                aframe = av.AudioFrame.from_ndarray(tone[None].astype(np.float32), format="fltp", layout="mono")
                aframe.sample_rate = 48000
                aframe.pts = n_samples
                for packet in a_stream.encode(aframe):
                    container.mux(packet)
                n_samples += 1024
        while a_stream is not None and n_samples < end * 48000:
            aframe = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            aframe.sample_rate = 48000
            aframe.pts = n_samples
            for packet in a_stream.encode(aframe):
                container.mux(packet)
            n_samples += 1024
        for packet in video.encode():
            container.mux(packet)
        if a_stream is not None:
            for packet in a_stream.encode():
                container.mux(packet)
    return path


def cfr_times(n: int, rate: Fraction) -> list[Fraction]:
    """Times of ``n`` frames at a constant ``rate``."""
    return [Fraction(i) / rate for i in range(n)]


def jittered_times(n: int, rate: Fraction, time_base: Fraction, seed: int) -> list[Fraction]:
    """Variable-rate times: nominal ``i / rate`` moved by up to +-40% of a frame, on the ``time_base`` grid."""
    rng = np.random.default_rng(seed)
    out: list[Fraction] = []
    for i in range(n):
        t = Fraction(i) / rate + Fraction(float(rng.uniform(-0.4, 0.4))).limit_denominator(1000) / rate
        tick = max(round(t / time_base), 0)
        if out and tick * time_base <= out[-1]:
            tick = int(out[-1] / time_base) + 1
        out.append(tick * time_base)
    return out


def format_seconds(x: Fraction | float) -> str:
    """A time as ffmpeg's command line takes it (decimal seconds, exact for the values used here)."""
    s = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return s or "0"


@dataclass
class FfmpegRun:
    """Source indices shown by the JPEGs of PySlowFast's two commands, in output order."""

    indices: list[int]
    cut_path: Path


def run_pyslowfast_commands(
    ffmpeg: str, src: Path, work: Path, *, start: float, duration: float | None, fps: float = 30, bits: int = 10
) -> FfmpegRun:
    """``ffmpeg -ss START -t DURATION -i SRC cut.mp4`` then ``ffmpeg -i cut.mp4 -r FPS -q:v 1 %06d.jpg``.

    ``duration=None``: no ``-t`` (to the end of the source).
    """
    work.mkdir(parents=True, exist_ok=True)
    cut = work / "cut.mp4"
    frames = work / "frames"
    if frames.exists():
        shutil.rmtree(frames)
    frames.mkdir()
    quiet = ["-nostdin", "-y", "-loglevel", "error"]
    subprocess.run(
        [ffmpeg, *quiet, "-ss", format_seconds(start)]
        + ([] if duration is None else ["-t", format_seconds(duration)])
        + ["-i", str(src), str(cut)],
        check=True,
    )
    subprocess.run(
        [ffmpeg, *quiet, "-i", str(cut), "-r", format_seconds(fps), "-q:v", "1", str(frames / "%06d.jpg")],
        check=True,
    )
    files = sorted(frames.glob("*.jpg"))
    return FfmpegRun([read_index(f, bits) for f in files], cut)


def builtin_choice(src: Path, start: float, duration: float | None) -> list[int]:
    """Source indices of the built-in rule, from the file's own timing (as ``extract_frames`` uses it)."""
    from ava_tools.prepare.framechoice import FfmpegFrameSelector, probe_timing

    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        timing = probe_timing(container, stream)
        selector = FfmpegFrameSelector(
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
            duration_ticks = (frame.duration or 0) if timing.packet_durations else 0
            out += selector.push(i, frame.pts, duration_ticks)
            if selector.ended:
                break  # the trim has passed its end: no later frame is kept
    return out + selector.flush()
