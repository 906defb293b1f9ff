"""Which source frame fills each extracted frame: ffmpeg's frame choice, from timestamps alone.

PySlowFast prepares AVA with two ffmpeg commands::

    ffmpeg -ss 900 -t 901 -i SRC cut.mp4               # re-encode, accurate seek
    ffmpeg -i cut.mp4 -r 30 -q:v 1 OUT/%06d.jpg        # constant frame rate conversion

There is no ffmpeg binary here, so :class:`FfmpegFrameSelector` reproduces the frame choice of those
commands from the timestamps alone (the arithmetic of ffmpeg 4.x ``do_video_out``, which later
versions keep):

1. *Trim.* Source frames with ``start <= pts - container_start < end`` are kept (``-ss``/``-t`` as input
   options cut on decoded timestamps, so the cut is frame-accurate); times are taken relative to ``start``.
2. *Pass 1* re-times them onto the source's own constant rate (``cut.mp4``), and *pass 2* onto ``fps``.
   Each pass is ffmpeg's CFR sync in output-frame units: with ``delta0 = pts - next_slot`` and
   ``delta = delta0 + duration``, a frame is dropped if ``delta < -1.1``; emitted ``lrintf(delta)`` times if
   ``delta > 1.1`` (the first ``lrintf(delta0 - 0.6)`` of them repeat the previous frame when
   ``delta0 > 1.1``); else emitted once. ``duration`` is the frame's length in output frames rounded,
   ``lrintf(fps / src_rate)`` (1 in pass 1), or the unrounded ratio when that rounds to 0.
   A file with a single stream (no audio) uses ffmpeg's "vscfr" variant: the first frame is not
   duplicated to fill a gap before it. At the end, ffmpeg repeats the last frame
   ``median(last three repeat counts)`` times.

What this means in practice (constant-rate sources). It is neither "nearest pts" nor "last at or
before" in general:

* 30 fps, ``start`` on a frame boundary: identity, output frame k is the source frame at
  ``start + (k-1)/30``.
* 25 and 24 fps, ``start`` on a frame boundary: the source frame *nearest* to ``start + (k-1)/30``, an
  exact tie going to the *later* frame (25 fps: slots 0..5 show frames 0, 1, 2, 3, 3, 4, then repeat
  +5 frames per 6 slots).
* 15 fps: each frame held for two slots (last frame at or before the slot time).
* Above 30 fps ffmpeg's -1.1 drop threshold lags: 60 fps gives frames 0, 1, 2, 3, then slot n shows
  frame 2n - 3 (1.5 slots late). 20 fps holds frames for 2 slots at times up to half a frame late.
* A ``start`` between two source frames (29.97 fps at 900 s, say): pass 1 snaps the first kept frame
  to time 0 of the cut, so frames shift by up to one source frame against their true times.

Not modelled: variable-frame-rate timing (nominal frame durations are used), the audio stream, and the
decoder and colour conversion of a particular ffmpeg build (PySlowFast issue #112: a different ffmpeg
build changed mAP). JPEGs are written by Pillow (quality ``jpeg_quality``, 4:2:0 chroma like ffmpeg's
mjpeg), not by ffmpeg's mjpeg encoder at ``-q:v 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ava_tools import timeline

__all__ = ["AVA_END_SEC", "AVA_START_SEC", "FfmpegFrameSelector", "select_source_frames", "to_fraction"]

AVA_START_SEC = float(timeline.AVA_START_SEC)  # the default cut, as floats (the done markers record floats)
AVA_END_SEC = float(timeline.AVA_END_SEC)


def _lrintf(x: float) -> int:
    """C ``lrintf``: convert to single precision, round to nearest, ties to even."""
    return round(float(np.float32(x)))


class _CfrSync:
    """ffmpeg's constant-frame-rate sync for one encode (``do_video_out``), in output-frame units."""

    def __init__(self, *, duration: float, vscfr: bool) -> None:
        self.duration = duration
        self.vscfr = vscfr
        self.next_pts = 0  # ffmpeg's ost->sync_opts: pts of the next output frame
        self.frame_number = 0
        self.last_nb0 = [0, 0, 0]

    def push(self, sync_ipts: float) -> tuple[int, int, int]:
        """Feed one input frame at ``sync_ipts`` (output-frame units).

        Returns ``(nb0, nb, first_pts)``: emit ``nb`` output frames with pts ``first_pts, first_pts+1, ...``;
        the first ``nb0`` of them repeat the previous input frame, the rest show this one.
        """
        duration = self.duration
        delta0 = sync_ipts - self.next_pts
        delta = delta0 + duration
        nb0, nb = 0, 1
        if delta0 < 0 < delta:  # frame starts in the past: clip it ("Cliping frame in rate conversion")
            cor = min(-delta0, duration)
            sync_ipts += cor
            duration -= cor
            delta0 += cor
        if self.vscfr and self.frame_number == 0 and delta - duration >= 0.5:
            # "Not duplicating initial frames": start the output where the first frame is.
            delta, delta0 = duration, 0.0
            self.next_pts = round(sync_ipts)
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


def _pass_duration(ratio: Fraction) -> float:
    """ffmpeg's per-frame ``duration`` in output frames for an input at ``out_rate / ratio`` fps."""
    duration = min(float(ratio), 1.0)  # 1/(in_rate*tb) capped at one output frame
    rounded = _lrintf(float(ratio))  # packet duration in output time base, used when > 0
    return float(rounded) if rounded > 0 else duration


class FfmpegFrameSelector:
    """Streaming emulation of ``ffmpeg -ss S -t D -i SRC cut.mp4; ffmpeg -i cut.mp4 -r FPS %06d.jpg``.

    Push source frames in decode order with their time relative to the cut start; each call returns the
    source indices of the output frames completed so far (output frame order). See the module docstring.

    Args:
        src_rate: the source's nominal frame rate (ffmpeg's guessed rate), frames per second.
        out_fps: output frame rate (30 for AVA).
        duration: cut length in seconds (``end - start``); ``None`` keeps everything after the start.
        single_stream: the source file has only one stream (then ffmpeg uses "vscfr" sync).
    """

    def __init__(
        self, *, src_rate: Fraction, out_fps: Fraction, duration: Fraction | None, single_stream: bool
    ) -> None:
        if src_rate <= 0 or out_fps <= 0:
            raise ValueError(f"frame rates must be positive, got src_rate={src_rate} out_fps={out_fps}")
        self.src_rate = Fraction(src_rate)
        self.out_fps = Fraction(out_fps)
        self.duration = duration
        self._pass1 = _CfrSync(duration=1.0, vscfr=single_stream)
        self._pass2 = _CfrSync(duration=_pass_duration(self.out_fps / self.src_rate), vscfr=single_stream)
        self._prev1: int | None = None  # last input of pass 1 (source index)
        self._prev2: int | None = None  # last input of pass 2 (source index)
        self._flushed = False

    def live_indices(self) -> set[int]:
        """Source indices that later outputs may still repeat (the rest can be freed)."""
        return {i for i in (self._prev1, self._prev2) if i is not None}

    def accepts(self, rel_time: Fraction) -> bool:
        """Whether a frame at ``rel_time`` seconds after the cut start survives the trim."""
        return rel_time >= 0 and (self.duration is None or rel_time < self.duration)

    def push(self, index: int, rel_time: Fraction) -> list[int]:
        """Feed source frame ``index`` at ``rel_time`` seconds after the cut start; return output sources."""
        if self._flushed:
            raise RuntimeError("push() after flush()")
        if not self.accepts(rel_time):
            return []
        nb0, nb, first = self._pass1.push(float(rel_time * self.src_rate))
        out: list[int] = []
        for i in range(nb):
            src = self._prev1 if (i < nb0 and self._prev1 is not None) else index
            out.extend(self._push2(src, first + i))
        self._prev1 = index
        return out

    def _push2(self, src: int, pts1: int) -> list[int]:
        nb0, nb, _ = self._pass2.push(float(pts1 * self.out_fps / self.src_rate))
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
) -> list[int]:
    """Which source frame (index into ``times``) each output frame shows; pure, for tests and dry runs.

    Args:
        times: source frame timestamps in seconds (relative to the container start), decode order.
        src_rate: nominal source frame rate (frames/s).
        start_sec, end_sec: the cut ``[start_sec, end_sec)`` in source seconds (``None``: to the end).
        fps: output frame rate.
        single_stream: the source has no stream besides the video (ffmpeg "vscfr").

    Returns:
        list of length n_out; element k-1 is the source index shown by output file k.
    """
    start = to_fraction(start_sec)
    selector = FfmpegFrameSelector(
        src_rate=to_fraction(src_rate),
        out_fps=to_fraction(fps),
        duration=None if end_sec is None else to_fraction(end_sec) - start,
        single_stream=single_stream,
    )
    out: list[int] = []
    for i, t in enumerate(times):
        out.extend(selector.push(i, to_fraction(t) - start))
    out.extend(selector.flush())
    return out


def to_fraction(x: Fraction | float | int | str) -> Fraction:
    """Exact rational for a number given in decimal (0.1 -> 1/10, not the binary float's value)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float):
        return Fraction(repr(x))
    return Fraction(x)
