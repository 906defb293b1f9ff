"""Frame sources: where :class:`~slowfast_det.video.stream.ClipStream` gets its timed frames.

A :class:`FrameSource` yields :class:`SourceFrame` objects in increasing time order, on the clock of
:mod:`slowfast_det.video.probe`. A frame is converted to pixels only when asked (:meth:`SourceFrame.bgr`), so a
consumer that needs few frames pays for few conversions. :class:`FileSource` (a local video file, seekable) is the
first implementation; a live stream or a camera is another class with the same two methods.

**Damaged input.** Packets the decoder rejects are skipped and counted (as ffmpeg's command line does). Frames
whose timestamp does not increase are dropped: the earlier frame stays on screen.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ava_tools.video_io import open_video
from slowfast_det.video.probe import VideoInfo, decode_packets, frame_time, probe_video, zero_time

__all__ = ["FileSource", "FrameSource", "PyAVFrame", "SeekOvershoot", "SourceFrame", "iter_frames"]

# Missing frames tolerated before a stream counts as truncated: max(_TRUNC_MIN_FRAMES, _TRUNC_FRACTION x count)
# (edit lists and B-frame priming can hide a few frames of the announced count).
_TRUNC_MIN_FRAMES = 2
_TRUNC_FRACTION = 0.01


class SeekOvershoot(Exception):
    """Seeking landed after the wanted time (imprecise index): the consumer should read from the start."""


class SourceFrame(ABC):
    """One frame and its time; pixels are made on demand (a consumer converts only the frames it needs).

    Attributes:
        time: seconds on the video clock (exact).
    """

    __slots__ = ("time",)

    def __init__(self, time: Fraction) -> None:
        self.time = time

    @abstractmethod
    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:
        """(H, W, 3) uint8 array in ``format`` (``bgr24`` or ``rgb24``), upright."""

    def bgr(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR array, upright."""
        return self.to_ndarray("bgr24")


class PyAVFrame(SourceFrame):
    """A decoded PyAV frame; the display rotation is applied on conversion."""

    __slots__ = ("_frame", "_rotation")

    def __init__(self, frame: av.VideoFrame, time: Fraction, rotation: int) -> None:
        super().__init__(time)
        self._frame = frame
        self._rotation = rotation

    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:
        array: np.ndarray = self._frame.to_ndarray(format=format)
        if self._rotation:
            array = np.ascontiguousarray(np.rot90(array, k=self._rotation // 90))
        return array


class FrameSource(ABC):
    """Timed frames of one video, in increasing time order.

    Attributes:
        name: what messages call the source (a path or a URL).
        info: what the source says about the video, once known (after :meth:`frames` started).
        packets_skipped: corrupt packets skipped by the last :meth:`frames` run.
        seekable: :meth:`frames` honours ``seek``.
    """

    name: str
    info: VideoInfo | None = None
    packets_skipped: int = 0
    seekable: bool = False

    @abstractmethod
    def frames(self, seek: Fraction | None = None, *, threads: int = 0) -> Generator[SourceFrame, None, None]:
        """Frames in increasing time order. With ``seek`` (seekable sources), start at the key frame before that
        time, raising :class:`SeekOvershoot` before yielding anything if the first frame comes after it.

        Raises:
            VideoDecodeError: the source cannot be read.
        """

    def truncation(self, last_time: Fraction, frames_decoded: int, *, seeked: bool) -> str | None:
        """Why the video looks cut short after its last decoded frame at ``last_time`` (None: it does not).

        Sources with no announced length (live streams) never look truncated.
        """
        return None


class FileSource(FrameSource):
    """A local video file (seekable), decoded with PyAV.

    Args:
        path: the video file.
    """

    seekable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.info = None
        self.packets_skipped = 0
        self._announced: tuple[int, Fraction | None, Fraction, Fraction] | None = None
        self._zero = Fraction(0)

    def frames(self, seek: Fraction | None = None, *, threads: int = 0) -> Generator[SourceFrame, None, None]:
        if self.info is None:
            self.info = probe_video(self.path)
        rotation = self.info.rotation
        container, stream = open_video(self.path)
        with container:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            zero = self._zero = zero_time(container, stream)
            self._remember_length(stream)
            if seek is not None and stream.time_base is not None:
                container.seek(int((seek + zero) / Fraction(stream.time_base)), stream=stream, backward=True)
            counter = [0]
            previous: Fraction | None = None
            try:
                for frame in decode_packets(container, stream, self.path, counter):
                    t = frame_time(frame, stream, zero, previous)
                    if previous is None and seek is not None and t > seek:
                        raise SeekOvershoot
                    if previous is not None and t <= previous:
                        continue  # a repeated or out-of-order timestamp: the earlier frame stays on screen
                    previous = t
                    yield PyAVFrame(frame, t, rotation)
            finally:
                self.packets_skipped = counter[0]

    def _remember_length(self, stream: av.video.stream.VideoStream) -> None:
        """Keep what the container announces (frames, duration, frame period, stream start) for truncation."""
        announced = int(stream.frames or 0)
        duration: Fraction | None = None
        if stream.duration and stream.time_base:
            duration = Fraction(stream.duration) * Fraction(stream.time_base)
        rate = stream.average_rate or stream.guessed_rate
        period = Fraction(0)
        if rate:
            period = 1 / Fraction(rate)
        elif duration is not None and announced:
            period = duration / announced
        stream_start = Fraction(stream.start_time or 0) * Fraction(stream.time_base or 0) - self._zero
        self._announced = (announced, duration, period, stream_start)

    def truncation(self, last_time: Fraction, frames_decoded: int, *, seeked: bool) -> str | None:
        """The stream is truncated when its last decoded frame ends more than max(2 frame periods, 1 %) before
        the announced duration (or, without a duration, when more than max(2, 1 %) of the announced frames are
        missing). Skipped corrupt packets in the middle of a file do not count: later frames exist."""
        if self._announced is None:
            return None
        announced, duration, period, stream_start = self._announced
        if duration is not None:
            # the stream ends at its own start + duration, on our clock (which starts at the container start)
            missing_s = stream_start + duration - (last_time + period)
            tolerance: Fraction = max(_TRUNC_MIN_FRAMES * period, Fraction(_TRUNC_FRACTION) * duration)
            truncated = missing_s > tolerance
            what = f"announces {float(duration):.3f} s ({announced} frames)"
        elif seeked:
            return None  # frames before the seek point were never decoded: the count says nothing
        else:
            truncated = announced - frames_decoded > max(_TRUNC_MIN_FRAMES, _TRUNC_FRACTION * announced)
            what = f"announces {announced} frames"
        if not truncated:
            return None
        return (
            f"{self.path}: truncated or damaged file: the container {what} but decoding stopped at "
            f"{float(last_time):.3f} s after {frames_decoded} frames"
        )


def iter_frames(path: str | os.PathLike[str], *, format: str = "rgb24") -> Iterator[tuple[Fraction, np.ndarray]]:
    """Yield ``(time, frame)`` for every frame of a file, upright, on the clock of :mod:`slowfast_det.video.probe`.

    ``frame`` is an (H, W, 3) uint8 array in ``format`` (``rgb24`` or ``bgr24``). Frames whose timestamp does
    not increase are skipped; corrupt packets are skipped.
    """
    for frame in FileSource(path).frames():
        yield frame.time, frame.to_ndarray(format)

