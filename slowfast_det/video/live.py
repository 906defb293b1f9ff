"""Live frame sources: network streams, capture devices and pipes, as :class:`FrameSource` implementations.

:class:`StreamSource` reads anything FFmpeg (through PyAV) opens as a stream:

* URLs: ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://`` (including HLS ``.m3u8`` playlists), ``tcp://``,
  ``udp://``, ``srt://``, ``rtp://``;
* a V4L2 capture device such as ``/dev/video0`` (opened with FFmpeg's ``v4l2`` input);
* ``-``: a byte stream on the standard input (a pipe). An MP4 on a pipe must carry its index (``moov``) first
  (``ffmpeg -movflags +faststart``, or send MPEG-TS/Matroska instead): FFmpeg cannot seek back in a pipe.

A live source is not seekable (:attr:`FrameSource.seekable` is False), so
:class:`~slowfast_det.video.stream.ClipStream` decodes it strictly forward; it never looks truncated.

**Clock.** A frame's time is the stream's own timestamp, ``pts x time_base``, minus the container's start (the
first timestamp the connection saw), exactly as for files (:mod:`slowfast_det.video.probe`): a stream read
from its beginning has its first frame at 0.0 s and the times of the file it was made from. Each call of
:meth:`StreamSource.frames` is one *connection*; times continue across connections: the first frame of a new
connection comes after the last frame of the previous one by the wall-clock time that passed between them (at
least one frame period), so keyframe times keep following real time over an outage. Within a connection, a
timestamp that goes back by more than :data:`DISCONTINUITY_S` or jumps ahead of the wall clock by more than that
(an encoder restart, a playlist discontinuity) re-anchors the clock the same way; smaller backward steps are
dropped frames, as for files.

**Arrival times.** The wall-clock (``time.monotonic``) instant each frame was decoded is kept for the latest
:data:`ARRIVALS_KEPT` frames (:meth:`StreamSource.arrival`): the start of the end-to-end latency of a keyframe.

**Ends and drops.** Failing to open raises :class:`StreamOpenError`. Once frames came, a read error or a read
timeout ends the connection's frames normally (:attr:`StreamSource.end_reason` says why), so the clips already
started are finished as at the end of a file; the caller decides whether to reconnect
(:attr:`StreamSource.reconnectable`: not for ``-``).
"""

from __future__ import annotations

import bisect
import itertools
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.container
import av.video.stream

from slowfast_det.video.probe import VideoDecodeError, VideoInfo, frame_time, rotation_of, zero_time
from slowfast_det.video.sources import FrameSource, PyAVFrame, SourceFrame

__all__ = [
    "ARRIVALS_KEPT",
    "DISCONTINUITY_S",
    "STREAM_SCHEMES",
    "PrefetchedSource",
    "ReconnectPolicy",
    "StreamOpenError",
    "StreamSource",
    "is_stream_input",
    "stream_name",
]

#: URL schemes read as live streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt", "rtp")
#: Timestamp jumps (seconds) beyond which the stream clock is re-anchored (see the module docstring).
DISCONTINUITY_S = 5.0
#: Frames whose arrival time is remembered (a few minutes at 30 fps: far more than any clip).
ARRIVALS_KEPT = 4096
# FFmpeg options that make common protocols more robust; a user's --stream-option overrides them.
_PROTOCOL_DEFAULTS: dict[str, dict[str, str]] = {
    "rtsp": {"rtsp_transport": "tcp"},  # interleaved RTP over the RTSP connection: no lost UDP packets
    "rtsps": {"rtsp_transport": "tcp"},
    "udp": {"overrun_nonfatal": "1", "fifo_size": "1000000"},  # a busy reader loses packets, not the stream
}


class StreamOpenError(VideoDecodeError):
    """A stream could not be opened (refused, timed out, not a media stream, no video); the message names it."""


def is_stream_input(spec: str) -> bool:
    """Whether an input is a live stream (URL of :data:`STREAM_SCHEMES`, ``/dev/video*`` or ``-``), not a file."""
    if spec == "-" or re.fullmatch(r"/dev/video\d+", spec):
        return True
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    return scheme in STREAM_SCHEMES


def stream_name(spec: str) -> str:
    """A file-name-safe id for a stream's outputs: ``stdin`` for ``-``, ``video0`` for ``/dev/video0``, the last
    path part of a URL without its extension (``rtsp://cam/live/door.sdp`` -> ``door``), else host and port."""
    if spec == "-":
        return "stdin"
    if spec.startswith("/dev/"):
        return Path(spec).name
    parts = urlsplit(spec)
    stem = Path(parts.path).stem if parts.path not in ("", "/") else ""
    name = stem or (parts.hostname or "stream") + (f"_{parts.port}" if parts.port else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stream"


@dataclass(frozen=True)
class ReconnectPolicy:
    """When a stream drops (or cannot be opened), try again after ``initial_s``, then ``factor`` times longer
    each time up to ``max_s``; give up after ``attempts`` consecutive failed attempts (0: never reconnect).
    A connection that delivers frames resets the count."""

    attempts: int = 5
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before attempt number ``failures`` (1-based) after a failure."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1)))


class StreamSource(FrameSource):
    """A live stream, device or pipe (see the module docstring); each :meth:`frames` call is one connection.

    Args:
        spec: URL, ``/dev/videoN`` or ``-``.
        open_timeout_s, read_timeout_s: give up opening / waiting for data after this many seconds.
        options: FFmpeg options (protocol, demuxer), e.g. ``{"rtsp_transport": "udp"}``; they override the
            defaults this class sets for RTSP and UDP.
        format: force an FFmpeg input format (``v4l2`` is used for ``/dev/video*``).

    Attributes:
        connection: number of the current connection (1 for the first).
        gap_s: stream-clock seconds between the previous connection's last frame and this one's first (0 first).
        end_reason: why the last connection's frames ended (``"end of stream"`` or the error).
        frames_decoded: frames yielded over all connections.
    """

    seekable = False

    def __init__(
        self,
        spec: str,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        options: Mapping[str, str] | None = None,
        format: str | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec
        self.info = None
        self.packets_skipped = 0
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
        self.options = {**_PROTOCOL_DEFAULTS.get(scheme, {}), **(options or {})}
        self.format = format or ("v4l2" if spec.startswith("/dev/video") else None)
        self.reconnectable = spec != "-"
        self.connection = 0
        self.gap_s = 0.0
        self.end_reason = ""
        self.frames_decoded = 0
        self._last_time: Fraction | None = None
        self._last_wall = 0.0
        self._arrivals: deque[tuple[Fraction, float]] = deque(maxlen=ARRIVALS_KEPT)

    # ------------------------------------------------------------------------------------------------------
    def _open(self) -> av.container.InputContainer:
        target: Any = "pipe:0" if self.spec == "-" else self.spec
        try:
            container = av.open(target, format=self.format, options=dict(self.options),
                                timeout=(self.open_timeout_s, self.read_timeout_s))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise StreamOpenError(f"{self.name}: cannot open the stream ({exc})") from exc
        if not container.streams.video:
            kinds = [s.type for s in container.streams]
            container.close()
            raise StreamOpenError(f"{self.name}: no video stream (streams: {kinds})")
        return container

    def arrival(self, t: Fraction) -> float | None:
        """``time.monotonic()`` at which the frame displayed at stream time ``t`` arrived (None: forgotten)."""
        i = bisect.bisect_right(self._arrivals, t, key=lambda a: a[0]) - 1
        return self._arrivals[i][1] if i >= 0 else None

    @property
    def last_time(self) -> Fraction | None:
        """Stream time of the latest frame (None before the first)."""
        return self._last_time

    def frames(self, seek: Fraction | None = None, *, threads: int = 0) -> Generator[SourceFrame, None, None]:
        """One connection's frames (``seek`` must be None: a live source cannot seek).

        Raises:
            StreamOpenError: the stream cannot be opened, or ends before its first frame.
        """
        if seek is not None:
            raise ValueError(f"{self.name}: a live stream cannot seek")
        container = self._open()
        self.connection += 1
        self.end_reason = ""
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            zero = zero_time(container, stream)
            rate = stream.average_rate or stream.guessed_rate or 30
            period = 1 / Fraction(rate)
            offset: Fraction | None = None
            previous_raw: Fraction | None = None
            previous_wall = 0.0
            rotation = 0
            for frame in self._decode(container, stream):
                now = time.monotonic()
                raw = frame_time(frame, stream, zero, previous_raw)
                if offset is None:  # first frame of this connection
                    rotation = rotation_of(getattr(frame, "rotation", 0), Path(self.name))
                    self.info = self._info(container, stream, frame, rotation, zero)
                    offset = self._anchor(raw, now, period)
                    self.gap_s = 0.0 if self._last_time is None else float(raw + offset - self._last_time)
                elif previous_raw is not None:
                    step = float(raw - previous_raw)
                    if step < -DISCONTINUITY_S or step > (now - previous_wall) + DISCONTINUITY_S:
                        offset = self._anchor(raw, now, period)  # an encoder restart or a playlist jump
                previous_raw, previous_wall = raw, now
                t = raw + offset
                if self._last_time is not None and t <= self._last_time:
                    continue  # a repeated or out-of-order timestamp: the earlier frame stays on screen
                self._last_time, self._last_wall = t, now
                self._arrivals.append((t, now))
                self.frames_decoded += 1
                yield PyAVFrame(frame, t, rotation)
            if offset is None:
                raise StreamOpenError(f"{self.name}: the stream ended before its first video frame"
                                      + (f" ({self.end_reason})" if self.end_reason else ""))
        finally:
            container.close()

    def _anchor(self, raw: Fraction, now: float, period: Fraction) -> Fraction:
        """Clock offset that puts a frame with raw time ``raw``, arriving at ``now``, after the latest frame by the
        wall-clock time since it (at least one frame period); 0 for the very first frame."""
        if self._last_time is None:
            return Fraction(0)
        wall = Fraction(max(0.0, now - self._last_wall)).limit_denominator(1_000_000)
        return self._last_time + max(period, wall) - raw

    def _decode(self, container: av.container.InputContainer,
                stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        """Decoded frames until the stream ends or fails; packets the decoder rejects are skipped and counted."""
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.packets_skipped += 1
                    continue
                yield from frames  # type: ignore[misc]
            self.end_reason = "end of stream"
            return
        except av.error.FFmpegError as exc:
            self.end_reason = self._explain(container, exc)
        try:  # the frames still inside the decoder (B-frame reordering) come out with a flush
            yield from stream.codec_context.decode(None)  # type: ignore[misc]
        except (av.error.FFmpegError, ValueError, TypeError):
            pass

    def _explain(self, container: av.container.InputContainer, exc: Exception) -> str:
        text = str(exc)
        if "Immediate exit requested" in text:
            return f"no data for {self.read_timeout_s:g} s (read timeout)"
        if self.spec == "-" and container.format.name.startswith("mov") and self.frames_decoded == 0:
            return (f"{text}; an MP4 whose index (moov) is at its end cannot be read from a pipe: remux it with "
                    "ffmpeg -movflags +faststart, or send MPEG-TS (-f mpegts)")
        return text

    def _info(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
              frame: av.VideoFrame, rotation: int, zero: Fraction) -> VideoInfo:
        w, h = frame.width, frame.height
        if rotation in (90, 270):
            w, h = h, w
        rate = stream.guessed_rate or stream.average_rate or 30
        return VideoInfo(
            path=Path(self.name), width=w, height=h, rotation=rotation,
            time_base=Fraction(stream.time_base or Fraction(1, 90000)), start_time=zero,
            frame_rate=Fraction(rate), average_fps=float(stream.average_rate) if stream.average_rate else None,
            duration_s=None, num_frames=0, single_stream=len(container.streams) == 1,
        )


class PrefetchedSource(FrameSource):
    """One connection of ``source`` whose first frame was already taken (to place the first keyframe); every
    frame is also handed to ``tap`` when given."""

    seekable = False

    def __init__(self, source: StreamSource, first: SourceFrame, rest: Generator[SourceFrame, None, None], *,
                 tap: Callable[[SourceFrame], None] | None = None) -> None:
        self.source = source
        self.tap = tap
        self.name = source.name
        self.info = source.info
        self._first: SourceFrame | None = first
        self._rest = rest

    @property
    def packets_skipped(self) -> int:  # type: ignore[override]
        return self.source.packets_skipped

    def frames(self, seek: Fraction | None = None, *, threads: int = 0) -> Generator[SourceFrame, None, None]:
        if self._first is None:
            raise RuntimeError("a prefetched connection can be read once")
        first, self._first = self._first, None
        try:
            for frame in itertools.chain((first,), self._rest):
                if self.tap is not None:
                    self.tap(frame)  # e.g. a live render, which needs every frame
                yield frame
        finally:
            self._rest.close()


def stdin_is_terminal() -> bool:
    """Whether ``-`` would read from a terminal (a user mistake: nothing is piped in)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False
