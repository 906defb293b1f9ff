"""Streaming decode of a video into keyframe clips sampled by time, with bounded memory.

**Clock.** A frame's time is ``pts x time_base - container start`` seconds (the container's ``start_time``;
the stream's when the container gives none), the position a player shows and the clock of
:mod:`slowfast_det.video`: the first frame of a normal MP4 is at 0.0 s. All times are exact
:class:`fractions.Fraction` values, so a keyframe that falls exactly on a frame boundary is never moved by
float rounding.

**Keyframes.** ``start + k x stride`` for k = 0, 1, ... while the time is <= ``end`` (if given) and <= the
time of the last frame (a keyframe after the last frame has no frame to show).

**Clip sampling (the rule).** The model sees frames at ``target_fps`` (30, as AVA's extraction) whatever the
source frame rate. A clip of T = ``num_frames`` frames with sampling rate r around keyframe time t needs the
times ``t + (j x r - (T x r) // 2) / target_fps`` for j = 0 .. T-1, which are PySlowFast's AVA indices
``range(centre - T·r/2, centre + T·r/2, r)`` turned into times; the keyframe is element T/2 (as AVA).
For each needed time the frame *displayed* at that time is taken: the last frame whose time is <= the needed
time, i.e. the frame on screen then. Times before the first frame take the first frame and times after the
last frame take the last frame, which is PySlowFast's clamping of indices to ``[0, n_frames - 1]``. This
holds for any frame rate (25, 29.97, 60, ...) and for variable frame rate, since only frame times are used.
On a 30 fps video whose frames start at 0, needed time i/30 is exactly frame i, so the result equals
PySlowFast's index rule on frames extracted at 30 fps.

**Rotation.** A display-matrix rotation (phone videos) is applied, so frames, boxes and renders are upright
as a player shows them; only multiples of 90 degrees are supported.

**Memory.** Frames are decoded in order and converted (``bgr24`` ndarray, then ``frame_transform``) only if
some pending clip needs them; a frame stays referenced only until the clips that need it are emitted. The
frames held at any time are at most ``pending clips x T`` transformed frames plus one full-size keyframe per
pending clip, where pending clips <= (clip span / stride) + 1: independent of the video's length
(:attr:`ClipStream.max_frames_held` reports the peak).

**Late starts.** With ``start`` more than a few seconds in, decoding begins at the key frame before the first
needed time (container seek), falling back to decoding from the beginning if the seek lands too late.

**Damaged input.** Packets the decoder rejects are skipped and counted (as ffmpeg's command line does);
a stream that stops well before the length its container announces is a truncated file and raises
:class:`VideoDecodeError` unless ``allow_truncated``; no decodable frame at all raises it too.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import av.video.stream
import numpy as np

from ava_tools.video_io import open_video
from slowfast_det.video import VideoDecodeError

__all__ = [
    "ClipStream",
    "KeyframeClip",
    "VideoDecodeError",
    "VideoInfo",
    "as_fraction",
    "clip_offsets",
    "displayed_frame_index",
    "iter_frames",
    "keyframe_times",
    "open_video",
    "probe_video",
    "stream_clips",
]

logger = logging.getLogger(__name__)

# Missing frames tolerated before a stream counts as truncated: max(_TRUNC_MIN_FRAMES, _TRUNC_FRACTION x count)
# (edit lists and B-frame priming can hide a few frames of the announced count).
_TRUNC_MIN_FRAMES = 2
# A start later than this (s) seeks to 1 s before the first needed time instead of decoding from 0.
_SEEK_MIN_S = 5
_SEEK_MARGIN_S = 1
_TRUNC_FRACTION = 0.01


def as_fraction(value: float | int | str | Fraction) -> Fraction:
    """Exact time value: decimal strings and floats are read as the decimal they print as ("0.1" -> 1/10)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"time must be finite, got {value}")
        return Fraction(repr(value))
    return Fraction(value)


def clip_offsets(num_frames: int, sampling_rate: int, target_fps: int = 30) -> list[Fraction]:
    """Offsets (seconds) of the T clip frames from the keyframe: ``(j·r - (T·r)//2) / fps``, j = 0..T-1."""
    if num_frames < 1 or sampling_rate < 1 or target_fps < 1:
        raise ValueError(
            f"need num_frames, sampling_rate, target_fps >= 1, got {num_frames}, {sampling_rate}, {target_fps}"
        )
    half = (num_frames * sampling_rate) // 2
    return [Fraction(j * sampling_rate - half, target_fps) for j in range(num_frames)]


def keyframe_times(start: Fraction, stride: Fraction, end: Fraction | None = None) -> Iterator[Fraction]:
    """``start, start + stride, ...`` up to ``end`` inclusive (endless when ``end`` is None)."""
    if stride <= 0:
        raise ValueError(f"stride must be > 0 seconds, got {stride}")
    if start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    k = 0
    while end is None or start + k * stride <= end:
        yield start + k * stride
        k += 1


def displayed_frame_index(frame_times: list[Fraction], t: Fraction) -> int:
    """Index of the frame displayed at ``t``: the last with time <= t, clamped to [0, len - 1].

    Reference implementation of the sampling rule (used by tests); the streaming code applies the same rule
    incrementally. ``frame_times`` must be increasing.
    """
    import bisect

    return min(max(bisect.bisect_right(frame_times, t) - 1, 0), len(frame_times) - 1)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (before decoding).

    Attributes:
        path: the file.
        width, height: displayed frame size in pixels (after rotation).
        rotation: counter-clockwise display rotation in degrees (0, 90, 180, 270).
        average_fps: the container's average frame rate (None if unknown); informative only.
        duration_s: stream duration in seconds, None if unknown.
        num_frames: announced frame count, 0 if unknown.
    """

    path: Path
    width: int
    height: int
    rotation: int
    average_fps: float | None
    duration_s: float | None
    num_frames: int


def _rotation_of(value: Any, path: Path) -> int:
    degrees = int(round(float(value or 0))) % 360
    if degrees % 90:
        raise VideoDecodeError(f"{path}: display rotation {degrees} degrees is not a multiple of 90")
    return degrees


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` and read its :class:`VideoInfo`; decodes the first frame for size and rotation.

    Raises:
        VideoDecodeError: not a media file, no video stream, or no decodable frame.
    """
    path = Path(path)
    container, stream = open_video(path)
    with container:
        frame = next(_decode_frames(container, stream, path, counter=[0]), None)
        if frame is None:
            raise VideoDecodeError(f"{path}: no decodable video frame")
        rotation = _rotation_of(getattr(frame, "rotation", 0), path)
        w, h = frame.width, frame.height
        if rotation in (90, 270):
            w, h = h, w
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        rate = float(stream.average_rate) if stream.average_rate else None
        return VideoInfo(path, w, h, rotation, rate, duration, int(stream.frames or 0))


def _decode_frames(
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


def _zero_time(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction:
    """Seconds of pts time shown as 0: the container's start (as players and ``slowfast_det.video``)."""
    if container.start_time is not None:
        return Fraction(container.start_time, av.time_base)
    if stream.start_time is not None and stream.time_base is not None:
        return stream.start_time * Fraction(stream.time_base)
    return Fraction(0)


def _frame_time(frame: av.VideoFrame, stream: av.video.stream.VideoStream, zero: Fraction,
                previous: Fraction | None) -> Fraction:
    """Seconds on the video clock; a frame without any timestamp comes one average period after the previous."""
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None or stream.time_base is None:
        rate = stream.average_rate or stream.guessed_rate or 30
        return Fraction(0) if previous is None else previous + 1 / Fraction(rate)
    return pts * Fraction(stream.time_base) - zero


class _SeekOvershoot(Exception):
    """Seeking landed after the wanted time (imprecise index): decode from the start instead."""


@dataclass
class KeyframeClip:
    """One keyframe and its clip.

    Attributes:
        index: keyframe number k (time = start + k x stride).
        time: keyframe time in seconds on the video clock.
        keyframe: (H, W, 3) uint8 BGR frame displayed at ``time``, full size, upright.
        frames: the T clip frames (outputs of ``frame_transform``; (H', W', 3) uint8 BGR by default).
        frame_times: (T,) time (s) of the source frame used for each clip element.
        keyframe_time: time (s) of the source frame used as keyframe.
    """

    index: int
    time: Fraction
    keyframe: np.ndarray
    frames: list[Any]
    frame_times: list[Fraction]
    keyframe_time: Fraction


@dataclass
class _Pending:
    index: int
    time: Fraction
    needed: list[Fraction]
    frames: list[Any] = field(default_factory=list)
    frame_times: list[Fraction] = field(default_factory=list)
    keyframe: np.ndarray | None = None
    keyframe_time: Fraction | None = None

    @property
    def complete(self) -> bool:
        return self.keyframe is not None and len(self.frames) == len(self.needed)


class ClipStream:
    """Iterator of :class:`KeyframeClip` over one video (see the module docstring for every rule).

    Args:
        path: the video file.
        num_frames: T, frames per clip (DATA.NUM_FRAMES).
        sampling_rate: r, in frames of ``target_fps`` (DATA.SAMPLING_RATE).
        stride: seconds between keyframes.
        start: first keyframe time (s).
        end: last keyframe time (s), inclusive; None = up to the last frame.
        target_fps: frame rate the model's sampling rate refers to (30, as AVA).
        frame_transform: applied once per needed frame to its upright (H, W, 3) uint8 BGR array (e.g. the
            test-time resize); the identity by default.
        allow_truncated: keep the clips of a file that stops before its announced length instead of raising.
        threads: decoder threads (0 = FFmpeg's choice).

    Attributes (valid after iteration): ``frames_decoded``, ``frames_converted``, ``packets_skipped``,
    ``max_frames_held``, ``decode_seconds`` (decoding + conversion + bookkeeping, excluding the consumer),
    ``last_frame_time``, ``truncated``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_frames: int,
        sampling_rate: int,
        stride: float | str | Fraction = 1,
        start: float | str | Fraction = 0,
        end: float | str | Fraction | None = None,
        target_fps: int = 30,
        frame_transform: Callable[[np.ndarray], Any] | None = None,
        allow_truncated: bool = False,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.offsets = clip_offsets(num_frames, sampling_rate, target_fps)
        self.stride = as_fraction(stride)
        self.start = as_fraction(start)
        self.end = None if end is None else as_fraction(end)
        if self.stride <= 0:
            raise ValueError(f"stride must be > 0 seconds, got {float(self.stride)}")
        if self.start < 0:
            raise ValueError(f"start must be >= 0 seconds, got {float(self.start)}")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end ({float(self.end)} s) is before start ({float(self.start)} s)")
        self.frame_transform = frame_transform
        self.allow_truncated = allow_truncated
        self.threads = threads
        self.info: VideoInfo | None = None
        self.frames_decoded = 0
        self.frames_converted = 0
        self.packets_skipped = 0
        self.max_frames_held = 0
        self.decode_seconds = 0.0
        self.last_frame_time: Fraction | None = None
        self.truncated = False
        self._zero = Fraction(0)
        self._seeked = False

    def max_pending_clips(self) -> int:
        """Upper bound on clips in flight: (clip span / stride) + 2."""
        span = self.offsets[-1] - self.offsets[0]
        return int(span / self.stride) + 2

    def __iter__(self) -> Iterator[KeyframeClip]:
        self.info = probe_video(self.path)
        # with a late start, seek close to the first needed time instead of decoding everything before it
        seek_to = self.start + self.offsets[0] - _SEEK_MARGIN_S
        for seek in ((seek_to,) if seek_to > _SEEK_MIN_S else ()) + (None,):
            container, stream = open_video(self.path)
            with container:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.threads
                try:
                    yield from self._run(container, stream, seek)
                    return
                except _SeekOvershoot:
                    logger.info("%s: seeking landed after %.3f s; decoding from the start", self.path, seek)

    def _run(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
             seek: Fraction | None) -> Iterator[KeyframeClip]:
        """The decode loop; with ``seek``, starts from the key frame before that time (raises
        :class:`_SeekOvershoot`, before yielding anything, if the first frame comes after it)."""
        assert self.info is not None
        self.frames_decoded = self.frames_converted = self.max_frames_held = 0
        self._seeked = seek is not None
        zero = self._zero = _zero_time(container, stream)
        if seek is not None and stream.time_base is not None:
            container.seek(int((seek + zero) / Fraction(stream.time_base)), stream=stream, backward=True)
        rotation = self.info.rotation
        pending: deque[_Pending] = deque()
        times = keyframe_times(self.start, self.stride, self.end)
        next_time = next(times, None)
        next_index = 0
        counter = [0]
        prev: av.VideoFrame | None = None
        prev_time = Fraction(0)
        tic = time.perf_counter()

        def process(frame: av.VideoFrame, frame_time: Fraction, hi: Fraction | None) -> list[KeyframeClip]:
            """Hand ``frame`` to the clips that need it. It is displayed on [frame_time, hi) (hi None: the
            last frame, shown forever). Clips take frames in order, so the first frame also serves every
            time before it (clamping)."""
            nonlocal next_time, next_index
            # open the clips whose window starts before this frame stops being displayed
            while next_time is not None and (hi is None or next_time + self.offsets[0] < hi):
                if hi is None and next_time > frame_time:
                    next_time = None  # keyframes after the last frame have no frame to show: stop
                    break
                pending.append(_Pending(next_index, next_time, [next_time + o for o in self.offsets]))
                next_index += 1
                next_time = next(times, None)
            while hi is None and pending and pending[-1].time > frame_time:
                pending.pop()  # opened by an earlier frame, but the video ends before its keyframe
            bgr: np.ndarray | None = None
            transformed: Any = None
            for clip in pending:
                # needed times are increasing and earlier ones are already served: count those before hi
                count = sum(1 for t in clip.needed[len(clip.frames):] if hi is None or t < hi)
                in_keyframe = clip.keyframe is None and (hi is None or clip.time < hi)
                if not count and not in_keyframe:
                    continue
                if bgr is None:
                    bgr = frame.to_ndarray(format="bgr24")
                    if rotation:
                        bgr = np.ascontiguousarray(np.rot90(bgr, k=rotation // 90))
                    self.frames_converted += 1
                if count and transformed is None:
                    transformed = self.frame_transform(bgr) if self.frame_transform is not None else bgr
                clip.frames.extend([transformed] * count)
                clip.frame_times.extend([frame_time] * count)
                if in_keyframe:
                    clip.keyframe, clip.keyframe_time = bgr, frame_time
            held = {id(f) for clip in pending for f in clip.frames}
            self.max_frames_held = max(self.max_frames_held, len(held) + len(pending))
            done = []
            while pending and pending[0].complete:
                clip = pending.popleft()
                assert clip.keyframe is not None and clip.keyframe_time is not None
                done.append(KeyframeClip(clip.index, clip.time, clip.keyframe, clip.frames, clip.frame_times,
                                         clip.keyframe_time))
            return done

        for frame in _decode_frames(container, stream, self.path, counter):
            t = _frame_time(frame, stream, zero, None if prev is None else prev_time)
            if prev is None and seek is not None and t > seek:
                raise _SeekOvershoot
            if prev is not None and t <= prev_time:
                continue  # a repeated or out-of-order timestamp: the earlier frame stays on screen
            self.frames_decoded += 1
            if prev is not None:
                ready = process(prev, prev_time, t)
                self.decode_seconds += time.perf_counter() - tic
                yield from ready
                tic = time.perf_counter()
            prev, prev_time = frame, t
            if next_time is None and not pending:
                break  # every keyframe up to `end` is done: the rest of the file is not needed
        self.packets_skipped = counter[0]
        if prev is None:
            raise VideoDecodeError(
                f"{self.path}: no decodable video frame"
                + (f" ({self.packets_skipped} corrupt packets skipped)" if self.packets_skipped else "")
            )
        self.last_frame_time = prev_time
        ready = []
        if next_time is not None or pending:
            self._check_truncation(stream)
            ready = process(prev, prev_time, None)
        if self.packets_skipped:
            logger.warning("%s: skipped %d corrupt packets", self.path, self.packets_skipped)
        self.decode_seconds += time.perf_counter() - tic
        yield from ready

    def _check_truncation(self, stream: av.video.stream.VideoStream) -> None:
        """Raise (or flag) when decoding ended well before the container's announced length.

        The stream is truncated when its last decoded frame ends more than max(2 frame periods, 1 %) before
        the announced duration (or, without a duration, when more than max(2, 1 %) of the announced frames
        are missing). Skipped corrupt packets in the middle of a file do not count: later frames exist.
        """
        announced = int(stream.frames or 0)
        last = self.last_frame_time or Fraction(0)
        duration: Fraction | None = None
        if stream.duration and stream.time_base:
            duration = Fraction(stream.duration) * Fraction(stream.time_base)
        rate = stream.average_rate or stream.guessed_rate
        period = Fraction(0)
        if rate:
            period = 1 / Fraction(rate)
        elif duration is not None and announced:
            period = duration / announced
        if duration is not None:
            # the stream ends at its own start + duration, on our clock (which starts at the container start)
            stream_start = Fraction(stream.start_time or 0) * Fraction(stream.time_base or 0) - self._zero
            missing_s = stream_start + duration - (last + period)
            tolerance: Fraction = max(_TRUNC_MIN_FRAMES * period, Fraction(_TRUNC_FRACTION) * duration)
            truncated = missing_s > tolerance
            what = f"announces {float(duration):.3f} s ({announced} frames)"
        elif self._seeked:
            truncated = False  # frames before the seek point were never decoded: the count says nothing
        else:
            truncated = announced - self.frames_decoded > max(_TRUNC_MIN_FRAMES, _TRUNC_FRACTION * announced)
            what = f"announces {announced} frames"
        if not truncated:
            return
        self.truncated = True
        message = (
            f"{self.path}: truncated or damaged file: the container {what} but decoding stopped at "
            f"{float(last):.3f} s after {self.frames_decoded} frames"
        )
        if not self.allow_truncated:
            raise VideoDecodeError(message + "; pass allow_truncated (--allow-truncated) to keep the decoded part")
        logger.warning("%s", message)


def iter_frames(path: str | os.PathLike[str], *, format: str = "rgb24") -> Iterator[tuple[Fraction, np.ndarray]]:
    """Yield ``(time, frame)`` for every frame, upright, on the clock of :class:`ClipStream`.

    ``frame`` is an (H, W, 3) uint8 array in ``format`` (``rgb24`` or ``bgr24``). Frames whose timestamp does
    not increase are skipped as in :class:`ClipStream`; corrupt packets are skipped.
    """
    path = Path(path)
    info = probe_video(path)
    container, stream = open_video(path)
    with container:
        stream.thread_type = "AUTO"
        zero = _zero_time(container, stream)
        previous: Fraction | None = None
        for frame in _decode_frames(container, stream, path, counter=[0]):
            t = _frame_time(frame, stream, zero, previous)
            if previous is not None and t <= previous:
                continue
            previous = t
            array: np.ndarray = frame.to_ndarray(format=format)
            if info.rotation:
                array = np.ascontiguousarray(np.rot90(array, k=info.rotation // 90))
            yield t, array


def stream_clips(path: str | os.PathLike[str], **kwargs: Any) -> ClipStream:
    """Shorthand for :class:`ClipStream` (same keyword arguments)."""
    return ClipStream(path, **kwargs)
