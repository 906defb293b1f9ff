"""The per-video results page of ``detect-video --report``: ``OUT/<name>.report.html``.

The page is built from the ``<name>.actions.csv`` table (:data:`slowfast_det.pipeline.tables.ACTION_COLUMNS`),
read back with pandas, so it shows exactly what the CSV holds. Its data block (see :func:`video_report_data`)
is compact enough for long videos: keyframes are integer steps of the stride, boxes and scores are integers
in thousandths, and each person has one thumbnail (downscaled JPEG) cropped from the first keyframe where
they appear. A 30-minute video with 20 people stays well under 5 MB.

Bars: an action of a person at keyframe ``t`` covers ``[t - stride/2, t + stride/2)`` on the timeline (the
interval the keyframe stands for, as the render holds its boxes); the page draws consecutive keyframes over
the score threshold as one bar. The CSV only holds scores at or above ``--action-threshold`` (and at most
``--topk`` actions per person), so the page's threshold slider starts there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ava_tools.atomic import write_text_atomic
from slowfast_det.report.page import jpeg_data_uri, render_page

__all__ = [
    "THUMB_MAX_HEIGHT",
    "THUMB_MAX_WIDTH",
    "FrameFetcher",
    "read_actions_csv",
    "report_path",
    "video_report_data",
    "write_detect_video_reports",
    "write_video_report",
]

logger = logging.getLogger(__name__)

#: Person thumbnails are shrunk to fit this box (pixels).
THUMB_MAX_WIDTH = 96
THUMB_MAX_HEIGHT = 128

#: ``frames(times) -> one (H, W, 3) BGR uint8 frame per time`` (e.g. ``slowfast_det.video.reader.decode_frames_at``).
FrameFetcher = Callable[[Sequence[float]], list[np.ndarray]]


def report_path(output_dir: Path, video: Path) -> Path:
    """Where ``detect-video --report`` writes the page of ``video``: ``OUT/<name>.report.html``."""
    return Path(output_dir) / f"{Path(video).stem}.report.html"


def read_actions_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A ``<name>.actions.csv`` table as written by ``detect-video`` (video ids kept as text)."""
    return pd.read_csv(path, dtype={"video_id": str, "action_name": str})


def _infer_stride(times: np.ndarray) -> float:
    """The smallest gap between distinct keyframe times (1.0 s, AVA's, when there are fewer than two)."""
    gaps = np.diff(np.unique(times))
    gaps = gaps[gaps > 1e-9]
    return float(gaps.min()) if gaps.size else 1.0


def _thumbnails(firsts: list[tuple[float, np.ndarray]], frames: FrameFetcher | None) -> list[str | None]:
    """One JPEG data URI per ``(time, box)``: the box (normalised, 10% margin) cropped from the frame at time."""
    if frames is None or not firsts:
        return [None] * len(firsts)
    times = sorted({t for t, _ in firsts})
    try:
        decoded = dict(zip(times, frames(times), strict=True))
    except Exception as exc:  # thumbnails are a nicety: the page is still written without them
        logger.warning("no person thumbnails (frames could not be read: %s)", exc)
        return [None] * len(firsts)
    out: list[str | None] = []
    for t, box in firsts:
        frame = decoded[t]
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        c1, c2 = int(np.clip((x1 - mx) * w, 0, w - 1)), int(np.clip(np.ceil((x2 + mx) * w), 1, w))
        r1, r2 = int(np.clip((y1 - my) * h, 0, h - 1)), int(np.clip(np.ceil((y2 + my) * h), 1, h))
        crop = frame[r1:max(r2, r1 + 1), c1:max(c2, c1 + 1)]
        out.append(jpeg_data_uri(crop, max_width=THUMB_MAX_WIDTH, max_height=THUMB_MAX_HEIGHT))
    return out


def _milli(values: np.ndarray) -> list[int]:
    """Boxes in thousandths (rounded)."""
    return [int(v) for v in np.rint(np.asarray(values, dtype=np.float64) * 1000)]


def _milli_scores(values: np.ndarray) -> list[int]:
    """Scores in thousandths, rounded down: ``floor(1000 s) >= 1000 t`` iff ``s >= t`` for the page's
    thresholds (multiples of 0.001), so the page keeps exactly the CSV rows with ``score >= threshold``."""
    return [int(v) for v in np.floor(np.asarray(values, dtype=np.float64) * 1000 + 1e-9)]


def video_report_data(
    actions: pd.DataFrame,
    *,
    stride: float | str | Fraction | None = None,
    threshold: float | None = None,
    duration: float | None = None,
    media: str | None = None,
    frames: FrameFetcher | None = None,
    title: str = "",
    media_has_boxes: bool = False,
) -> dict[str, Any]:
    """The page's data block from a ``detect-video`` action table.

    Args:
        actions: the table (:data:`~slowfast_det.pipeline.tables.ACTION_COLUMNS`); rows with an empty action
            mark a tracked person with no action over the threshold.
        stride: seconds between keyframes (None: the smallest gap between the table's keyframe times).
        threshold: the smallest score the table may hold (``--action-threshold``; None: its smallest score).
        duration: the video's length in seconds (None: last keyframe + stride).
        media: URL of the video the page plays, relative to the page (None: no player).
        frames: reads frames for the person thumbnails (None: no thumbnails).
        title: page title.
        media_has_boxes: the played video already shows the boxes (a render): the page's own box overlay
            starts switched off.

    Returns:
        ``{"title", "media", "media_has_boxes", "t0", "stride", "duration", "threshold", "actions": [{"id", "name"}],
        "persons": [{"id", "thumb", "seen": [step], "boxes": [x1, y1, x2, y2 per step, thousandths],
        "acts": [[action index, [step], [score in thousandths, rounded down]]]}]}``; keyframe time = t0 + step * stride.
        Persons are ordered by first appearance, then id; actions by id.
    """
    table = actions.copy()
    times = table["timestamp"].to_numpy(dtype=np.float64)
    step = float(Fraction(str(stride))) if stride is not None else _infer_stride(times)
    if step <= 0:
        raise ValueError(f"stride must be > 0 seconds, got {stride}")
    t0 = float(times.min()) if times.size else 0.0
    table["step"] = np.rint((times - t0) / step).astype(np.int64) if times.size else np.zeros(0, np.int64)
    acted = table[table["action_id"].notna()]
    action_ids = sorted({int(a) for a in acted["action_id"]})
    names: dict[int, str] = {}
    for a, n in zip(acted["action_id"], acted["action_name"], strict=True):
        names.setdefault(int(a), n if isinstance(n, str) and n else str(int(a)))
    index = {a: i for i, a in enumerate(action_ids)}
    if threshold is None:
        threshold = float(acted["score"].min()) if len(acted) else 0.0

    persons: list[dict[str, Any]] = []
    firsts: list[tuple[float, np.ndarray]] = []
    boxes_all = table[["person_id", "step", "timestamp", "x1", "y1", "x2", "y2"]].drop_duplicates(["person_id", "step"])
    order = boxes_all.groupby("person_id")["step"].min().sort_values(kind="stable")
    order = order.reset_index().sort_values(["step", "person_id"], kind="stable")["person_id"]
    by_person_boxes = dict(tuple(boxes_all.sort_values("step", kind="stable").groupby("person_id")))
    by_person_acts = dict(tuple(acted.groupby("person_id")))
    for pid in order:
        b = by_person_boxes[pid]
        acts = []
        pa = by_person_acts.get(pid)
        if pa is not None:
            for aid, rows in pa.groupby("action_id"):
                rows = rows.sort_values("step", kind="stable")
                steps = rows["step"].astype(int).tolist()
                acts.append([index[int(aid)], steps, _milli_scores(rows["score"].to_numpy())])
            acts.sort(key=lambda x: x[0])
        persons.append({
            "id": int(pid),
            "thumb": None,
            "seen": b["step"].astype(int).tolist(),
            "boxes": _milli(b[["x1", "y1", "x2", "y2"]].to_numpy().reshape(-1)),
            "acts": acts,
        })
        firsts.append((float(b["timestamp"].iloc[0]), b[["x1", "y1", "x2", "y2"]].to_numpy()[0]))
    for person, thumb in zip(persons, _thumbnails(firsts, frames), strict=True):
        person["thumb"] = thumb
    last = float(times.max()) + step if times.size else step
    return {
        "title": title,
        "media": media,
        "media_has_boxes": bool(media_has_boxes),
        "t0": t0,
        "stride": step,
        "duration": float(duration) if duration and duration > 0 else last,
        "threshold": float(threshold),
        "actions": [{"id": a, "name": names[a]} for a in action_ids],
        "persons": persons,
    }


def _relative_url(target: Path, page_dir: Path) -> str:
    """``target`` as a URL relative to ``page_dir`` (percent-encoded), or a ``file://`` URL when none exists."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    except ValueError:  # another drive (Windows)
        return Path(os.path.abspath(target)).as_uri()
    return quote(rel.replace(os.sep, "/"))


def write_video_report(
    actions_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    video: str | os.PathLike[str] | None = None,
    media: str | os.PathLike[str] | None = None,
    stride: float | str | Fraction | None = None,
    threshold: float | None = None,
) -> Path:
    """Write the page of one ``detect-video`` CSV to ``out`` atomically; returns ``out``.

    Args:
        actions_csv: ``<name>.actions.csv``.
        out: the page (``OUT/<name>.report.html``).
        video: the source video: thumbnails and duration (None: neither).
        media: the video the page plays (e.g. the render), linked by a path relative to the page
            (None: ``video``).
        stride, threshold: as :func:`video_report_data`.
    """
    out = Path(out)
    actions = read_actions_csv(actions_csv)
    frames: FrameFetcher | None = None
    duration = None
    if video is not None:
        from slowfast_det.video.probe import probe_video
        from slowfast_det.video.reader import decode_frames_at

        src = Path(video)
        try:
            duration = probe_video(src).duration_s
        except Exception as exc:  # the page still works without the length (last keyframe + stride)
            logger.warning("%s: no duration (%s)", src, exc)

        def frames(times: Sequence[float]) -> list[np.ndarray]:
            return decode_frames_at(src, times)

    play = media if media is not None else video
    name = Path(video).name if video is not None else Path(actions_csv).name
    data = video_report_data(
        actions, stride=stride, threshold=threshold, duration=duration, frames=frames, title=name,
        media=None if play is None else _relative_url(Path(play), out.parent),
        media_has_boxes=media is not None and (video is None or Path(media) != Path(video)),
    )
    return write_text_atomic(render_page("video_report.html", data, title=f"{name} — actions"), out)


def write_detect_video_reports(
    videos: Iterable[Path], options: Any, *, stride: float | str | Fraction
) -> tuple[list[str], bool]:
    """``detect-video --report``: the page of every video whose CSV exists; returns (lines to print, any failed).

    Args:
        videos: the videos done or skipped by :func:`slowfast_det.pipeline.detector.run_videos`.
        options: its :class:`~slowfast_det.pipeline.detector.OutputOptions` (``format`` must be ``csv``); the
            page plays the render when there is one, else the source video.
        stride: the run's ``--stride``.
    """
    from slowfast_det.pipeline.detector import output_paths

    lines: list[str] = []
    failed = False
    for video in videos:
        # a .mp4 render path is only accepted with one input video, so single=True names the same files
        paths = output_paths(video, options, single=True)
        render = paths.get("render")
        out = report_path(options.output_dir, video)
        try:
            write_video_report(paths["table"], out, video=video,
                               media=render if render is not None and render.is_file() else video,
                               stride=stride, threshold=options.action_threshold)
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
            failed = True
            lines.append(f"  REPORT FAILED {video}: {exc}")
        else:
            lines.append(f"report: {out}")
    return lines, failed
