"""Prepare AVA videos the PySlowFast way: cut to [900 s, 1801 s) and extract JPEG frames at 30 fps.

Layout written (PySlowFast's ``DATASET.md``)::

    FRAMES/{video_id}/{video_id}_000001.jpg, _000002.jpg, ...   (numbered from 1)
    FRAME_LIST.csv    "original_vido_id video_id frame_id path labels", space separated

Timeline convention, used end to end: output frame file k (1-based) shows source time
``start_sec + (k - 1) / fps``; its 0-based index in the frame list is ``k - 1``; PySlowFast maps keyframe
second ``s`` to 0-based index ``(s - 900) * 30``, i.e. file ``(s - 900) * 30 + 1``.

Which source frame fills output frame k
---------------------------------------
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

Resuming: each finished video folder gets a marker file (written last) that records the source's
size, a hash of its first and last MiB, and the parameters; a rerun skips folders whose marker
matches and redoes the others.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
from tqdm import tqdm

from ava_tools.atomic import write_bytes_atomic, write_csv_atomic
from ava_tools.cli import add_common_arguments, run_cli
from ava_tools.video_io import VideoDecodeError, open_video

__all__ = [
    "AVA_END_SEC",
    "AVA_START_SEC",
    "DONE_MARKER",
    "FRAME_LIST_COLUMNS",
    "FfmpegFrameSelector",
    "PrepareSummary",
    "VideoDecodeError",
    "extract_frames",
    "frame_file_name",
    "get_args_parser",
    "main",
    "prepare",
    "select_source_frames",
    "video_id_from_path",
    "write_frame_list",
]

logger = logging.getLogger(__name__)

AVA_START_SEC = 900.0
AVA_END_SEC = 1801.0
FRAME_LIST_COLUMNS = ("original_vido_id", "video_id", "frame_id", "path", "labels")
DONE_MARKER = ".prepare_done.json"
_MARKER_VERSION = 1
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def frame_file_name(video_id: str, frame_index: int) -> str:
    """File name of 0-based output frame ``frame_index``: ``{video_id}_{frame_index + 1:06d}.jpg``."""
    return f"{video_id}_{frame_index + 1:06d}.jpg"


def video_id_from_path(path: str | os.PathLike[str]) -> str:
    """Video id = file name without its extension (as PySlowFast's extraction script does)."""
    video_id = Path(path).stem
    if not video_id or any(ch.isspace() for ch in video_id):
        raise ValueError(
            f"{path}: video id {video_id!r} must be non-empty without whitespace "
            "(frame lists are space separated)"
        )
    return video_id


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
    start = _to_fraction(start_sec)
    selector = FfmpegFrameSelector(
        src_rate=_to_fraction(src_rate),
        out_fps=_to_fraction(fps),
        duration=None if end_sec is None else _to_fraction(end_sec) - start,
        single_stream=single_stream,
    )
    out: list[int] = []
    for i, t in enumerate(times):
        out.extend(selector.push(i, _to_fraction(t) - start))
    out.extend(selector.flush())
    return out


def _to_fraction(x: Fraction | float | int | str) -> Fraction:
    """Exact rational for a number given in decimal (0.1 -> 1/10, not the binary float's value)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float):
        return Fraction(repr(x))
    return Fraction(x)


# --------------------------------------------------------------------------------------------------------
# Frame extraction
# --------------------------------------------------------------------------------------------------------


def _source_fingerprint(video_path: Path) -> dict[str, object]:
    """Size + SHA-256 of the first and last MiB: cheap for hour-long videos, and (unlike an mtime) the
    same for a byte-identical file written again, so markers are reproducible."""
    size = video_path.stat().st_size
    digest = hashlib.sha256()
    with open(video_path, "rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
        digest.update(f.read(1 << 20))
    return {"size": size, "head_tail_sha256": digest.hexdigest()}


def _marker_expected(
    video_path: Path, start_sec: float, end_sec: float | None, fps: float, jpeg_quality: int
) -> dict[str, object]:
    return {
        "version": _MARKER_VERSION,
        "source": video_path.name,
        **_source_fingerprint(video_path),
        "start_sec": start_sec,
        "end_sec": end_sec,
        "fps": fps,
        "jpeg_quality": jpeg_quality,
    }


def _read_marker(video_dir: Path) -> dict[str, object] | None:
    marker = video_dir / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except json.JSONDecodeError:
        logger.warning("%s: unreadable marker, redoing the video", marker)
        return None
    return data if isinstance(data, dict) else None


def _clear_video_dir(video_dir: Path, video_id: str) -> None:
    """Remove a partial extraction (only our own files: the marker and ``{video_id}_NNNNNN.jpg``)."""
    pattern = re.compile(rf"^{re.escape(video_id)}_\d{{6}}\.jpg$")
    (video_dir / DONE_MARKER).unlink(missing_ok=True)
    for entry in os.scandir(video_dir):
        if pattern.match(entry.name):
            os.unlink(entry.path)


def _seek_and_decode(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, target_pts: int
):  # type: ignore[no-untyped-def]
    """Decode from the keyframe at or before ``target_pts`` (from the file start if the seek overshoots)."""
    if target_pts > 0:
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None or first.pts is None or first.pts <= target_pts:
            if first is not None:
                yield first
            yield from frames
            return
        logger.info("seek overshot (landed at pts %s > %s), decoding from the start", first.pts, target_pts)
        container.seek(0, stream=stream, backward=True, any_frame=False)
    yield from container.decode(stream)


def _extract(
    video_path: Path,
    frame_root: Path,
    video_id: str,
    *,
    start_sec: float,
    end_sec: float | None,
    fps: float,
    jpeg_quality: int,
    overwrite: bool,
) -> tuple[int, bool]:
    """Implementation of :func:`extract_frames`; returns ``(n_frames, skipped)``."""
    video_path = Path(video_path)
    video_dir = Path(frame_root) / video_id
    if not video_path.is_file():
        raise VideoDecodeError(f"{video_path}: no such file")
    expected = _marker_expected(video_path, start_sec, end_sec, fps, jpeg_quality)
    marker = _read_marker(video_dir)
    if not overwrite and marker is not None and {k: marker.get(k) for k in expected} == expected:
        return int(marker["n_frames"]), True  # type: ignore[call-overload]
    start = _to_fraction(start_sec)
    duration = None if end_sec is None else _to_fraction(end_sec) - start
    if duration is not None and duration <= 0:
        raise ValueError(f"{video_path}: end_sec={end_sec} must be greater than start_sec={start_sec}")
    video_dir.mkdir(parents=True, exist_ok=True)
    _clear_video_dir(video_dir, video_id)
    container, stream = open_video(video_path)
    with container:
        src_rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        if not src_rate:
            raise VideoDecodeError(f"{video_path}: video stream has no frame rate")
        stream.thread_type = "AUTO"
        t0 = Fraction(container.start_time or 0, av.time_base)
        time_base = stream.time_base
        if time_base is None:
            raise VideoDecodeError(f"{video_path}: video stream has no time base")
        selector = FfmpegFrameSelector(
            src_rate=Fraction(src_rate),
            out_fps=_to_fraction(fps),
            duration=duration,
            single_stream=len(container.streams) == 1,
        )
        cache: dict[int, av.VideoFrame] = {}
        jpeg_memo: dict[int, bytes] = {}
        n_out = 0
        last_time: Fraction | None = None

        def write(sources: list[int]) -> None:
            nonlocal n_out
            for src in sources:
                data = jpeg_memo.get(src)
                if data is None:
                    buf = io.BytesIO()
                    cache[src].to_image().save(buf, format="JPEG", quality=jpeg_quality, subsampling="4:2:0")
                    data = jpeg_memo[src] = buf.getvalue()
                (video_dir / frame_file_name(video_id, n_out)).write_bytes(data)
                n_out += 1

        target = int((t0 + start) / time_base) if start > 0 else 0
        index = 0
        for frame in _seek_and_decode(container, stream, target):
            if frame.pts is None:
                raise VideoDecodeError(f"{video_path}: decoded frame {index} has no timestamp")
            rel = Fraction(frame.pts) * time_base - t0 - start
            if last_time is not None and rel <= last_time:
                logger.debug("%s: non-increasing pts at frame %d, skipped", video_path, index)
                continue
            if duration is not None and rel >= duration:
                break
            last_time = rel
            if not selector.accepts(rel):
                continue
            cache[index] = frame
            write(selector.push(index, rel))
            live = selector.live_indices() | {index}
            for key in [k for k in cache if k not in live]:
                del cache[key]
                jpeg_memo.pop(key, None)
            index += 1
        write(selector.flush())

    if n_out == 0:
        raise VideoDecodeError(f"{video_path}: no decodable frames in [{start_sec}, {end_sec}) s")
    if duration is not None:
        wanted = math.ceil(duration * _to_fraction(fps))
        if n_out < wanted - 1:
            ends = float(start + (last_time or 0))
            raise VideoDecodeError(
                f"{video_path}: too short: frames end at {ends:.3f} s, {n_out} of {wanted} frames for "
                f"[{start_sec}, {end_sec}) s"
            )
    write_bytes_atomic(json.dumps({**expected, "n_frames": n_out}, indent=1).encode(), video_dir / DONE_MARKER)
    return n_out, False


def extract_frames(
    video_path: str | os.PathLike[str],
    frame_root: str | os.PathLike[str],
    video_id: str,
    *,
    start_sec: float = AVA_START_SEC,
    end_sec: float | None = AVA_END_SEC,
    fps: float = 30.0,
    jpeg_quality: int = 95,
    overwrite: bool = False,
) -> int:
    """Cut ``[start_sec, end_sec)`` of a video and write its frames at ``fps`` as JPEGs.

    Writes ``frame_root/{video_id}/{video_id}_{k:06d}.jpg`` for k = 1..n, where file k shows source time
    ``start_sec + (k-1)/fps`` (frame choice as ffmpeg's, see the module docstring), then a done marker.
    A folder whose marker matches the source file and parameters is skipped unless ``overwrite``;
    a folder without one (interrupted run) is cleared and redone.

    Args:
        video_path: source video.
        frame_root: root folder of all videos' frame folders.
        video_id: folder name and file prefix (no whitespace).
        start_sec, end_sec: cut in seconds of the source (``end_sec=None``: to the end of the video).
        fps: output frame rate.
        jpeg_quality: Pillow JPEG quality (1-95 sensible; 95 is near ffmpeg ``-q:v 1``).
        overwrite: redo even if a matching done marker exists.

    Returns:
        number of frames written (or found, when skipped).

    Raises:
        VideoDecodeError: unreadable file, no video stream, no frames in the cut, or a video ending more
            than one output frame before ``end_sec``.
    """
    return _extract(
        Path(video_path),
        Path(frame_root),
        video_id,
        start_sec=start_sec,
        end_sec=end_sec,
        fps=fps,
        jpeg_quality=jpeg_quality,
        overwrite=overwrite,
    )[0]


def write_frame_list(
    frame_root: str | os.PathLike[str], video_ids: Sequence[str], out_csv: str | os.PathLike[str]
) -> Path:
    """Write a PySlowFast frame list for the extracted frames of ``video_ids`` (in this order).

    Format (space separated, one header line)::

        original_vido_id video_id frame_id path labels
        VID 0 0 VID/VID_000001.jpg ""

    ``video_id`` is the position in ``video_ids``, ``frame_id`` the 0-based frame index, ``path`` is
    relative to ``frame_root``, labels are empty (``""``). Frames are found on disk and must be numbered
    1..n without gaps (and match the done marker's count where there is one).

    Raises:
        FileNotFoundError: a video's folder is missing or holds no frames.
        ValueError: a gap in the numbering, a count different from the marker, or a bad video id.
    """
    frame_root = Path(frame_root)
    out_csv = Path(out_csv)
    if len(set(video_ids)) != len(video_ids):
        raise ValueError(f"{out_csv}: duplicate video ids in {list(video_ids)}")
    columns: dict[str, list[object]] = {name: [] for name in FRAME_LIST_COLUMNS}
    for idx, vid in enumerate(video_ids):
        if not vid or any(ch.isspace() for ch in vid):
            raise ValueError(f"{out_csv}: video id {vid!r} must be non-empty without whitespace")
        video_dir = frame_root / vid
        if not video_dir.is_dir():
            raise FileNotFoundError(f"{video_dir}: no frame folder for video {vid!r}")
        pattern = re.compile(rf"^{re.escape(vid)}_(\d{{6}})\.jpg$")
        numbers = sorted(int(m.group(1)) for e in os.scandir(video_dir) if (m := pattern.match(e.name)))
        if not numbers:
            raise FileNotFoundError(f"{video_dir}: no frames named {vid}_NNNNNN.jpg")
        if numbers != list(range(1, len(numbers) + 1)):
            missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
            raise ValueError(
                f"{video_dir}: frame numbers must run 1..{numbers[-1]} without gaps; missing {missing[:5]}"
            )
        marker = _read_marker(video_dir)
        if marker is not None and marker.get("n_frames") != len(numbers):
            raise ValueError(
                f"{video_dir}: {len(numbers)} frames on disk but the done marker says "
                f"{marker.get('n_frames')}"
            )
        n = len(numbers)
        columns["original_vido_id"].extend([vid] * n)
        columns["video_id"].extend([idx] * n)
        columns["frame_id"].extend(range(n))
        columns["path"].extend(f"{vid}/{frame_file_name(vid, k)}" for k in range(n))
        columns["labels"].extend(['""'] * n)
    frame = pd.DataFrame(columns, columns=list(FRAME_LIST_COLUMNS))
    write_csv_atomic(frame, out_csv, sep=" ", quoting=csv.QUOTE_NONE)
    return out_csv


# --------------------------------------------------------------------------------------------------------
# Many videos
# --------------------------------------------------------------------------------------------------------


@dataclass
class PrepareSummary:
    """Outcome of :func:`prepare`.

    Attributes:
        frames: video id -> number of frames, for every video that is ready (extracted or skipped).
        skipped: ids of videos already complete (no work done).
        failed: video path -> reason, for videos that could not be prepared.
        frame_list: the frame list written (ready videos only, input order), or None if none was ready.
    """

    frames: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frame_list: Path | None = None

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def describe(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"prepared {len(self.frames)} video(s) ({len(self.skipped)} already done), "
            f"{sum(self.frames.values())} frames; {len(self.failed)} failed"
        ]
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failed.items()]
        if self.frame_list is not None:
            lines.append(f"frame list: {self.frame_list}")
        return "\n".join(lines)


def _extract_job(job: tuple[str, str, str, dict[str, object]]) -> tuple[str, int | None, bool, str | None]:
    """Worker: ``(video_id, n_frames or None, skipped, error or None)``; decode errors are returned."""
    video_path, frame_root, video_id, kwargs = job
    try:
        n, skipped = _extract(Path(video_path), Path(frame_root), video_id, **kwargs)  # type: ignore[arg-type]
    except (VideoDecodeError, av.FFmpegError, OSError) as exc:
        return video_id, None, False, f"{type(exc).__name__}: {exc}"
    return video_id, n, skipped, None


def _expand_videos(videos: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders expand to their video files (sorted)."""
    out: list[Path] = []
    for v in videos:
        p = Path(v)
        if p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES))
        else:
            out.append(p)
    return out


def prepare(
    videos: Iterable[str | os.PathLike[str]],
    frame_root: str | os.PathLike[str],
    frame_list_csv: str | os.PathLike[str] | None,
    *,
    workers: int = 0,
    start_sec: float = AVA_START_SEC,
    end_sec: float | None = AVA_END_SEC,
    fps: float = 30.0,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Extract frames of many videos (see :func:`extract_frames`) and write their frame list.

    A video that fails (unreadable, no video stream, corrupt, too short) is reported in the summary and
    the others go on. Video ids are the file names without extension; folders in ``videos`` expand to
    the video files inside them.

    Args:
        videos: video files or folders.
        frame_root: output root of the frame folders.
        frame_list_csv: frame list to write for the videos that are ready (None: don't write one).
        workers: 0 = in this process; N > 0 = N worker processes.
        start_sec, end_sec, fps, jpeg_quality, overwrite: as in :func:`extract_frames`.
        progress: show a tqdm bar.
    """
    paths = _expand_videos(videos)
    ids = [video_id_from_path(p) for p in paths]
    dupes = sorted({v for v in ids if ids.count(v) > 1})
    if dupes:
        raise ValueError(f"several input videos map to the same video id: {dupes}")
    kwargs: dict[str, object] = {
        "start_sec": start_sec,
        "end_sec": end_sec,
        "fps": fps,
        "jpeg_quality": jpeg_quality,
        "overwrite": overwrite,
    }
    jobs = [(str(p), str(frame_root), vid, kwargs) for p, vid in zip(paths, ids, strict=True)]
    summary = PrepareSummary()
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress)
    results: dict[str, tuple[str, int | None, bool, str | None]] = {}
    if workers > 0 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in pool.map(_extract_job, jobs):
                results[res[0]] = res
                bar.update()
    else:
        for job in jobs:
            res = _extract_job(job)
            results[res[0]] = res
            bar.update()
    bar.close()
    for path, vid in zip(paths, ids, strict=True):
        _, n, skipped, error = results[vid]
        if error is not None or n is None:
            summary.failed[str(path)] = error or "unknown error"
            logger.error("%s: %s", path, error)
            continue
        summary.frames[vid] = n
        if skipped:
            summary.skipped.append(vid)
    if frame_list_csv is not None and summary.frames:
        summary.frame_list = write_frame_list(frame_root, list(summary.frames), frame_list_csv)
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m ava_tools.prepare``."""
    p = argparse.ArgumentParser(
        description="Cut AVA videos to [900, 1801) s, extract 30 fps JPEGs, write a PySlowFast frame list."
    )
    add_common_arguments(p)
    p.add_argument("videos", nargs="+", help="video files or folders of videos")
    p.add_argument("--frames", required=True, type=Path, help="output root: FRAMES/{vid}/{vid}_%%06d.jpg")
    p.add_argument("--frame-list", required=True, type=Path, help="frame list CSV to write (e.g. train.csv)")
    p.add_argument(
        "--start-sec", type=float, default=AVA_START_SEC, help="cut start in seconds (default 900)"
    )
    p.add_argument(
        "--end-sec", type=float, default=AVA_END_SEC, help="cut end in seconds, exclusive (default 1801)"
    )
    p.add_argument("--fps", type=float, default=30.0, help="output frame rate (default 30)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="Pillow JPEG quality (default 95)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: none)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(args: argparse.Namespace) -> int:
    """Run the CLI; returns the exit status (1 if any video failed)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = prepare(
        args.videos,
        args.frames,
        args.frame_list,
        workers=args.workers,
        start_sec=args.start_sec,
        end_sec=args.end_sec,
        fps=args.fps,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(summary.describe())
    return 0 if summary.ok else 1


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``ava-prepare``."""
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
