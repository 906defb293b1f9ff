"""``detect-video`` on a live stream: bounded latency, bounded memory, rows appended as they come.

:func:`run_live` joins a :class:`~slowfast_det.video.live.StreamSource` to a
:class:`~slowfast_det.pipeline.detector.VideoActionDetector` with two threads:

* the **reader** thread reads the stream without pause (so a live source's socket never backs up), cuts each
  keyframe's clip with :class:`~slowfast_det.video.stream.ClipStream` as soon as the clip's last frame has
  arrived (latency is therefore at least half a clip), and puts it into a small queue; it reconnects when the
  stream drops (:class:`~slowfast_det.video.live.ReconnectPolicy`: exponential backoff, a limit of attempts);
* the **inference** thread (the caller's) takes up to ``batch_size`` waiting keyframes of one connection,
  detects, tracks and scores them, and appends their rows to the outputs.

**Skipping policy (keep the newest).** When inference is slower than real time, whole keyframes are skipped,
never parts of one: with ``skip="newest"`` (the default for network streams and devices) the queue holds at
most ``max_queue`` keyframes and a new keyframe pushes out the *oldest* waiting one; and a keyframe that has
waited more than ``max_latency_s`` by the time inference is free is skipped too. So the result always follows the
present and latency stays bounded, about ``clip span / 2 + (max_queue + batch_size) x time per keyframe``
(and at most ``max_latency_s`` + one batch). With ``skip="none"`` (the default for ``-``: a file piped in
must not lose keyframes) the reader waits for inference instead, which slows a pipe down; nothing is skipped.
Skipped keyframes are counted (``keyframes_skipped``: pushed out of the queue, ``keyframes_late``: too old).

**Latency** of a keyframe: from the arrival (decode) of the frame displayed at its time to its rows being ready
(before the periodic flush); the summary and the stats file give p50, p95 and the maximum, from a fixed
log-spaced histogram (1 % bins), so they cost no memory over hours.

**Memory** is flat over hours: the ring of frames in :class:`~slowfast_det.video.stream.ClipStream` (bounded
by the clip span), the queue (``max_queue`` clips), the tracker (tracks unseen for ``max_age`` keyframes are
dropped; ids are plain counters), the latency histogram, the arrival times (a fixed ring), at most
``flush_every`` keyframes of rows, and, with a render, at most a few seconds of frames.

**Tracks over gaps.** After a reconnect, tracks carry over when the outage lasted at most ``track_gap_s``
seconds of stream time and end otherwise (new people get new ids; ids are never reused).

**Outputs** (``OUT/<name>...``, ``name`` from :func:`~slowfast_det.video.live.stream_name` or ``--name``):
the table (``.actions.csv`` with its header, or ``.ava.csv``) and, with ``json``, ``.actions.jsonl`` (one
keyframe per line: a live run has no end at which to close a JSON document) are *appended* in whole rows: every
``flush_every`` processed keyframes, the rows are written with a single ``write`` on a file opened in append
mode and synced (``fsync``), so the file holds whole rows between flushes and a crash loses at most
``flush_every`` keyframes. ``.live.json`` (replaced atomically at every flush and at the end) holds the counts,
latency percentiles, reconnects and the run's settings. The skip-finished rule of files
(:func:`~slowfast_det.pipeline.detector.run_videos`: settings records, fingerprints, locks) does not apply: a
stream has no content to fingerprint and never "finishes"; existing outputs are replaced only with
``overwrite``.

**Ending.** The run ends at the stream's end (a pipe's EOF, or a drop after which reconnecting failed
``attempts`` times), after the keyframe at ``end`` (``--end``/``--duration``, on the stream clock), or on
Ctrl-C/SIGTERM; in every case the rows processed so far are flushed and the summary is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ava_tools import atomic
from ava_tools.cli import UserError, version_string
from slowfast_det.pipeline import tables
from slowfast_det.pipeline.detector import KeyframeResult, VideoActionDetector
from slowfast_det.pipeline.tracking import PersonTracker
from slowfast_det.video.live import PrefetchedSource, ReconnectPolicy, StreamOpenError, StreamSource
from slowfast_det.video.render import RenderBox, StreamRenderer
from slowfast_det.video.stream import ClipStream, KeyframeClip, as_fraction

__all__ = ["LatencyStats", "LiveOptions", "LiveSummary", "live_output_paths", "run_live"]

logger = logging.getLogger(__name__)

_RENDER_WAIT_FRAMES = 150  # 5 s at 30 fps


class LatencyStats:
    """Count, mean, max and percentiles of latencies in seconds with constant memory.

    Values are binned on a log scale: bin ``i`` holds ``[lo x 1.01^i, lo x 1.01^(i+1))`` from ``lo`` = 1 ms to
    about 3 hours (values outside go to the end bins), so a percentile is exact to 1 %.
    """

    _LO = 1e-3
    _RATIO = 1.01
    _BINS = 1600

    def __init__(self) -> None:
        self.counts = np.zeros(self._BINS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= self._LO else int(math.log(seconds / self._LO) / math.log(self._RATIO))
        self.counts[min(max(i, 0), self._BINS - 1)] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float | None:
        """The ``q`` percentile (0-100) in seconds, the geometric centre of its bin (None: no values)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(self.max, self._LO * self._RATIO ** (i + 0.5))

    def as_dict(self) -> dict[str, float | int | None]:
        p50, p95 = self.percentile(50), self.percentile(95)
        return {"count": self.count, "p50_s": None if p50 is None else round(p50, 4),
                "p95_s": None if p95 is None else round(p95, 4),
                "mean_s": round(self.total / self.count, 4) if self.count else None, "max_s": round(self.max, 4)}


@dataclass(frozen=True)
class LiveOptions:
    """What :func:`run_live` writes and how it keeps up (see the module docstring).

    Attributes:
        output_dir: folder of the outputs.
        name: output file stem (and ``video_id`` column).
        class_names: ``{action id: name}``.
        format: ``csv`` or ``ava``.
        json: also append ``<name>.actions.jsonl``.
        render: None, or the ``.mp4`` to render into.
        render_short_side: render short side (None: source size, small sources upscaled to 480).
        action_threshold, topk: rows written (as files).
        flush_every: processed keyframes between two flushes of the outputs (>= 1).
        skip: ``"newest"`` (skip the oldest waiting keyframes to keep up) or ``"none"`` (wait; nothing skipped).
        max_queue: keyframes waiting for inference at most (with ``skip="newest"``).
        max_latency_s: skip a keyframe that waited longer than this (None: no limit; ``skip="newest"`` only).
        track_gap_s: tracks end after a stream outage longer than this (seconds of stream time).
        reconnect: reconnection policy.
        overwrite: replace existing outputs of the same name.
        settings, info: JSON-able description of the run, recorded in the stats file.
    """

    output_dir: Path
    name: str
    class_names: dict[int, str]
    format: str = "csv"
    json: bool = False
    render: Path | None = None
    render_short_side: int | None = None
    action_threshold: float = 0.5
    topk: int | None = None
    flush_every: int = 10
    skip: str = "newest"
    max_queue: int = 4
    max_latency_s: float | None = 10.0
    track_gap_s: float = 3.0
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    overwrite: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def live_output_paths(options: LiveOptions) -> dict[str, Path]:
    """``table``, ``stats`` and, when asked, ``json`` (JSON Lines) and ``render`` paths of a live run."""
    out, name = options.output_dir, options.name
    paths = {"table": out / (f"{name}.actions.csv" if options.format == "csv" else f"{name}.ava.csv"),
             "stats": out / f"{name}.live.json"}
    if options.json:
        paths["json"] = out / f"{name}.actions.jsonl"
    if options.render is not None:
        paths["render"] = options.render if options.render.suffix.lower() == ".mp4" else options.render / f"{name}.mp4"
    return paths


@dataclass
class LiveSummary:
    """Outcome of :func:`run_live` (also written as ``<name>.live.json``).

    Attributes:
        keyframes_done: keyframes processed and written.
        keyframes_skipped: keyframes pushed out of the full queue (keep-the-newest policy).
        keyframes_late: keyframes skipped because they waited longer than ``max_latency_s``.
        rows: table rows written.
        connections, reconnects: connections made; reconnections after a drop.
        frames_decoded: frames read from the stream.
        stream_seconds: stream time from the first to the last processed keyframe.
        wall_seconds: run time (after the models were loaded).
        ended_by: why the run ended.
        latency: :meth:`LatencyStats.as_dict`.
        timings: seconds in ``detect``, ``track``, ``slowfast``, ``write``, ``render``.
        peak_rss_mb: the process's peak resident memory.
        warnings: things the user should know (non-finite scores written, render frames drawn early, ...).
    """

    name: str
    source: str
    outputs: dict[str, str] = field(default_factory=dict)
    keyframes_done: int = 0
    keyframes_skipped: int = 0
    keyframes_late: int = 0
    rows: int = 0
    connections: int = 0
    reconnects: int = 0
    frames_decoded: int = 0
    first_keyframe: float | None = None
    last_keyframe: float | None = None
    wall_seconds: float = 0.0
    ended_by: str = ""
    latency: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        lat = self.latency
        span = ("" if self.first_keyframe is None or self.last_keyframe is None
                else f" ({self.first_keyframe:.3f}-{self.last_keyframe:.3f} s of stream time)")
        out = [
            f"stream {self.source}: {self.ended_by}",
            f"keyframes: done {self.keyframes_done}{span}, skipped {self.keyframes_skipped + self.keyframes_late} "
            f"(queue full {self.keyframes_skipped}, too late {self.keyframes_late}); rows {self.rows}",
            "latency: " + ("no keyframe" if not lat.get("count") else
                           f"p50 {lat['p50_s']:.3f} s, p95 {lat['p95_s']:.3f} s, max {lat['max_s']:.3f} s"),
            f"connections: {self.connections} (reconnects {self.reconnects}); frames decoded {self.frames_decoded}; "
            f"peak RSS {self.peak_rss_mb:.0f} MB; {self.wall_seconds:.1f} s",
        ]
        out += [f"  WARNING {w}" for w in self.warnings]
        out += [f"  {k}: {v}" for k, v in self.outputs.items()]
        return out


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


@dataclass
class _Item:
    """A keyframe clip waiting for inference."""

    clip: KeyframeClip
    connection: int
    gap_s: float  # outage before this clip's connection (stream seconds)
    arrival: float  # monotonic time at which the keyframe's frame arrived


class _ClipQueue:
    """The reader -> inference queue with the keep-the-newest policy (see the module docstring)."""

    def __init__(self, capacity: int, drop_oldest: bool) -> None:
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.items: deque[_Item] = deque()
        self.closed = False
        self.dropped: list[_Item] = []  # pushed out, not yet reported (the inference thread reports them)
        self.cond = threading.Condition()

    def put(self, item: _Item, stop: threading.Event) -> None:
        with self.cond:
            if self.drop_oldest:
                while len(self.items) >= self.capacity:
                    self.dropped.append(self.items.popleft())
            else:
                while len(self.items) >= self.capacity and not stop.is_set():
                    self.cond.wait(0.2)
            self.items.append(item)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def take(self, size: int) -> tuple[list[_Item], list[_Item]] | None:
        """Up to ``size`` waiting items of one connection (waits for the first) and the items pushed out since
        the last call; None when the queue is closed and empty."""
        with self.cond:
            while not self.items and not self.closed:
                self.cond.wait(0.2)  # a timeout, so that Ctrl-C reaches the main thread
            dropped, self.dropped = self.dropped, []
            if not self.items:
                return None if not dropped else ([], dropped)
            batch = [self.items.popleft()]
            while self.items and len(batch) < size and self.items[0].connection == batch[0].connection:
                batch.append(self.items.popleft())
            self.cond.notify_all()
            return batch, dropped


class _Appender:
    """Appends whole rows to the live outputs: one ``write`` per flush on an ``O_APPEND`` file, then ``fsync``."""

    def __init__(self, paths: dict[str, Path], options: LiveOptions, *, whole_seconds: bool) -> None:
        self.paths = paths
        self.options = options
        self.whole_seconds = whole_seconds
        self.keyframes: list[KeyframeResult] = []
        self.rows = 0
        self.fds: dict[str, int] = {}
        for key in ("table", "json"):
            if key in paths:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
                self.fds[key] = os.open(paths[key], flags, 0o666)
        if options.format == "csv":  # the header, so that the file is a valid CSV from the start
            self._write("table", ",".join(tables.ACTION_COLUMNS) + "\n")

    def add(self, results: list[KeyframeResult]) -> None:
        self.keyframes.extend(results)

    def _write(self, key: str, text: str) -> None:
        data = text.encode("utf-8")
        while data:  # a regular file takes it in one call; the loop only guards against short writes
            written = os.write(self.fds[key], data)
            data = data[written:]

    def flush(self) -> None:
        if not self.keyframes:
            return
        table = self._table(self.keyframes)
        if self.options.format == "csv":
            text = table.to_csv(index=False, header=False, lineterminator="\n")
            self.rows += len(table)
        else:
            ava = tables.actions_to_ava_frame(table)
            if not self.whole_seconds:  # the same type in every flush (actions_to_ava_frame decides per table)
                ava["timestamp"] = ava["timestamp"].astype(np.float64)
            text = ava.to_csv(index=False, header=False, lineterminator="\n")
            self.rows += len(ava)
        if text:
            self._write("table", text)
        if "json" in self.fds:
            from slowfast_det.pipeline.detector import VideoResult, _json_document

            doc = _json_document(VideoResult(self.options.name, Path(self.options.name), 0, 0, self.keyframes, {}, {}),
                                 self._output_options())
            self._write("json", "".join(json.dumps(k, allow_nan=False) + "\n" for k in doc["keyframes"]))
        for fd in self.fds.values():
            os.fsync(fd)
        self.keyframes = []

    def _output_options(self) -> Any:
        from slowfast_det.pipeline.detector import OutputOptions

        return OutputOptions(output_dir=self.options.output_dir, class_names=self.options.class_names,
                             action_threshold=self.options.action_threshold, topk=self.options.topk)

    def _table(self, keyframes: list[KeyframeResult]) -> pd.DataFrame:
        from slowfast_det.pipeline.detector import VideoResult

        result = VideoResult(self.options.name, Path(self.options.name), 0, 0, keyframes, {}, {})
        return result.table(class_names=self.options.class_names, threshold=self.options.action_threshold,
                            topk=self.options.topk)

    def close(self) -> None:
        self.flush()
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _grid_after(t: Fraction, start: Fraction, stride: Fraction) -> Fraction:
    """The first keyframe time ``start + k x stride`` (k >= 0) at or after ``t``."""
    if t <= start:
        return start
    return start + math.ceil((t - start) / stride) * stride


class _Reader(threading.Thread):
    """The reader thread: connections, clips, the queue (see the module docstring)."""

    def __init__(self, source: StreamSource, queue: _ClipQueue, stop: threading.Event, *, runner: VideoActionDetector,
                 stride: Fraction, start: Fraction, end: Fraction | None, policy: ReconnectPolicy,
                 renderer: StreamRenderer | None) -> None:
        super().__init__(name="detect-video-reader", daemon=True)
        self.source, self.queue, self.stop = source, queue, stop
        self.runner = runner
        self.stride, self.start_time, self.end = stride, start, end
        self.policy = policy
        self.renderer = renderer
        self.ended_by = ""
        self.error: BaseException | None = None
        self.reconnects = 0

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the inference thread, which re-raises it
            self.error = exc
            self.ended_by = f"reader failed: {exc}"
        finally:
            self.queue.close()

    def _loop(self) -> None:
        failures = 0
        connected_before = False
        tap = self.renderer.add_frame if self.renderer is not None else None
        while not self.stop.is_set():
            frames = self.source.frames(threads=0)
            try:
                first = next(frames)
            except (StreamOpenError, StopIteration) as exc:
                failures += 1
                why = str(exc) or f"{self.source.name}: no frame"
                if not self.source.reconnectable or failures > self.policy.attempts:
                    if not connected_before:
                        raise StreamOpenError(why) from exc
                    self.ended_by = f"stream lost ({why}); gave up after {failures - 1} reconnection attempts"
                    return
                delay = self.policy.delay(failures)
                logger.warning("%s; retrying in %.1f s (attempt %d of %d)", why, delay, failures,
                               self.policy.attempts)
                self.stop.wait(delay)
                continue
            if connected_before:
                self.reconnects += 1
                logger.warning("%s: reconnected (outage of %.1f s)", self.source.name, self.source.gap_s)
            connected_before, failures = True, 0
            begin = _grid_after(first.time, self.start_time, self.stride)
            if self.end is not None and begin > self.end:
                frames.close()
                self.ended_by = "reached --end/--duration"
                return
            clips = ClipStream(
                PrefetchedSource(self.source, first, frames, tap=tap), num_frames=self.runner.num_frames,
                sampling_rate=self.runner.sampling_rate, stride=self.stride, start=begin, end=self.end,
                target_fps=self.runner.target_fps, frame_transform=self.runner.resize_frame,
            )
            connection, gap = self.source.connection, self.source.gap_s
            for clip in clips:
                arrival = self.source.arrival(clip.keyframe_time)
                self.queue.put(_Item(clip, connection, gap, arrival if arrival is not None else time.monotonic()),
                               self.stop)
                if self.stop.is_set():
                    return
            if not self.source.end_reason:  # ClipStream stopped reading: every keyframe up to `end` is done
                self.ended_by = "reached --end/--duration"
                return
            if not self.source.reconnectable:
                self.ended_by = f"end of input ({self.source.end_reason})"
                return
            if self.policy.attempts < 1:
                self.ended_by = f"stream ended ({self.source.end_reason}); reconnecting is off"
                return
            failures = 1
            delay = self.policy.delay(failures)
            logger.warning("%s: stream dropped (%s); reconnecting in %.1f s", self.source.name,
                           self.source.end_reason, delay)
            self.stop.wait(delay)


def run_live(
    detector: VideoActionDetector | Callable[[], VideoActionDetector],
    source: StreamSource,
    options: LiveOptions,
    *,
    stride: float | str | Fraction = 1,
    start: float | str | Fraction = 0,
    end: float | str | Fraction | None = None,
    progress: bool = True,
    on_connect: Callable[[], None] | None = None,
) -> LiveSummary:
    """Run ``detector`` on a live ``source`` until it ends, ``end`` is reached, or Ctrl-C/SIGTERM.

    Args:
        detector: the detector, or a function building it (called before connecting, so that loading models
            does not delay a live stream).
        source: the stream.
        options: outputs and policies.
        stride, start, end: keyframe times on the stream clock (``end`` inclusive; None: no end).
        on_connect: called just before the first connection attempt (e.g. to tell the user).
    Raises:
        StreamOpenError: the stream could not be opened at all (after the reconnection attempts).
        UserError: outputs exist (without ``overwrite``) or cannot be written.
    """
    if options.skip not in ("newest", "none"):
        raise ValueError(f"skip must be 'newest' or 'none', got {options.skip!r}")
    if options.flush_every < 1 or options.max_queue < 1:
        raise ValueError("flush_every and max_queue must be >= 1")
    stride_s, start_s = as_fraction(stride), as_fraction(start)
    end_s = None if end is None else as_fraction(end)
    paths = live_output_paths(options)
    existing = [p for k, p in paths.items() if p.exists() and k != "stats"]
    if existing and not options.overwrite:
        raise UserError(f"{', '.join(map(str, existing))} exist(s) (a live run does not skip or append to earlier "
                        "outputs): pass --overwrite to replace them, or --name/--output-dir for new ones")
    runner = detector if isinstance(detector, VideoActionDetector) else detector()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    summary = LiveSummary(name=options.name, source=source.name,
                          outputs={k: str(p) for k, p in paths.items()})
    summary.timings = {"detect": 0.0, "track": 0.0, "slowfast": 0.0, "write": 0.0, "render": 0.0}
    latency = LatencyStats()
    whole = stride_s.denominator == 1 and start_s.denominator == 1
    appender = _Appender(paths, options, whole_seconds=whole)
    renderer = None
    if "render" in paths:
        # frames wait for their keyframes about one latency (a second or two); at most _RENDER_WAIT_FRAMES
        # (decoded frames: 3 MB each at 1080p), later ones are drawn with what is decided (counted in a warning)
        renderer = StreamRenderer(paths["render"], hold=stride_s / 2, short_side=options.render_short_side,
                                  max_frames=_RENDER_WAIT_FRAMES)
    tracker = PersonTracker(iou_threshold=runner.tracker_iou, max_age=runner.tracker_max_age)
    queue = _ClipQueue(options.max_queue if options.skip == "newest" else max(options.max_queue, 1),
                       drop_oldest=options.skip == "newest")
    stop = threading.Event()
    reader = _Reader(source, queue, stop, runner=runner, stride=stride_s, start=start_s, end=end_s,
                     policy=options.reconnect, renderer=renderer)
    nonfinite: dict[str, list[str]] = {"detector": [], "slowfast": []}
    previous_sigterm = _sigterm_as_interrupt()
    tic = time.perf_counter()
    last_connection = 0
    since_flush = 0

    def write_stats() -> None:
        summary.latency = latency.as_dict()
        summary.frames_decoded = source.frames_decoded
        summary.connections = source.connection
        summary.reconnects = reader.reconnects
        summary.wall_seconds = round(time.perf_counter() - tic, 3)
        summary.peak_rss_mb = round(_peak_rss_mb(), 1)
        doc = {"format": 1, "tool": version_string(), **summary.as_dict(),
               "policy": {"skip": options.skip, "max_queue": options.max_queue,
                          "max_latency_s": options.max_latency_s, "flush_every": options.flush_every,
                          "track_gap_s": options.track_gap_s, "reconnect": options.reconnect.__dict__},
               "keyframes": {"stride": str(stride_s), "start": str(start_s),
                             "end": None if end_s is None else str(end_s)},
               "settings": options.settings, "info": options.info}
        atomic.write_json_atomic(doc, paths["stats"], indent=1, allow_nan=False)

    def skipped(items: list[_Item], late: bool) -> None:
        for item in items:
            if late:
                summary.keyframes_late += 1
            else:
                summary.keyframes_skipped += 1
            if renderer is not None:
                renderer.decide(item.clip.time, None)

    try:
        if on_connect is not None:
            on_connect()
        reader.start()
        with tqdm(desc=options.name, unit="kf", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                taken = queue.take(runner.batch_size)
                if taken is None:
                    break
                batch, dropped = taken
                skipped(dropped, late=False)
                now = time.monotonic()
                if options.max_latency_s is not None and options.skip == "newest":
                    late = [i for i in batch if now - i.arrival > options.max_latency_s]
                    batch = [i for i in batch if now - i.arrival <= options.max_latency_s]
                    skipped(late, late=True)
                if not batch:
                    continue
                if batch[0].connection != last_connection:
                    if last_connection and batch[0].gap_s > options.track_gap_s:
                        tracker.tracks = []  # a long outage: people are not followed across it (ids go on)
                    last_connection = batch[0].connection
                results = runner._process_batch([i.clip for i in batch], tracker, summary.timings,
                                                Path(source.name), nonfinite)
                done = time.monotonic()
                for item in batch:
                    latency.add(done - item.arrival)
                appender.add(results)
                summary.keyframes_done += len(results)
                if summary.first_keyframe is None:
                    summary.first_keyframe = float(results[0].time)
                summary.last_keyframe = float(results[-1].time)
                since_flush += len(results)
                if renderer is not None:
                    t0 = time.perf_counter()
                    for r in results:
                        renderer.decide(r.time, _render_boxes(r, options))
                    summary.timings["render"] += time.perf_counter() - t0
                if since_flush >= options.flush_every:
                    t0 = time.perf_counter()
                    appender.flush()
                    summary.rows = appender.rows
                    write_stats()
                    summary.timings["write"] += time.perf_counter() - t0
                    since_flush = 0
                bar.update(len(results))
                bar.set_postfix(skipped=summary.keyframes_skipped + summary.keyframes_late,
                                p50=f"{latency.percentile(50) or 0:.2f}s", refresh=False)
        if reader.error is not None:
            raise reader.error
        summary.ended_by = reader.ended_by or "end of stream"
    except KeyboardInterrupt:
        summary.ended_by = "interrupted (Ctrl-C/SIGTERM)"
    finally:
        stop.set()
        queue.close()
        _restore_sigterm(previous_sigterm)
        try:
            appender.close()
            summary.rows = appender.rows
            if renderer is not None:
                t0 = time.perf_counter()
                renderer.close()
                summary.timings["render"] += time.perf_counter() - t0
                if renderer.frames_forced:
                    summary.warnings.append(f"render: {renderer.frames_forced} frames were drawn before their "
                                            "keyframes were processed (inference fell behind)")
            for kind, found in nonfinite.items():
                if found:
                    summary.warnings.append(f"{len(found)} {'batches' if kind == 'detector' else 'keyframes'} with "
                                            f"non-finite {kind} outputs written anyway (--allow-nonfinite); "
                                            f"first: {found[0]}")
            if not summary.ended_by:
                summary.ended_by = "failed"
            write_stats()
        finally:
            reader.join(timeout=2.0)  # a daemon: a reader stuck in a network read does not hold the exit
    return summary


def _render_boxes(result: KeyframeResult, options: LiveOptions, max_labels: int = 3) -> list[RenderBox]:
    boxes = []
    for p in result.persons:
        order = [int(c) for c in np.argsort(-p.scores, kind="stable") if p.scores[c] >= options.action_threshold]
        labels = tuple(f"{options.class_names.get(c + 1, c + 1)} {p.scores[c]:.2f}" for c in order[:max_labels])
        boxes.append(RenderBox(p.person_id, (float(p.box[0]), float(p.box[1]), float(p.box[2]), float(p.box[3])),
                               labels))
    return boxes


def _sigterm_as_interrupt() -> Any:
    """Make SIGTERM end the run like Ctrl-C (service managers stop with SIGTERM); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
