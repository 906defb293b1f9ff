"""What a container says about a video: the one :class:`VideoInfo`, and the clock every module uses.

**Clock.** A frame's time is ``pts x time_base - zero`` seconds, where ``zero`` is the container's
``start_time`` (the stream's when the container gives none): the position a player shows, so the first frame
of a normal MP4 is at 0.0 s. :mod:`ava_tools.prepare` measures times the same way. All times are exact
:class:`fractions.Fraction` values.

**Rotation.** A display-matrix rotation (phone videos) is read from the first decoded frame; ``width`` and
``height`` are the *displayed* (upright) size. Only multiples of 90 degrees are supported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import av.video.stream

from ava_tools.video_io import VideoDecodeError, open_video

__all__ = ["VideoDecodeError", "VideoInfo", "decode_packets", "frame_time", "probe_video", "zero_time"]


@dataclass(frozen=True)
class VideoInfo:
    """A video's first video stream, as its container describes it (plus the first frame's size and rotation).

    Attributes:
        path: the file.
        width, height: displayed frame size in pixels (after rotation).
        rotation: counter-clockwise display rotation in degrees (0, 90, 180, 270).
        time_base: seconds per pts unit of the video stream.
        start_time: seconds of pts time shown as 0 (see the module docstring), subtracted from every pts.
        frame_rate: nominal frames per second (FFmpeg's guessed rate, as ``ava_tools.prepare`` uses).
        average_fps: the container's average frame rate (None if unknown); informative only.
        duration_s: the video stream's duration in seconds, None if unknown.
        num_frames: announced frame count, 0 if unknown.
        single_stream: the file holds only the video stream (changes FFmpeg's frame-rate conversion).
    """

    path: Path
    width: int
    height: int
    rotation: int
    time_base: Fraction
    start_time: Fraction
    frame_rate: Fraction
    average_fps: float | None
    duration_s: float | None
    num_frames: int
    single_stream: bool

    def pts_to_time(self, pts: int) -> Fraction:
        """Exact time in seconds (on the clock above) of a frame with this pts."""
        return Fraction(pts) * self.time_base - self.start_time

    def time_to_pts(self, seconds: float | Fraction) -> int:
        """The pts (stream time base) of a time, rounded down."""
        return int((Fraction(seconds) + self.start_time) // self.time_base)


def zero_time(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction:
    """Seconds of pts time shown as 0: the container's start, else the stream's, else 0."""
    if container.start_time is not None:
        return Fraction(container.start_time, av.time_base)
    if stream.start_time is not None and stream.time_base is not None:
        return stream.start_time * Fraction(stream.time_base)
    return Fraction(0)


def frame_time(frame: av.VideoFrame, stream: av.video.stream.VideoStream, zero: Fraction,
               previous: Fraction | None) -> Fraction:
    """Seconds on the video clock; a frame without any timestamp comes one average period after the previous."""
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None or stream.time_base is None:
        rate = stream.average_rate or stream.guessed_rate or 30
        return Fraction(0) if previous is None else previous + 1 / Fraction(rate)
    return pts * Fraction(stream.time_base) - zero


def decode_packets(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: Path,
    counter: list[int],
) -> Iterator[av.VideoFrame]:
    """Decode ``stream`` packet by packet; packets the decoder rejects are skipped and counted in counter[0]."""
    try:
        packets = container.demux(stream)
        for packet in packets:
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                counter[0] += 1
                continue
            yield from frames  # type: ignore[misc]
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"{path}: reading the file failed ({exc})") from exc


def rotation_of(value: Any, path: Path) -> int:
    """Display rotation in degrees (0, 90, 180, 270) from a frame's ``rotation`` value."""
    degrees = int(round(float(value or 0))) % 360
    if degrees % 90:
        raise VideoDecodeError(f"{path}: display rotation {degrees} degrees is not a multiple of 90")
    return degrees


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` and read its :class:`VideoInfo`; decodes the first frame for size and rotation.

    Raises:
        VideoDecodeError: missing file, not a media file, no video stream, no frame rate or time base, or no
            decodable frame.
    """
    path = Path(path)
    container, stream = open_video(path)
    with container:
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        if not rate or stream.time_base is None:
            raise VideoDecodeError(f"{path}: video stream without frame rate or time base")
        frame = next(decode_packets(container, stream, path, counter=[0]), None)
        if frame is None:
            raise VideoDecodeError(f"{path}: no decodable video frame")
        rotation = rotation_of(getattr(frame, "rotation", 0), path)
        w, h = frame.width, frame.height
        if rotation in (90, 270):
            w, h = h, w
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        return VideoInfo(
            path=path,
            width=w,
            height=h,
            rotation=rotation,
            time_base=Fraction(stream.time_base),
            start_time=zero_time(container, stream),
            frame_rate=Fraction(rate),
            average_fps=float(stream.average_rate) if stream.average_rate else None,
            duration_s=duration,
            num_frames=int(stream.frames or 0),
            single_stream=len(container.streams) == 1,
        )
