"""Streaming decode of a video into keyframe clips sampled by time, with bounded memory.

**Source and clock.** Frames come from a :class:`~slowfast_det.video.sources.FrameSource` (a file path means
:class:`~slowfast_det.video.sources.FileSource`), timed on the clock of :mod:`slowfast_det.video.probe`: the
first frame of a normal MP4 is at 0.0 s. All times are exact :class:`fractions.Fraction` values, so a keyframe
that falls exactly on a frame boundary is never moved by float rounding.

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

import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from slowfast_det.video.probe import VideoDecodeError, VideoInfo
from slowfast_det.video.sources import FileSource, FrameSource, SeekOvershoot, SourceFrame

__all__ = [
    "ClipStream",
    "KeyframeClip",
    "as_fraction",
    "clip_offsets",
    "displayed_frame_index",
    "keyframe_times",
]

logger = logging.getLogger(__name__)

# A start later than this (s) seeks to 1 s before the first needed time instead of decoding from 0.
_SEEK_MIN_S = 5
_SEEK_MARGIN_S = 1


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
        source: a :class:`~slowfast_det.video.sources.FrameSource`, or a video file path.
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
        source: FrameSource | str | os.PathLike[str],
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
        self.source = source if isinstance(source, FrameSource) else FileSource(source)
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
        self._seeked = False

    def max_pending_clips(self) -> int:
        """Upper bound on clips in flight: (clip span / stride) + 2."""
        span = self.offsets[-1] - self.offsets[0]
        return int(span / self.stride) + 2

    @property
    def path(self) -> str:
        """The source's name (a file path for files)."""
        return self.source.name

    def __iter__(self) -> Iterator[KeyframeClip]:
        # with a late start, seek close to the first needed time instead of decoding everything before it
        seek_to = self.start + self.offsets[0] - _SEEK_MARGIN_S
        seeks: tuple[Fraction | None, ...] = (None,)
        if self.source.seekable and seek_to > _SEEK_MIN_S:
            seeks = (seek_to, None)
        for seek in seeks:
            try:
                yield from self._run(seek)
                return
            except SeekOvershoot:
                logger.info("%s: seeking landed after %.3f s; decoding from the start", self.path, seek)

    def _run(self, seek: Fraction | None) -> Iterator[KeyframeClip]:
        """The clip loop over the source's frames; with ``seek``, the source starts from the key frame before
        that time (and raises :class:`SeekOvershoot`, before anything is yielded, if it lands after it)."""
        self.frames_decoded = self.frames_converted = self.max_frames_held = 0
        self._seeked = seek is not None
        frames = self.source.frames(seek, threads=self.threads)
        try:
            yield from self._clips(frames)
        finally:
            frames.close()  # closes the source's container even when the consumer stops early

    def _clips(self, frames: Iterator[SourceFrame]) -> Iterator[KeyframeClip]:
        tic = time.perf_counter()
        first = next(frames, None)  # the source knows its info once it produced a frame (or failed)
        self.info = self.source.info
        pending: deque[_Pending] = deque()
        times = keyframe_times(self.start, self.stride, self.end)
        next_time = next(times, None)
        next_index = 0
        prev: SourceFrame | None = None
        prev_time = Fraction(0)

        def process(frame: SourceFrame, frame_time: Fraction, hi: Fraction | None) -> list[KeyframeClip]:
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
                    bgr = frame.bgr()
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

        for frame in itertools.chain(() if first is None else (first,), frames):
            t = frame.time
            self.frames_decoded += 1
            if prev is not None:
                ready = process(prev, prev_time, t)
                self.decode_seconds += time.perf_counter() - tic
                yield from ready
                tic = time.perf_counter()
            prev, prev_time = frame, t
            if next_time is None and not pending:
                break  # every keyframe up to `end` is done: the rest of the file is not needed
        self.packets_skipped = self.source.packets_skipped
        if prev is None:
            raise VideoDecodeError(
                f"{self.path}: no decodable video frame"
                + (f" ({self.packets_skipped} corrupt packets skipped)" if self.packets_skipped else "")
            )
        self.last_frame_time = prev_time
        ready = []
        if next_time is not None or pending:
            self._check_truncation()
            ready = process(prev, prev_time, None)
        if self.packets_skipped:
            logger.warning("%s: skipped %d corrupt packets", self.path, self.packets_skipped)
        self.decode_seconds += time.perf_counter() - tic
        yield from ready

    def _check_truncation(self) -> None:
        """Raise (or flag, with ``allow_truncated``) when the source says decoding ended before its length."""
        message = self.source.truncation(self.last_frame_time or Fraction(0), self.frames_decoded,
                                         seeked=self._seeked)
        if message is None:
            return
        self.truncated = True
        if not self.allow_truncated:
            raise VideoDecodeError(message + "; pass allow_truncated (--allow-truncated) to keep the decoded part")
        logger.warning("%s", message)
