"""PySlowFast frame lists: ``original_vido_id video_id frame_id path labels``, space separated, one header."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ava_tools.atomic import write_csv_atomic
from ava_tools.io import FRAME_LIST_COLUMNS
from ava_tools.timeline import frame_file_name

__all__ = ["DONE_MARKER", "read_marker", "write_frame_list"]

logger = logging.getLogger(__name__)

DONE_MARKER = ".prepare_done.json"  # written last into each finished frame folder


def read_marker(video_dir: Path) -> dict[str, object] | None:
    """The done marker of a frame folder (None when absent or unreadable)."""
    marker = video_dir / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except json.JSONDecodeError:
        logger.warning("%s: unreadable marker, redoing the video", marker)
        return None
    return data if isinstance(data, dict) else None


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
        marker = read_marker(video_dir)
        if marker is not None and marker.get("n_frames") != len(numbers):
            raise ValueError(
                f"{video_dir}: {len(numbers)} frames on disk but the done marker says {marker.get('n_frames')}"
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
