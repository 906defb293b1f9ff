"""JPEG frames as ffmpeg's ``-q:v 1`` writes them, without an ffmpeg binary (PyAV's own mjpeg encoder).

ffmpeg 5.1's second PySlowFast command (``-i cut.mp4 -r 30 -q:v 1 %06d.jpg``) converts each decoded
limited-range ``yuv420p`` frame to full-range ``yuvj420p`` (swscale) and encodes it with the ``mjpeg``
encoder at a fixed quantiser scale 1, one slice. :class:`FfmpegJpegWriter` does the same with PyAV:

* the range conversion as ffmpeg 5.1's swscale does it, by table (``Y' = round((Y - 16) * 255 / 219)``,
  ``C' = round((C - 128) * 255 / 224 + 128)``, halves rounded down, clipped to 0..255) -- the swscale inside
  PyAV's newer FFmpeg rounds chroma differently (half of the chroma samples one level lower), so it is not
  used for 4:2:0 sources;
* the ``mjpeg`` encoder with ``qscale = 1`` and one thread (ffmpeg's command line uses one slice).

Measured (``tests/benchmarks/bench_prepare_ffmpeg.py``): for 8-bit 4:2:0 sources the decoded pixels equal
ffmpeg 5.1.9's and 9.0.2's JPEGs exactly (the files differ only in the encoder version string in the JPEG
comment); Pillow at quality 95 (the earlier writer) was 40-42 dB PSNR away. Other pixel formats fall back
to PyAV's conversion to ``yuvj420p``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np

__all__ = ["FfmpegJpegWriter", "full_range_tables"]

_FF_QP2LAMBDA = 118  # libavcodec: lambda per quantiser step


def full_range_tables() -> tuple[np.ndarray, np.ndarray]:
    """(256,) uint8 look-up tables limited -> full range for luma and chroma, as ffmpeg 5.1's swscale."""
    v = np.arange(256, dtype=np.float64)

    def round_half_down(x: np.ndarray) -> np.ndarray:
        return np.clip(np.ceil(x - 0.5), 0, 255).astype(np.uint8)

    return round_half_down((v - 16) * 255 / 219), round_half_down((v - 128) * 255 / 224 + 128)


class FfmpegJpegWriter:
    """Encode decoded video frames as ffmpeg's ``-q:v N`` JPEGs.

    Args:
        qscale: ffmpeg's ``-q:v`` (1 = finest, as PySlowFast).
    """

    def __init__(self, *, qscale: int = 1) -> None:
        self.qscale = qscale
        self._ctx: Any = None  # av.VideoCodecContext of the mjpeg encoder
        self._count = 0
        self._luma, self._chroma = full_range_tables()

    def _context(self, width: int, height: int) -> Any:
        ctx = self._ctx
        if ctx is None or (ctx.width, ctx.height) != (width, height):
            ctx = av.CodecContext.create("mjpeg", "w")
            ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
            ctx.color_range = 2  # full range (JPEG)
            ctx.time_base = Fraction(1, 30)
            ctx.qscale = True  # fixed quantiser: ffmpeg's -q:v N sets global_quality = N * FF_QP2LAMBDA
            ctx.global_quality = self.qscale * _FF_QP2LAMBDA
            ctx.thread_count = 1  # one slice, as ffmpeg's command line
            self._ctx = ctx
        return ctx

    def _to_full_range(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``yuvj420p`` copy of ``frame``: by table from 8-bit limited-range 4:2:0, else via swscale."""
        limited = frame.color_range != 2
        if frame.format.name != "yuv420p" or not limited:
            return frame.reformat(format="yuvj420p", dst_color_range=2)
        out = av.VideoFrame(frame.width, frame.height, "yuvj420p")
        for i, table in enumerate((self._luma, self._chroma, self._chroma)):
            src, dst = frame.planes[i], out.planes[i]
            w, h = src.width, src.height
            plane = np.frombuffer(memoryview(src), np.uint8).reshape(h, src.line_size)[:, :w]
            np.frombuffer(memoryview(dst), np.uint8).reshape(h, dst.line_size)[:, :w] = table[plane]
        return out

    def encode(self, frame: av.VideoFrame) -> bytes:
        """The JPEG file bytes of one frame."""
        ctx = self._context(frame.width, frame.height)
        full = self._to_full_range(frame)
        full.pts = self._count
        full.time_base = ctx.time_base
        self._count += 1
        return b"".join(bytes(p) for p in ctx.encode(full))
