"""Extract 30 fps JPEG frames from cut AVA videos with PyAV, resumable, one folder per video."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

from ava_tools.atomic import write_bytes_atomic
from ava_tools.prepare.framechoice import AVA_END_SEC, AVA_START_SEC, FfmpegFrameSelector, to_fraction
from ava_tools.prepare.framelists import DONE_MARKER, read_marker, write_frame_list
from ava_tools.timeline import frame_file_name
from ava_tools.video_io import VideoDecodeError, open_video

__all__ = [
    "AVA_END_SEC",
    "AVA_START_SEC",
    "PrepareSummary",
    "VIDEO_SUFFIXES",
    "extract_frames",
    "prepare",
    "video_id_from_path",
]

logger = logging.getLogger(__name__)

_MARKER_VERSION = 1
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def video_id_from_path(path: str | os.PathLike[str]) -> str:
    """Video id = file name without its extension (as PySlowFast's extraction script does)."""
    video_id = Path(path).stem
    if not video_id or any(ch.isspace() for ch in video_id):
        raise ValueError(
            f"{path}: video id {video_id!r} must be non-empty without whitespace "
            "(frame lists are space separated)"
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
    marker = read_marker(video_dir)
    if not overwrite and marker is not None and {k: marker.get(k) for k in expected} == expected:
        return int(marker["n_frames"]), True  # type: ignore[call-overload]
    start = to_fraction(start_sec)
    duration = None if end_sec is None else to_fraction(end_sec) - start
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
            out_fps=to_fraction(fps),
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
        wanted = math.ceil(duration * to_fraction(fps))
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
