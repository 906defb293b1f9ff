"""Random access into a video file: list its frame timestamps, decode chosen frames by seeking.

Times are seconds on the clock of :mod:`slowfast_det.video.probe` (``pts * time_base - start_time``), as
:mod:`ava_tools.prepare` measures them. Frames come back as (H, W, 3) BGR uint8 arrays
(OpenCV's layout, what :func:`cv2.imdecode` returns for a JPEG), converted through RGB24 exactly as the
frames that ``ava_tools.prepare`` writes.

Assumption: every video packet decodes to exactly one frame with the packet's pts (true for MP4/MKV/WebM
from ordinary encoders); a frame that does not come out of the decoder is an error naming the file and time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video.stream
import numpy as np

from ava_tools.video_io import open_video
from slowfast_det.video.probe import VideoDecodeError, VideoInfo, probe_video

__all__ = [
    "VideoClipReader",
    "decode_frames_at",
    "decode_frames_by_pts",
    "extraction_timeline",
    "frame_pts",
]

logger = logging.getLogger(__name__)


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int) -> None:
    """Seek to the keyframe at or before ``pts`` (stream time base)."""
    container.seek(int(pts), stream=stream, backward=True, any_frame=False)


def frame_pts(
    path: str | os.PathLike[str], *, start_sec: float | None = None, end_sec: float | None = None
) -> np.ndarray:
    """Sorted pts of the video's frames whose time lies in ``[start_sec, end_sec)`` (packets only, no decode).

    Returns:
        (F,) int64 array of distinct pts in the video stream's time base.
    """
    path = Path(path)
    info = probe_video(path)
    container, stream = open_video(path)
    with container:
        lo = None if start_sec is None else info.time_to_pts(Fraction(repr(float(start_sec))))
        hi = None if end_sec is None else info.time_to_pts(Fraction(repr(float(end_sec))))
        if lo is not None and lo > 0:
            _seek(container, stream, lo)
        # packets arrive in decode order; go on a while past `hi` so reordered (B-frame) pts are all seen
        slack = int(Fraction(2) / info.time_base)
        found: list[int] = []
        for packet in container.demux(stream):
            if packet.pts is None:
                if packet.size == 0:
                    continue  # the demuxer's flush packet
                raise VideoDecodeError(f"{path}: a video packet without pts (unsupported container)")
            if hi is not None and packet.dts is not None and packet.dts > hi + slack:
                break
            found.append(int(packet.pts))
        pts = np.unique(np.asarray(found, dtype=np.int64))
    if lo is not None:
        if pts.size and pts[0] > lo and lo > 0:
            # the seek landed after the start (some containers): list from the beginning instead
            return _frame_pts_from_start(path, lo, hi)
        pts = pts[_times_ge(pts, info, start_sec)]
    if hi is not None:
        pts = pts[~_times_ge(pts, info, end_sec)]
    return pts


def _times_ge(pts: np.ndarray, info: VideoInfo, seconds: float | None) -> np.ndarray:
    """Boolean mask: exact frame time >= seconds (decimal value of ``seconds``)."""
    if seconds is None:
        return np.ones(pts.shape, dtype=bool)
    limit = Fraction(repr(float(seconds)))
    return np.array([info.pts_to_time(int(p)) >= limit for p in pts], dtype=bool)


def _frame_pts_from_start(path: Path, lo: int, hi: int | None) -> np.ndarray:
    container, stream = open_video(path)
    with container:
        found = [int(p.pts) for p in container.demux(stream) if p.pts is not None]
    pts = np.unique(np.asarray(found, dtype=np.int64))
    pts = pts[pts >= lo]
    return pts if hi is None else pts[pts < hi]


def extraction_timeline(
    path: str | os.PathLike[str], *, start_sec: float, end_sec: float | None, fps: float
) -> np.ndarray:
    """Source pts of each frame that ``ava_tools.prepare`` extracts from ``[start_sec, end_sec)`` at ``fps``.

    Element ``i`` is the pts of the source frame shown by extracted frame ``i`` (0-based; file ``i + 1``),
    chosen by :func:`ava_tools.prepare.select_source_frames` (FFmpeg's frame-rate conversion); for a 30 fps
    source cut on a frame boundary, frame ``i`` is simply the source frame at ``start_sec + i / 30``.

    Returns:
        (n,) int64 array of pts (repeated where a source frame fills several output slots).

    Raises:
        VideoDecodeError: no frames in the range.
    """
    from ava_tools.prepare import select_source_frames

    path = Path(path)
    info = probe_video(path)
    # ffmpeg's -t counts from the first frame kept, so the cut may hold a frame past end_sec: list two more
    listed_end = None if end_sec is None else end_sec + 2 / float(info.frame_rate)
    pts = frame_pts(path, start_sec=start_sec, end_sec=listed_end)
    if pts.size == 0:
        raise VideoDecodeError(f"{path}: no frames in [{start_sec}, {end_sec}) s")
    times = [info.pts_to_time(int(p)) for p in pts]
    chosen = select_source_frames(
        times,
        src_rate=info.frame_rate,
        start_sec=start_sec,
        end_sec=end_sec,
        fps=fps,
        single_stream=info.single_stream,
    )
    return pts[np.asarray(chosen, dtype=np.int64)]


def _to_bgr(frame: av.VideoFrame) -> np.ndarray:
    # RGB24 as ava_tools.prepare converts (PIL image of rgb24), then OpenCV's channel order
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24")[:, :, ::-1])


class VideoClipReader:
    """Decodes frames of one video by pts, seeking only when needed.

    Consecutive reads that move forward (clips of successive keyframes) continue the open decoder instead of
    seeking again, and frames of the previous read are reused. Not thread-safe; one per worker.

    Args:
        path: video file.
        max_forward_s: continue decoding (rather than seek) when the next wanted frame lies at most this many
            seconds after the decoder's position.
        decode_threads: FFmpeg decoder threads (0: FFmpeg's choice).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_forward_s: float = 10.0, decode_threads: int = 1
    ) -> None:
        self.path = Path(path)
        self._container, self._stream = open_video(self.path)
        # one thread by default: DataLoader workers already run in parallel, and no decoder threads means
        # nothing to break when a process forks
        self._stream.codec_context.thread_count = decode_threads
        self.info = probe_video(self.path)
        self._max_forward = int(Fraction(repr(float(max_forward_s))) / self.info.time_base)
        self._frames: Iterator[av.VideoFrame] | None = None
        self._position: int | None = None  # pts of the last frame decoded
        self._cache: dict[int, np.ndarray] = {}

    def close(self) -> None:
        """Close the file."""
        self._frames = None
        self._container.close()

    def __enter__(self) -> VideoClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restart(self, target: int) -> None:
        if target > 0:
            _seek(self._container, self._stream, target)
        else:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._frames = iter(self._container.decode(self._stream))
        self._position = None

    def _describe(self, pts: int) -> str:
        return f"{float(self.info.pts_to_time(pts)):.3f} s (pts {pts})"

    def read(self, pts: Sequence[int]) -> list[np.ndarray]:
        """Frames with exactly these pts, in the order given (repeats allowed).

        Returns:
            list of (H, W, 3) BGR uint8 arrays (repeated pts share one array).

        Raises:
            VideoDecodeError: a wanted pts never came out of the decoder.
        """
        wanted = sorted({int(p) for p in pts})
        got = {p: self._cache[p] for p in wanted if p in self._cache}
        missing = [p for p in wanted if p not in got]
        if missing:
            self._decode_into(missing, got)
        self._cache = got
        return [got[int(p)] for p in pts]

    def _decode_into(self, missing: list[int], got: dict[int, np.ndarray]) -> None:
        first, last = missing[0], missing[-1]
        near = self._position is not None and self._position < first <= self._position + self._max_forward
        if self._frames is None or not near:
            self._restart(first)
        todo = set(missing)
        overshoot_checked = self._position is not None
        assert self._frames is not None
        for frame in self._frames:
            if frame.pts is None:
                raise VideoDecodeError(f"{self.path}: decoded a frame without pts")
            pts = int(frame.pts)
            if not overshoot_checked:
                overshoot_checked = True
                if pts > first:
                    # the seek landed after the wanted frame: decode from the start of the file instead
                    self._restart(0)
                    return self._decode_from_start(missing, got)
            self._position = pts
            if pts in todo:
                got[pts] = _to_bgr(frame)
                todo.discard(pts)
            if pts >= last:
                break
        else:
            self._frames = None
        if todo:
            raise VideoDecodeError(
                f"{self.path}: no frame at {', '.join(self._describe(p) for p in sorted(todo)[:3])} "
                f"(decoder reached {'nothing' if self._position is None else self._describe(self._position)})"
            )

    def _decode_from_start(self, missing: list[int], got: dict[int, np.ndarray]) -> None:
        todo = set(missing)
        assert self._frames is not None
        for frame in self._frames:
            if frame.pts is None:
                continue
            pts = int(frame.pts)
            self._position = pts
            if pts in todo:
                got[pts] = _to_bgr(frame)
                todo.discard(pts)
            if pts >= missing[-1]:
                break
        if todo:
            raise VideoDecodeError(f"{self.path}: no frame at {self._describe(min(todo))}")


def decode_frames_by_pts(path: str | os.PathLike[str], pts: Sequence[int]) -> list[np.ndarray]:
    """Decode the frames with these pts (one seek), in the order given; see :class:`VideoClipReader`."""
    with VideoClipReader(path) as reader:
        return reader.read(pts)


def decode_frames_at(path: str | os.PathLike[str], times: Sequence[float]) -> list[np.ndarray]:
    """The frame shown at each time (the last frame starting at or before it; the first for earlier times).

    Args:
        path: video file.
        times: seconds from the container start, any order.

    Returns:
        one (H, W, 3) BGR uint8 array per time.
    """
    if len(times) == 0:
        return []
    path = Path(path)
    info = probe_video(path)
    lo, hi = min(times), max(times)
    # frames from a little before the earliest time (a frame shown at `lo` may start earlier)
    margin = 2.0 / float(info.frame_rate)
    pts = frame_pts(path, start_sec=max(0.0, lo - margin), end_sec=hi + margin)
    if pts.size == 0 or info.pts_to_time(int(pts[0])) > Fraction(repr(float(lo))):
        pts = frame_pts(path, start_sec=None, end_sec=hi + margin)
    if pts.size == 0:
        raise VideoDecodeError(f"{path}: no frames up to {hi:.3f} s")
    starts = np.array([float(info.pts_to_time(int(p))) for p in pts])
    idx = np.searchsorted(starts, np.asarray(times, dtype=np.float64) + 1e-9, side="right") - 1
    chosen = pts[np.clip(idx, 0, len(pts) - 1)]
    return decode_frames_by_pts(path, [int(p) for p in chosen])
