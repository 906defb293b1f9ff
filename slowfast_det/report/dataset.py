"""The results page of ``slowfast-test --report``: ``OUTPUT_DIR/report.html``.

Built from the three files the test writes: ``detections.csv`` (AVA detections, one row per box and class),
``groundtruth.csv`` (the ground truth evaluated) and ``metrics.json`` (mAP and the per-class table). The page
shows per-class AP bars and a strip of keyframes, each a thumbnail (the keyframe's frame from
``AVA.FRAME_DIR``, downscaled) with the ground-truth and predicted boxes drawn over it. The browser matches
them at the chosen score threshold: a predicted box takes the best unmatched ground-truth box with IoU >= 0.5
(box level, for looking at errors; the official mAP is in ``metrics.json``), so false-positive boxes, missed
ground-truth boxes and wrong or missing labels of matched boxes are marked.

Size: keyframes are capped (``max_keyframes``, evenly spaced over the sorted keyframes when there are more),
predictions keep per box only the classes scoring >= ``min_score``, boxes and scores are integers in
thousandths (scores rounded down, so the page's threshold keeps exactly the scores >= it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ava_tools.atomic import write_text_atomic
from ava_tools.timeline import frame_file_name, keyframe_center_index
from slowfast_det.report.page import jpeg_data_uri, render_page

__all__ = ["KeyframeImage", "dataset_report_data", "frame_dir_images", "write_dataset_report"]

logger = logging.getLogger(__name__)

#: Keyframe thumbnails are shrunk to fit this box (pixels).
THUMB_MAX_WIDTH = 240
THUMB_MAX_HEIGHT = 180

#: ``image(video_id, timestamp seconds) -> (H, W, 3) BGR uint8 frame, or None when there is none``.
KeyframeImage = Callable[[str, float], "np.ndarray | None"]


def frame_dir_images(frame_dir: str | os.PathLike[str]) -> KeyframeImage:
    """Keyframe frames from AVA's extracted-frame layout ``FRAME_DIR/{vid}/{vid}_{k:06d}.jpg``.

    Keyframe second ``s`` is frame-list index ``(s - 900) * 30`` (:mod:`ava_tools.timeline`); a missing or
    unreadable file, or a non-integer second, gives None.
    """
    root = Path(frame_dir)

    def image(video_id: str, second: float) -> np.ndarray | None:
        if second != int(second):
            return None
        index = keyframe_center_index(int(second))
        if index < 0:
            return None
        path = root / video_id / frame_file_name(video_id, index)
        return cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None

    return image


def _milli_box(row: Any) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in np.rint(np.asarray(row, dtype=np.float64) * 1000))  # type: ignore[return-value]


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["video_id"] = frame["video_id"].astype(str)
    frame["t"] = pd.to_numeric(frame["timestamp"].astype(str)).astype(np.float64)
    return frame


def dataset_report_data(
    detections: pd.DataFrame,
    groundtruth: pd.DataFrame,
    metrics: dict[str, Any],
    *,
    images: KeyframeImage | None = None,
    max_keyframes: int = 300,
    min_score: float = 0.05,
    top_per_box: int | None = None,
    threshold: float = 0.5,
    title: str = "",
) -> dict[str, Any]:
    """The page's data block.

    Args:
        detections: ``ava_tools.evaluate.read_detections_csv`` of ``detections.csv``.
        groundtruth: ``ava_tools.evaluate.read_groundtruth_csv`` of ``groundtruth.csv`` (2-column rows: a
            keyframe without boxes).
        metrics: ``metrics.json`` (``mAP``, ``semantics``, ``per_class`` records id, name, ap, n_gt, n_det).
        images: reads keyframe frames for the thumbnails (None: boxes on a grey background).
        max_keyframes: at most this many keyframes on the strip (evenly spaced when there are more).
        min_score: smallest class score kept per predicted box (the page's threshold slider starts there).
        top_per_box: at most this many classes kept per predicted box (None: all over ``min_score``; a cap
            makes a dropped label look missed at low thresholds).
        threshold: the page's initial score threshold.
        title: page title.

    Returns:
        ``{"title", "map", "semantics", "classes": [{"id", "name", "ap", "n_gt", "n_det"}], "threshold",
        "min_score", "total_keyframes", "keyframes": [{"v", "t", "img", "gt": [[x1, y1, x2, y2, [ids]]],
        "pred": [[x1, y1, x2, y2, [[id, score]]]]}]}`` with boxes and scores in thousandths.
    """
    det = _keyed(detections)
    gt = _keyed(groundtruth)
    keys = sorted(set(zip(gt["video_id"], gt["t"], strict=True)) | set(zip(det["video_id"], det["t"], strict=True)))
    total = len(keys)
    if total > max_keyframes > 0:
        keys = [keys[i] for i in np.linspace(0, total - 1, max_keyframes).round().astype(int)]
    wanted = pd.DataFrame(keys, columns=["video_id", "t"])
    det = det.merge(wanted, on=["video_id", "t"])
    det = det[det["score"] >= min_score]
    gt = gt.merge(wanted, on=["video_id", "t"])
    gt = gt[gt["x1"].notna()]
    box_cols = ["x1", "y1", "x2", "y2"]
    det_by_key = dict(tuple(det.groupby(["video_id", "t"], sort=False)))
    gt_by_key = dict(tuple(gt.groupby(["video_id", "t"], sort=False)))

    keyframes = []
    for key in keys:
        gboxes: dict[tuple[int, ...], list[int]] = {}
        g = gt_by_key.get(key)
        if g is not None:
            for box, aid in zip(g[box_cols].to_numpy(), g["action_id"], strict=True):
                labels = gboxes.setdefault(_milli_box(box), [])
                if pd.notna(aid) and int(aid) not in labels:
                    labels.append(int(aid))
        pboxes: dict[tuple[int, ...], list[list[int]]] = {}
        d = det_by_key.get(key)
        if d is not None:
            for box, aid, score in zip(d[box_cols].to_numpy(), d["action_id"], d["score"], strict=True):
                pboxes.setdefault(_milli_box(box), []).append([int(aid), int(np.floor(float(score) * 1000 + 1e-9))])
        img = None
        if images is not None:
            frame = images(key[0], key[1])
            if frame is not None:
                img = jpeg_data_uri(frame, max_width=THUMB_MAX_WIDTH, max_height=THUMB_MAX_HEIGHT, quality=70)
        keyframes.append({
            "v": key[0],
            "t": key[1],
            "img": img,
            "gt": [[*b, sorted(labels)] for b, labels in gboxes.items()],
            "pred": [[*b, sorted(s, key=lambda x: -x[1])[:top_per_box]] for b, s in pboxes.items()],
        })
    classes = [
        {k: r.get(k) for k in ("id", "name", "ap", "n_gt", "n_det")} for r in metrics.get("per_class", [])
    ]
    return {
        "title": title,
        "map": metrics.get("mAP"),
        "semantics": metrics.get("semantics"),
        "classes": classes,
        "threshold": float(max(threshold, min_score)),
        "min_score": float(min_score),
        "total_keyframes": total,
        "keyframes": keyframes,
    }


def write_dataset_report(
    output_dir: str | os.PathLike[str],
    *,
    frame_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    max_keyframes: int = 300,
) -> Path:
    """Write the page of a ``slowfast-test`` output folder atomically; returns its path.

    Args:
        output_dir: holds ``detections.csv``, ``groundtruth.csv`` and ``metrics.json``.
        frame_dir: ``AVA.FRAME_DIR`` (keyframe thumbnails); None or missing: no thumbnails.
        out: the page (default ``output_dir/report.html``).
        max_keyframes: as :func:`dataset_report_data`.

    Raises:
        ava_tools.evaluate.AvaFormatError: a missing or malformed CSV; FileNotFoundError: no ``metrics.json``.
    """
    from ava_tools.evaluate import read_detections_csv, read_groundtruth_csv

    output_dir = Path(output_dir)
    out = Path(out) if out is not None else output_dir / "report.html"
    metrics_path = output_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: no metrics.json (run slowfast-test first)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    images = None
    if frame_dir and Path(frame_dir).is_dir():
        images = frame_dir_images(frame_dir)
    else:
        logger.warning("no keyframe thumbnails: frame folder %r does not exist", frame_dir)
    data = dataset_report_data(
        read_detections_csv(output_dir / "detections.csv"), read_groundtruth_csv(output_dir / "groundtruth.csv"),
        metrics, images=images, max_keyframes=max_keyframes, title=str(output_dir),
    )
    return write_text_atomic(render_page("dataset_report.html", data, title=f"{output_dir.name} — test results"),
                             out)
