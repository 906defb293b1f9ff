"""Small PyAV helpers shared by :mod:`ava_tools.prepare` and :mod:`ava_tools.synth`.

Only PyAV, numpy and the standard library are used (no torch, no ffmpeg binary).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video.reformatter
import av.video.stream
import numpy as np

from ava_tools.atomic import atomic_output
from ava_tools.cli import UserError

__all__ = [
    "VideoDecodeError",
    "decode_rgb_frames",
    "open_video",
    "write_mp4",
]


class VideoDecodeError(UserError, RuntimeError):
    """A video cannot be used: missing, unreadable, no video stream, corrupt, too short, or a frame not decodable.

    The message names the file. :mod:`slowfast_det.video.reader` raises this class too.
    """


def open_video(
    path: str | os.PathLike[str],
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and return ``(container, first video stream)``.

    Raises:
        VideoDecodeError: the file does not exist, is empty, is not a media file, or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(
            f"{path}: cannot open as a media file: not a video, or truncated/damaged before its index ({exc})"
        ) from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream (streams: {[s.type for s in container.streams]})")
    return container, container.streams.video[0]


def decode_rgb_frames(path: str | os.PathLike[str]) -> Iterator[tuple[Fraction, np.ndarray]]:
    """Yield ``(pts_seconds, rgb)`` for every frame of the first video stream, in decode order.

    ``rgb`` is an (H, W, 3) uint8 array; ``pts_seconds`` is exact (pts × stream time base).
    Meant for tests and small videos; :func:`ava_tools.prepare.extract_frames` streams instead.
    """
    container, stream = open_video(path)
    time_base = stream.time_base
    if time_base is None:
        container.close()
        raise VideoDecodeError(f"{path}: video stream has no time base")
    with container:
        for frame in container.decode(stream):
            if frame.pts is None:
                raise VideoDecodeError(f"{path}: frame without a timestamp")
            yield Fraction(frame.pts) * time_base, frame.to_ndarray(format="rgb24")


_BITEXACT = av.video.reformatter.Interpolation.BILINEAR | av.video.reformatter.Interpolation.BITEXACT

def write_mp4(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: int = 30,
    crf: int = 18,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
) -> int:
    """Encode RGB frames to an MP4 (H.264) file, byte-for-byte reproducibly, and return the frame count.

    Args:
        path: output file; written to a temporary file in the same folder, then renamed.
        frames: iterable of (H, W, 3) uint8 RGB arrays, all the same size (H and W even for yuv420p).
        fps: constant frame rate; frame i gets pts i in time base 1/fps (time i/fps seconds).
        crf: x264 constant rate factor (0 = lossless with ``pix_fmt`` yuv444p).
        preset: x264 preset.
        pix_fmt: encoder pixel format.
        codec: encoder name.

    The RGB -> ``pix_fmt`` conversion (swscale, bit-exact, one thread) and x264 (threads=1, sliced and
    lookahead threads off) are single-threaded, which makes the output bytes a function of the input only,
    for a given PyAV/FFmpeg/x264 build.
    """
    path = Path(path)
    count = 0
    with atomic_output(path, suffix=".tmp.mp4") as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        if not isinstance(stream, av.video.stream.VideoStream):
            raise ValueError(f"{codec} is not a video encoder")
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        for rgb in frames:
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(
                    f"{path}: frame {count} must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}"
                )
            if count == 0:
                stream.height, stream.width = int(rgb.shape[0]), int(rgb.shape[1])
            elif (rgb.shape[0], rgb.shape[1]) != (stream.height, stream.width):
                raise ValueError(
                    f"{path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, "
                    f"expected {stream.width}x{stream.height}"
                )
            # convert here, single-threaded and bit-exact: the encoder's own conversion uses threaded swscale,
            # which made the bytes differ between runs on a loaded machine
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, threads=1, interpolation=_BITEXACT
            )
            frame.pts = count
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if count == 0:
            raise ValueError(f"{path}: no frames to encode")
        for packet in stream.encode(None):
            container.mux(packet)
    return count
