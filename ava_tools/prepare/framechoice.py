"""Which source frame fills each extracted frame: real ffmpeg's frame choice, from timestamps alone.

PySlowFast prepares AVA with two ffmpeg commands::

    ffmpeg -ss 900 -t 901 -i SRC cut.mp4               # re-encode, accurate seek
    ffmpeg -i cut.mp4 -r 30 -q:v 1 OUT/%06d.jpg        # constant frame rate conversion

:class:`FfmpegFrameSelector` reproduces the frame choice of those two commands as run by **ffmpeg 5.1**
(Debian 12's ``ffmpeg`` package, 5.1.x), from the source's timestamps, packet durations, time base, frame
rate and stream count, with no ffmpeg binary.

**Checked against ffmpeg 5.1.9-0+deb12u1 (Debian 12)**, frame by frame, on frame-index-coded H.264 videos
(``tests/test_prepare_ffmpeg.py`` runs 30 such cuts in CI; 168 cuts were checked while deriving the rule,
all equal, against 101 of 168 for the previous rule): 12, 15, 20, 23.976, 24, 25, 29.97, 30, 50 and 60 fps
mp4, each with and without an AAC audio track; jittered variable-frame-rate mp4 (time base 1/90000) and mkv
(1/1000), with and without audio; starts on a frame, between frames, on exact half-way times; cut lengths
1-4.3 s, and to the end of the file. Full-length 900-1801 s cuts: ``tests/benchmarks/bench_prepare_ffmpeg.py``.
No ffmpeg 4.x binary was available, so none is claimed; 5.1's ``-r`` conversion (``do_video_out`` in
``fftools/ffmpeg.c``) predates the 6.x/7.x rewrite of ffmpeg's command-line tool.

The rule, all in ffmpeg's own integer and double arithmetic:

1. *Input offset.* ``-ss S`` as an input option shifts every packet by
   ``-(S + container_start)``, rescaled to the stream's time base with rounding to nearest.
2. *Trim* (the ``trim`` filter ffmpeg inserts for an accurate seek): frames with shifted pts ``< 0`` are
   dropped; ``-t D`` keeps frames while ``pts - first_kept_pts < D`` -- it counts from the **first frame
   kept**, not from ``S``, so a first frame after ``S`` lets one more frame in at the end.
3. *Pass 1* (``cut.mp4``) re-times the frames onto the source's own frame rate ``R``
   (``av_guess_frame_rate``) with ``do_video_out``'s constant-frame-rate sync, and *pass 2* re-times the
   frames of ``cut.mp4`` onto ``-r 30``. In each pass a frame's position in output frames is
   ``sync_ipts = rescale(pts, 2**-e / rate_out) / 2**e`` (``e = clip(29 - log2(rate_out.num), 0, 16)`` extra
   bits, rounded to nearest), **plus** ``2**-17`` (minus, when ``sync_ipts <= 0``: ffmpeg's "avoid exact
   midpoints", so an exact tie does not round half-to-even). With ``delta0 = sync_ipts - next_slot`` and
   ``delta = delta0 + duration``: a frame that starts in the past is clipped (``delta0 = 0``); it is dropped
   if ``delta < -1.1``, emitted ``llrintf(delta)`` times if ``delta > 1.1`` (the first
   ``llrintf(delta0 - 0.6)`` of them repeat the previous frame when ``delta0 > 1.1``), else once.
   ``duration`` is the frame's packet duration in output frames rounded (``lrintf``), or, when that rounds to
   0, ``min(rate_out / rate_in, 1)``. At the end ffmpeg repeats the last frame
   ``median(last three repeat counts)`` times.
4. *Single-stream files* ("vscfr"): when the input file has one stream only, the first frame is not
   duplicated back to time 0; the output starts at ``llrint(sync_ipts)``. For pass 1 this writes ``cut.mp4``
   with a start offset (an edit list), and pass 2 subtracts ``cut.mp4``'s start time, so its frames sit at
   ``(p - p0) / R``. With an audio stream, ``cut.mp4`` starts at 0 and the first frame is repeated instead.
5. ``cut.mp4``: frame ``p`` of pass 1 is at ``p / R`` s; its packets last ``1 / R`` s; its frame rate is
   ``R``; it has an audio stream when the source has one.

What ffmpeg 9.x (the ``imageio-ffmpeg`` wheel's 9.0.2) does differently: see :data:`FFMPEG_9_DIFFERENCES`.
The decoder and colour conversion of a build also differ (PySlowFast issue #112): the pixels, not the
frame choice, are :mod:`ava_tools.prepare.jpeg`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ava_tools import timeline

__all__ = [
    "AVA_END_SEC",
    "AVA_START_SEC",
    "CHECKED_FFMPEG_VERSIONS",
    "FFMPEG_9_DIFFERENCES",
    "FfmpegFrameSelector",
    "SourceTiming",
    "probe_timing",
    "select_source_frames",
    "to_fraction",
]

AVA_START_SEC = float(timeline.AVA_START_SEC)  # the default cut, as floats (the done markers record floats)
AVA_END_SEC = float(timeline.AVA_END_SEC)

CHECKED_FFMPEG_VERSIONS = ("5.1.9-0+deb12u1",)  # real binaries this rule was compared with, frame by frame

FFMPEG_9_DIFFERENCES = """\
ffmpeg 9.0.2 (the imageio-ffmpeg wheel's binary) was run on the same 168 generated cases: 59 equal 5.1.
* Sources below 30 fps (20, 23.976, 24, 25 fps): 9.x shows the last source frame at or before each output
  slot, floor(k * rate / 30) (25 fps: 0, 1, 2, 2, 3, 4, ...), where 5.1 shows the nearest frame, an exact
  tie going to the later one (0, 1, 2, 3, 3, 4, ...): about one output frame in six differs by one source
  frame, and the cut end can give one frame more or fewer.
* Sources above 30 fps (50 fps): both lag behind the slot times (ffmpeg's -1.1 drop threshold), by
  different amounts.
* 15, 30, 60, 12 and 10 fps cut on a frame boundary agree; variable-frame-rate files mostly differ.
The 9.x rule (ffmpeg 6.1+'s rewritten rate conversion in fftools/ffmpeg_filter.c) is not modelled; use
``--ffmpeg PATH`` to run such a build itself.
"""

AV_TIME_BASE = 1_000_000  # ffmpeg's microsecond time base for -ss, -t and container start times


def _lrintf(x: float) -> int:
    """C ``lrintf``: convert to single precision, round to nearest, ties to even."""
    return round(float(np.float32(x)))


def _rescale(a: int, src_tb: Fraction, dst_tb: Fraction) -> int:
    """ffmpeg's ``av_rescale_q``: ``a * src_tb / dst_tb`` rounded to nearest, halves away from zero."""
    num = abs(a) * src_tb.numerator * dst_tb.denominator
    den = src_tb.denominator * dst_tb.numerator
    q, r = divmod(num, den)
    if 2 * r >= den:
        q += 1
    return q if a >= 0 else -q


def _seconds_to_us(x: Fraction) -> int:
    """A time in seconds as ffmpeg's option parser makes it (``av_parse_time``: whole microseconds)."""
    return math.floor(x * AV_TIME_BASE) if x >= 0 else -math.floor(-x * AV_TIME_BASE)


class _CfrSync:
    """ffmpeg 5.1's constant-frame-rate sync of one output stream (``do_video_out``), in output frames.

    Args:
        rate_in: the frame rate of the frames entering (the filter graph's rate), frames/s.
        rate_out: the output's frame rate (its time base is ``1 / rate_out``).
        vscfr: the input file has a single stream (ffmpeg's "vscfr" variant).
    """

    def __init__(self, *, rate_in: Fraction, rate_out: Fraction, vscfr: bool) -> None:
        self.rate_out = rate_out
        self.enc_tb = 1 / rate_out
        self.extra_bits = min(max(29 - (rate_out.numerator.bit_length() - 1), 0), 16)
        self.fine_tb = Fraction(self.enc_tb.numerator, self.enc_tb.denominator << self.extra_bits)
        # 1/(fr * tb) capped at one output frame, in doubles as ffmpeg computes it
        self.default_duration = min(
            1.0 / (float(rate_in) * float(self.enc_tb)), 1.0 / (float(rate_out) * float(self.enc_tb))
        )
        self.vscfr = vscfr
        self.next_pts = 0  # ffmpeg's ost->sync_opts: pts of the next output frame
        self.frame_number = 0
        self.last_nb0 = [0, 0, 0]

    def sync_ipts(self, pts: int, time_base: Fraction) -> float:
        """A frame's position in output frames (``adjust_frame_pts_to_encoder_tb``), nudged off midpoints."""
        fine = _rescale(pts, time_base, self.fine_tb)
        value = fine / float(1 << self.extra_bits)
        return value + (1.0 if value > 0 else -1.0) / (1 << 17)

    def frame_duration(self, pkt_duration: int, time_base: Fraction) -> float:
        """The frame's duration in output frames: its packet's, rounded, when that is > 0."""
        if pkt_duration > 0:
            rounded = _lrintf(pkt_duration * (time_base.numerator / time_base.denominator) / float(self.enc_tb))
            if rounded > 0:
                return float(rounded)
        return self.default_duration

    def push(self, sync_ipts: float, duration: float) -> tuple[int, int, int]:
        """Feed one input frame at ``sync_ipts`` lasting ``duration`` (output frames).

        Returns ``(nb0, nb, first_pts)``: emit ``nb`` output frames with pts ``first_pts, first_pts+1, ...``;
        the first ``nb0`` of them repeat the previous input frame, the rest show this one.
        """
        delta0 = sync_ipts - self.next_pts
        delta = delta0 + duration
        nb0, nb = 0, 1
        if delta0 < 0 < delta:  # the frame starts in the past: clip it ("Clipping frame in rate conversion")
            sync_ipts = float(self.next_pts)
            duration += delta0
            delta0 = 0.0
        if self.vscfr and self.frame_number == 0 and delta0 >= 0.5:
            # "Not duplicating initial frames": start the output where the first frame is.
            delta, delta0 = duration, 0.0
            self.next_pts = round(sync_ipts)  # llrint
        if delta < -1.1:
            nb = 0
        elif delta > 1.1:
            nb = _lrintf(delta)
            if delta0 > 1.1:
                nb0 = _lrintf(delta0 - 0.6)
        nb0 = min(nb0, nb)
        self.last_nb0 = [nb0, *self.last_nb0[:2]]
        first = self.next_pts
        self.next_pts += nb
        self.frame_number += nb
        return nb0, nb, first

    def flush(self) -> tuple[int, int]:
        """End of stream: ``(nb, first_pts)``, ``nb`` more copies of the last input frame."""
        nb = sorted(self.last_nb0)[1]  # ffmpeg's mid_pred
        first = self.next_pts
        self.next_pts += nb
        self.frame_number += nb
        return nb, first


@dataclass(frozen=True)
class SourceTiming:
    """What ffmpeg 5.1's frame choice needs to know about a source, beyond its frames' pts.

    Attributes:
        time_base: the video stream's time base, seconds per tick.
        frame_rate: ``av_guess_frame_rate`` (PyAV ``guessed_rate``), frames/s.
        container_start: the container's start time as ffmpeg 5.1 computes it, seconds: the smallest first
            pts over all streams, counting packets not flagged "discard" (so a Matroska AAC track's codec
            delay counts, -21 ms at 48 kHz, while an mp4 edit list hides it); newer libavformat (PyAV's)
            reports 0 for the former, so this is computed from the packets, not taken from PyAV.
        single_stream: the file holds one stream (the video).
        has_audio: the file has an audio stream (then ``cut.mp4`` has one).
        packet_durations: whether ffmpeg 5.1's demuxer gives video packets their own duration. Not for
            mp4/mov with B-frames (a ``ctts`` box): 5.1 then takes one frame at the codec's frame rate, i.e.
            the nominal duration, which is what an unknown duration gives too.
    """

    time_base: Fraction
    frame_rate: Fraction
    container_start: Fraction
    single_stream: bool
    has_audio: bool
    packet_durations: bool


def probe_timing(container: Any, stream: Any, *, packets: int = 64) -> SourceTiming:
    """:class:`SourceTiming` of an open PyAV input ``container`` and its video ``stream``.

    Demuxes the first ``packets`` packets (then seeks back to the start), as ffmpeg's probe does.

    Raises:
        ValueError: the stream has no time base or frame rate.
    """
    if stream.time_base is None:
        raise ValueError("the video stream has no time base")
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    if not rate:
        raise ValueError("the video stream has no frame rate")
    firsts: dict[int, Fraction] = {}
    reordered = False
    for i, packet in enumerate(container.demux()):
        if i >= packets:
            break
        if packet.pts is None or packet.time_base is None:
            continue
        if packet.stream.index == stream.index and packet.dts is not None and packet.dts != packet.pts:
            reordered = True
        if packet.stream.index not in firsts and not packet.is_discard:
            firsts[packet.stream.index] = Fraction(packet.pts) * packet.time_base
    container.seek(0)
    start = min(firsts.values()) if firsts else Fraction(container.start_time or 0, AV_TIME_BASE)
    is_mov = "mov" in container.format.name.split(",")
    return SourceTiming(
        time_base=Fraction(stream.time_base),
        frame_rate=Fraction(rate),
        container_start=start,
        single_stream=len(container.streams) == 1,
        has_audio=len(container.streams.audio) > 0,
        packet_durations=not (is_mov and reordered),
    )


def _mov_timescale(rate: Fraction) -> int:
    """The track timescale ffmpeg's mp4 muxer gives a video stream of time base ``1 / rate``."""
    timescale = (1 / rate).denominator
    while timescale < 10000:
        timescale *= 2
    return timescale


class FfmpegFrameSelector:
    """Streaming emulation of ffmpeg 5.1's ``-ss S -t D -i SRC cut.mp4`` then ``-i cut.mp4 -r FPS %06d.jpg``.

    Push the source's video frames in presentation order with their raw pts and packet duration (stream
    time base ticks); each call returns the source indices of the output frames completed so far, in
    output order; :meth:`flush` returns the rest. See the module docstring for the rule.

    Args:
        time_base: the video stream's time base (seconds per tick).
        src_rate: the source's frame rate as ffmpeg guesses it (``av_guess_frame_rate``; PyAV's
            ``stream.guessed_rate``), frames/s.
        start_sec: ``-ss``, seconds.
        duration_sec: ``-t``, seconds; ``None`` keeps everything after the start.
        out_fps: ``-r`` of the second command (30 for AVA).
        single_stream: the source file has exactly one stream (of any kind: its only stream is the video).
        has_audio: the source has an audio stream, so ``cut.mp4`` has one (default: ``not single_stream``).
        container_start: the source container's start time in seconds (ffmpeg's ``AVFormatContext.start_time``,
            PyAV's ``container.start_time / 1e6``): ``-ss`` counts from it.
    """

    def __init__(
        self,
        *,
        time_base: Fraction,
        src_rate: Fraction,
        start_sec: Fraction | float,
        duration_sec: Fraction | float | None,
        out_fps: Fraction | float = 30,
        single_stream: bool,
        has_audio: bool | None = None,
        container_start: Fraction | float = 0,
    ) -> None:
        src_rate, out_fps = Fraction(src_rate), to_fraction(out_fps)
        if src_rate <= 0 or out_fps <= 0:
            raise ValueError(f"frame rates must be positive, got src_rate={src_rate} out_fps={out_fps}")
        self.time_base = Fraction(time_base)
        self.src_rate = src_rate
        self.out_fps = out_fps
        start_us = _seconds_to_us(to_fraction(start_sec)) + _seconds_to_us(to_fraction(container_start))
        self._offset = _rescale(-start_us, Fraction(1, AV_TIME_BASE), self.time_base)
        self._duration_ticks = (
            None
            if duration_sec is None
            else _rescale(_seconds_to_us(to_fraction(duration_sec)), Fraction(1, AV_TIME_BASE), self.time_base)
        )
        self._first_pts: int | None = None
        self._ended = False
        has_audio = not single_stream if has_audio is None else has_audio
        self._pass1 = _CfrSync(rate_in=src_rate, rate_out=src_rate, vscfr=single_stream)
        self._pass2 = _CfrSync(rate_in=src_rate, rate_out=out_fps, vscfr=not has_audio)
        self._cut_tb = Fraction(1, _mov_timescale(src_rate))
        self._cut_frame_ticks = int(1 / src_rate / self._cut_tb)  # one frame of cut.mp4, in its ticks
        self._cut_start: int | None = None if not has_audio else 0  # cut.mp4's start, in pass-1 frames
        self._prev1: int | None = None  # last input of pass 1 (source index)
        self._prev2: int | None = None  # last input of pass 2 (source index)
        self._flushed = False

    def live_indices(self) -> set[int]:
        """Source indices that later outputs may still repeat (the rest can be freed)."""
        return {i for i in (self._prev1, self._prev2) if i is not None}

    def keeps(self, pts: int) -> bool:
        """Whether a frame with raw pts ``pts`` passes the trim (given the frames pushed so far), no state change."""
        shifted = pts + self._offset
        if self._ended or shifted < 0:
            return False
        first = self._first_pts if self._first_pts is not None else shifted
        return self._duration_ticks is None or shifted - first < self._duration_ticks

    @property
    def ended(self) -> bool:
        """The trim has passed its end: no later frame is kept."""
        return self._ended

    def push(self, index: int, pts: int, duration: int = 0) -> list[int]:
        """Feed source frame ``index`` with raw pts ``pts`` and packet duration ``duration`` (ticks, 0: unknown).

        Returns the source indices of the output frames this completes.
        """
        if self._flushed:
            raise RuntimeError("push() after flush()")
        if not self.keeps(pts):
            if pts + self._offset >= 0:
                self._ended = True  # the trim filter stops at the first frame past the end
            return []
        shifted = pts + self._offset
        if self._first_pts is None:
            self._first_pts = shifted
        p1 = self._pass1
        nb0, nb, first = p1.push(p1.sync_ipts(shifted, self.time_base), p1.frame_duration(duration, self.time_base))
        out: list[int] = []
        for i in range(nb):
            src = self._prev1 if (i < nb0 and self._prev1 is not None) else index
            out.extend(self._push2(src, first + i))
        self._prev1 = index
        return out

    def _push2(self, src: int, pts1: int) -> list[int]:
        if self._cut_start is None:
            self._cut_start = pts1  # video-only cut.mp4 starts at its first frame; pass 2 subtracts it
        ticks = (pts1 - self._cut_start) * self._cut_frame_ticks
        p2 = self._pass2
        nb0, nb, _ = p2.push(p2.sync_ipts(ticks, self._cut_tb), p2.frame_duration(self._cut_frame_ticks, self._cut_tb))
        out = [self._prev2 if (i < nb0 and self._prev2 is not None) else src for i in range(nb)]
        self._prev2 = src
        return out

    def flush(self) -> list[int]:
        """End of input: return the remaining output sources (repeats of the last frames)."""
        if self._flushed:
            return []
        self._flushed = True
        out: list[int] = []
        if self._prev1 is not None:
            nb, first = self._pass1.flush()
            for i in range(nb):
                out.extend(self._push2(self._prev1, first + i))
        if self._prev2 is not None:
            nb, _ = self._pass2.flush()
            out.extend([self._prev2] * nb)
        return out


def select_source_frames(
    times: Sequence[Fraction | float],
    *,
    src_rate: Fraction | float,
    start_sec: float = AVA_START_SEC,
    end_sec: float | None = AVA_END_SEC,
    fps: float = 30.0,
    single_stream: bool = False,
    has_audio: bool | None = None,
    time_base: Fraction | None = None,
    durations: Sequence[Fraction | float] | None = None,
) -> list[int]:
    """Which source frame (index into ``times``) each output frame shows; pure, for tests and dry runs.

    Args:
        times: source frame timestamps in seconds (relative to the container start), presentation order.
            Give the frames up to at least one frame past ``end_sec``: ffmpeg may keep one there.
        src_rate: the source's frame rate as ffmpeg guesses it (frames/s).
        start_sec, end_sec: ``-ss start_sec -t (end_sec - start_sec)`` (``end_sec=None``: no ``-t``).
        fps: output frame rate.
        single_stream: the source has no stream besides the video (ffmpeg "vscfr").
        has_audio: the source has an audio stream (default: ``not single_stream``).
        time_base: the stream's time base (default: the finest that holds ``times`` and the cut exactly).
        durations: each frame's packet duration in seconds (default: unknown, as ffmpeg treats 0).

    Returns:
        list of length n_out; element k-1 is the source index shown by output file k.
    """
    rel = [to_fraction(t) for t in times]
    start = to_fraction(start_sec)
    if time_base is None:
        den = math.lcm(*(t.denominator for t in rel), start.denominator, AV_TIME_BASE)
        time_base = Fraction(1, den)
    selector = FfmpegFrameSelector(
        time_base=time_base,
        src_rate=to_fraction(src_rate),
        start_sec=start,
        duration_sec=None if end_sec is None else to_fraction(end_sec) - start,
        out_fps=to_fraction(fps),
        single_stream=single_stream,
        has_audio=has_audio,
    )
    out: list[int] = []
    for i, t in enumerate(rel):
        dur = 0 if durations is None else round(to_fraction(durations[i]) / time_base)
        out.extend(selector.push(i, round(t / time_base), dur))
        if selector.ended:
            break
    out.extend(selector.flush())
    return out


def to_fraction(x: Fraction | float | int | str) -> Fraction:
    """Exact rational for a number given in decimal (0.1 -> 1/10, not the binary float's value)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float):
        return Fraction(repr(x))
    return Fraction(x)
