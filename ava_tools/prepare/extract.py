"""Extract 30 fps JPEG frames from cut AVA videos: the real ffmpeg, or PyAV with ffmpeg 5.1's frame choice.

Resumable, one folder per video, atomic per video."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

from ava_tools.atomic import write_bytes_atomic
from ava_tools.prepare.ffmpeg import FfmpegBinary, find_ffmpeg, run_pyslowfast_commands
from ava_tools.prepare.framechoice import (
    AVA_END_SEC,
    AVA_START_SEC,
    FfmpegFrameSelector,
    probe_timing,
    to_fraction,
)
from ava_tools.prepare.framelists import DONE_MARKER, read_marker, write_frame_list
from ava_tools.prepare.jpeg import FfmpegJpegWriter
from ava_tools.timeline import frame_file_name
from ava_tools.video_io import VideoDecodeError, open_video

__all__ = [
    "AVA_END_SEC",
    "AVA_START_SEC",
    "BUILTIN_BACKEND",
    "PrepareSummary",
    "VIDEO_SUFFIXES",
    "extract_frames",
    "prepare",
    "video_id_from_path",
]

logger = logging.getLogger(__name__)

_MARKER_VERSION = 2  # 2: ffmpeg 5.1's frame choice, backend and ffmpeg build recorded
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
BUILTIN_BACKEND = "builtin: ffmpeg 5.1 frame choice (PyAV decoding)"


def video_id_from_path(path: str | os.PathLike[str]) -> str:
    """Video id = file name without its extension (as PySlowFast's extraction script does)."""
    video_id = Path(path).stem
    if not video_id or any(ch.isspace() for ch in video_id):
        raise ValueError(
            f"{path}: video id {video_id!r} must be non-empty without whitespace (frame lists are space separated)"
        )
    return video_id


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
    video_path: Path,
    start_sec: float,
    end_sec: float | None,
    fps: float,
    jpeg_quality: int | None,
    ffmpeg: FfmpegBinary | None,
) -> dict[str, object]:
    return {
        "version": _MARKER_VERSION,
        "source": video_path.name,
        **_source_fingerprint(video_path),
        "start_sec": start_sec,
        "end_sec": end_sec,
        "fps": fps,
        # None: ffmpeg's -q:v 1 (PyAV mjpeg or the real ffmpeg); an int: Pillow's JPEG quality
        "jpeg_quality": jpeg_quality,
        "backend": BUILTIN_BACKEND if ffmpeg is None else "ffmpeg",
        "ffmpeg_version": None if ffmpeg is None else ffmpeg.version_line,
        "ffmpeg_build": None if ffmpeg is None else ffmpeg.build_line,
    }


def _our_files(video_dir: Path, video_id: str) -> list[Path]:
    """Our files in a frame folder: ``{video_id}_NNNNNN.jpg`` (not the marker, not foreign files)."""
    pattern = re.compile(rf"^{re.escape(video_id)}_\d{{6}}\.jpg$")
    return [Path(e.path) for e in os.scandir(video_dir) if pattern.match(e.name)]


def _install(tmp_dir: Path, video_dir: Path, video_id: str) -> None:
    """Move a finished extraction (``tmp_dir``, marker inside) to ``video_dir``, replacing our old files.

    When ``video_dir`` holds nothing else, this is one rename of the folder; otherwise (foreign files)
    the frames move one by one and the marker last, so a folder with a marker is always complete.
    """
    if video_dir.is_dir():
        (video_dir / DONE_MARKER).unlink(missing_ok=True)
        for path in _our_files(video_dir, video_id):
            path.unlink()
        if not any(video_dir.iterdir()):
            video_dir.rmdir()
    if not video_dir.exists():
        os.replace(tmp_dir, video_dir)
        return
    for path in _our_files(tmp_dir, video_id):
        os.replace(path, video_dir / path.name)
    os.replace(tmp_dir / DONE_MARKER, video_dir / DONE_MARKER)
    shutil.rmtree(tmp_dir, ignore_errors=True)


def _seek_and_decode(container: av.container.InputContainer, stream: av.video.stream.VideoStream, target_pts: int):  # type: ignore[no-untyped-def]
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


def _pillow_jpeg(frame: av.VideoFrame, quality: int) -> bytes:
    buf = io.BytesIO()
    frame.to_image().save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    return buf.getvalue()


def _extract_builtin(
    video_path: Path,
    out_dir: Path,
    video_id: str,
    *,
    start_sec: float,
    end_sec: float | None,
    fps: float,
    jpeg_quality: int | None,
) -> tuple[int, Fraction | None]:
    """Decode with PyAV, choose frames as ffmpeg 5.1, write JPEGs; returns ``(n_frames, last_source_time)``."""
    start = to_fraction(start_sec)
    container, stream = open_video(video_path)
    with container:
        try:
            timing = probe_timing(container, stream)
        except ValueError as exc:
            raise VideoDecodeError(f"{video_path}: {exc}") from exc
        stream.thread_type = "AUTO"
        selector = FfmpegFrameSelector(
            time_base=timing.time_base,
            src_rate=timing.frame_rate,
            start_sec=start,
            duration_sec=None if end_sec is None else to_fraction(end_sec) - start,
            out_fps=to_fraction(fps),
            single_stream=timing.single_stream,
            has_audio=timing.has_audio,
            container_start=timing.container_start,
        )
        jpeg = FfmpegJpegWriter(qscale=1)
        cache: dict[int, av.VideoFrame] = {}
        jpeg_memo: dict[int, bytes] = {}
        n_out = 0
        last_pts: int | None = None

        def write(sources: list[int]) -> None:
            nonlocal n_out
            for src in sources:
                data = jpeg_memo.get(src)
                if data is None:
                    frame = cache[src]
                    data = jpeg.encode(frame) if jpeg_quality is None else _pillow_jpeg(frame, jpeg_quality)
                    jpeg_memo[src] = data
                (out_dir / frame_file_name(video_id, n_out)).write_bytes(data)
                n_out += 1

        target = int((timing.container_start + start) / timing.time_base) if start > 0 else 0
        index = 0
        for frame in _seek_and_decode(container, stream, target):
            if frame.pts is None:
                raise VideoDecodeError(f"{video_path}: decoded frame {index} has no timestamp")
            if last_pts is not None and frame.pts <= last_pts:
                logger.debug("%s: non-increasing pts at frame %d, skipped", video_path, index)
                continue
            last_pts = frame.pts
            if not selector.keeps(frame.pts):
                selector.push(index, frame.pts)  # records the end of the trim, outputs nothing
                if selector.ended:
                    break
                continue
            cache[index] = frame
            duration = (frame.duration or 0) if timing.packet_durations else 0
            write(selector.push(index, frame.pts, duration))
            live = selector.live_indices() | {index}
            for key in [k for k in cache if k not in live]:
                del cache[key]
                jpeg_memo.pop(key, None)
            index += 1
        write(selector.flush())
        last_time = None if last_pts is None else last_pts * timing.time_base - timing.container_start
    return n_out, last_time


def _extract(
    video_path: Path,
    frame_root: Path,
    video_id: str,
    *,
    start_sec: float,
    end_sec: float | None,
    fps: float,
    jpeg_quality: int | None,
    overwrite: bool,
    ffmpeg: FfmpegBinary | None = None,
    strict: bool = False,
) -> tuple[int, bool, list[str]]:
    """Implementation of :func:`extract_frames`; returns ``(n_frames, skipped, warnings)``."""
    video_path = Path(video_path)
    frame_root = Path(frame_root)
    video_dir = frame_root / video_id
    if not video_path.is_file():
        raise VideoDecodeError(f"{video_path}: no such file")
    expected = _marker_expected(video_path, start_sec, end_sec, fps, jpeg_quality, ffmpeg)
    marker = read_marker(video_dir)
    if not overwrite and marker is not None and {k: marker.get(k) for k in expected} == expected:
        noted = marker.get("warnings")
        return int(marker["n_frames"]), True, [str(w) for w in noted] if isinstance(noted, list) else []  # type: ignore[call-overload]
    start = to_fraction(start_sec)
    duration = None if end_sec is None else to_fraction(end_sec) - start
    if duration is not None and duration <= 0:
        raise ValueError(f"{video_path}: end_sec={end_sec} must be greater than start_sec={start_sec}")
    frame_root.mkdir(parents=True, exist_ok=True)
    # everything is written into a temporary folder next to the final one, then moved in place
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{video_id}.", suffix=".tmp", dir=frame_root))
    try:
        last_time: Fraction | None = None
        if ffmpeg is not None:
            n_out = run_pyslowfast_commands(
                ffmpeg, video_path, tmp_dir, video_id, start_sec=start_sec, end_sec=end_sec, fps=fps
            )
        else:
            n_out, last_time = _extract_builtin(
                video_path,
                tmp_dir,
                video_id,
                start_sec=start_sec,
                end_sec=end_sec,
                fps=fps,
                jpeg_quality=jpeg_quality,
            )
        if n_out == 0:
            raise VideoDecodeError(f"{video_path}: no decodable frames in [{start_sec}, {end_sec}) s")
        warnings: list[str] = []
        if duration is not None:
            wanted = math.ceil(duration * to_fraction(fps))
            if n_out < wanted - 1:
                ends = "" if last_time is None else f"frames end at {float(last_time):.3f} s, "
                message = f"too short: {ends}{n_out} of {wanted} frames for [{start_sec}, {end_sec}) s"
                if strict:
                    raise VideoDecodeError(f"{video_path}: {message}")
                warnings.append(f"{message}; kept the {n_out} frames that exist (as ffmpeg does)")
        marker_data = {**expected, "n_frames": n_out, "warnings": warnings}
        write_bytes_atomic(json.dumps(marker_data, indent=1).encode(), tmp_dir / DONE_MARKER)
        _install(tmp_dir, video_dir, video_id)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return n_out, False, warnings


def extract_frames(
    video_path: str | os.PathLike[str],
    frame_root: str | os.PathLike[str],
    video_id: str,
    *,
    start_sec: float = AVA_START_SEC,
    end_sec: float | None = AVA_END_SEC,
    fps: float = 30.0,
    jpeg_quality: int | None = None,
    overwrite: bool = False,
    ffmpeg: FfmpegBinary | None = None,
    strict: bool = False,
) -> int:
    """Cut ``[start_sec, end_sec)`` of a video and write its frames at ``fps`` as JPEGs.

    Writes ``frame_root/{video_id}/{video_id}_{k:06d}.jpg`` for k = 1..n and a done marker, atomically per
    video: all files go to a temporary folder in ``frame_root`` first and are moved in place at the end, so
    a failed or interrupted video leaves no frames behind. Frames are those of PySlowFast's two ffmpeg
    commands: run by the real ``ffmpeg`` when one is given, else chosen as ffmpeg 5.1 does (see
    :mod:`ava_tools.prepare.framechoice`) and written as ffmpeg's ``-q:v 1`` JPEGs
    (:mod:`ava_tools.prepare.jpeg`). A folder whose marker matches the source file and parameters is
    skipped unless ``overwrite``.

    Args:
        video_path: source video.
        frame_root: root folder of all videos' frame folders.
        video_id: folder name and file prefix (no whitespace).
        start_sec, end_sec: cut in seconds of the source (``end_sec=None``: to the end of the video).
        fps: output frame rate.
        jpeg_quality: None: ffmpeg's ``-q:v 1`` JPEGs; an int: Pillow JPEGs of that quality (built-in only).
        overwrite: redo even if a matching done marker exists.
        ffmpeg: run this ffmpeg binary (:func:`ava_tools.prepare.ffmpeg.find_ffmpeg`); None: built-in.
        strict: a video ending more than one output frame before ``end_sec`` is an error (default: keep the
            frames that exist, as ffmpeg does, with a warning in the marker).

    Returns:
        number of frames written (or found, when skipped).

    Raises:
        VideoDecodeError: unreadable file, no video stream, no frames in the cut, ffmpeg failed, or (with
            ``strict``) a video shorter than the cut.
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
        ffmpeg=ffmpeg,
        strict=strict,
    )[0]


@dataclass
class PrepareSummary:
    """Outcome of :func:`prepare`.

    Attributes:
        frames: video id -> number of frames, for every video that is ready (extracted or skipped).
        skipped: ids of videos already complete (no work done).
        failed: video path -> reason, for videos that could not be prepared.
        warnings: video id -> warnings of a ready video (e.g. shorter than the cut).
        frame_list: the frame list written (ready videos only, input order), or None if none was ready.
        backend: which frames and JPEGs: the built-in rule, or the ffmpeg binary's version and path.
        ffmpeg_build: the ffmpeg binary's build lines (None for the built-in backend).
    """

    frames: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    frame_list: Path | None = None
    backend: str = BUILTIN_BACKEND
    ffmpeg_build: str | None = None

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def describe(self) -> str:
        """Human-readable multi-line summary (each failure and warning once)."""
        lines = [
            f"prepared {len(self.frames)} video(s) ({len(self.skipped)} already done), "
            f"{sum(self.frames.values())} frames; {len(self.failed)} failed; "
            f"{len(self.warnings)} with warnings",
            f"backend: {self.backend}",
        ]
        if self.ffmpeg_build:
            lines.append(f"ffmpeg build: {self.ffmpeg_build}")
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failed.items()]
        lines += [f"  WARNING {vid}: {w}" for vid, ws in self.warnings.items() for w in ws]
        if self.frame_list is not None:
            lines.append(f"frame list: {self.frame_list}")
        return "\n".join(lines)


_JobResult = tuple[str, int | None, bool, str | None, list[str]]


def _extract_job(job: tuple[str, str, str, dict[str, object]]) -> _JobResult:
    """Worker: ``(video_id, n_frames or None, skipped, error or None, warnings)``; decode errors are returned."""
    video_path, frame_root, video_id, kwargs = job
    try:
        n, skipped, warnings = _extract(Path(video_path), Path(frame_root), video_id, **kwargs)  # type: ignore[arg-type]
    except (VideoDecodeError, av.FFmpegError, OSError) as exc:
        return video_id, None, False, f"{type(exc).__name__}: {exc}", []
    return video_id, n, skipped, None, warnings


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
    jpeg_quality: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    ffmpeg: str | FfmpegBinary | None = None,
    strict: bool = False,
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
        start_sec, end_sec, fps, jpeg_quality, overwrite, strict: as in :func:`extract_frames`.
        progress: show a tqdm bar.
        ffmpeg: ``"auto"`` (an ffmpeg on PATH or from imageio-ffmpeg, else built-in), ``"none"`` or None
            (built-in), a path, or a :class:`~ava_tools.prepare.ffmpeg.FfmpegBinary`.

    Raises:
        UserError: ``ffmpeg`` names a file that is not a working ffmpeg.
    """
    binary = find_ffmpeg(ffmpeg) if isinstance(ffmpeg, str) else ffmpeg
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
        "ffmpeg": binary,
        "strict": strict,
    }
    jobs = [(str(p), str(frame_root), vid, kwargs) for p, vid in zip(paths, ids, strict=True)]
    summary = PrepareSummary()
    if binary is not None:
        summary.backend, summary.ffmpeg_build = binary.describe(), binary.build_line
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress)
    results: dict[str, _JobResult] = {}
    if workers > 0 and len(jobs) > 1:
        # spawned, not forked: a fork inherits the parent's native thread pools (OpenBLAS, FFmpeg) mid-state, and
        # forked workers were seen to produce different bytes from the same input on a loaded machine
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
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
        _, n, skipped, error, warnings = results[vid]
        if error is not None or n is None:
            summary.failed[str(path)] = error or "unknown error"  # printed once, by the summary
            continue
        summary.frames[vid] = n
        if warnings:
            summary.warnings[vid] = warnings
        if skipped:
            summary.skipped.append(vid)
    if frame_list_csv is not None and summary.frames:
        summary.frame_list = write_frame_list(frame_root, list(summary.frames), frame_list_csv)
    return summary
