"""Writers for result tables: AVA-format detection CSVs (what the official evaluator reads).

AVA detection CSV (no header, 8 columns): ``video_id, timestamp, x1, y1, x2, y2, action_id, score`` with the
box normalised to [0, 1] of the frame and ``action_id`` 1-based. One row per person box and per evaluated
class id (ascending), as PySlowFast's ``write_results`` does; scores keep full float32 precision (PySlowFast
rounds them to 4 decimals and boxes to 3). Files are written atomically: a temporary file in the same
folder, then ``os.replace``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ava_tools import atomic

__all__ = ["AVA_DETECTION_COLUMNS", "detections_frame", "write_detections_csv"]

AVA_DETECTION_COLUMNS = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"]


def detections_frame(
    *,
    video_ids: Sequence[str],
    timestamps: Sequence[int] | np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: Sequence[int],
) -> pd.DataFrame:
    """One row per box and per class id: the AVA detection table.

    Args:
        video_ids: (N,) video id of each box.
        timestamps: (N,) keyframe second of each box (integer seconds, e.g. 902).
        boxes: (N, 4) ``x1, y1, x2, y2`` normalised to [0, 1].
        scores: (N, C) per-class probabilities, column ``k`` for action id ``k + 1``.
        class_ids: 1-based action ids to write (e.g. the 60 of the evaluation label map), each <= C.

    Returns:
        A DataFrame with :data:`AVA_DETECTION_COLUMNS`, N * len(class_ids) rows, box-major, ids ascending.

    Raises:
        ValueError: inconsistent lengths/shapes or a class id outside 1..C.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    n = len(video_ids)
    if boxes.shape != (n, 4) or scores.ndim != 2 or scores.shape[0] != n or len(timestamps) != n:
        raise ValueError(
            f"detections need N video ids, N timestamps, (N, 4) boxes and (N, C) scores; got {n} ids, "
            f"{len(timestamps)} timestamps, boxes {boxes.shape}, scores {scores.shape}"
        )
    ids = np.asarray(sorted(set(int(c) for c in class_ids)), dtype=np.int64)
    if n == 0:  # no box at all (e.g. none above the detection threshold): nothing to check the ids against
        ids = ids[:0]
    elif ids.size == 0 or ids[0] < 1 or ids[-1] > scores.shape[1]:
        raise ValueError(f"class ids must lie in 1..{scores.shape[1]} (the score columns), got {ids.tolist()}")
    k = ids.size
    return pd.DataFrame(
        {
            "video_id": np.repeat(np.asarray(video_ids, dtype=object), k),
            "timestamp": np.repeat(np.asarray(timestamps, dtype=np.int64), k),
            "x1": np.repeat(boxes[:, 0], k),
            "y1": np.repeat(boxes[:, 1], k),
            "x2": np.repeat(boxes[:, 2], k),
            "y2": np.repeat(boxes[:, 3], k),
            "action_id": np.tile(ids, n),
            "score": scores[:, ids - 1].reshape(-1),
        },
        columns=AVA_DETECTION_COLUMNS,
    )


def write_detections_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Write an AVA detection table (see :func:`detections_frame`) without header, atomically.

    Raises:
        ValueError: the frame's columns are not :data:`AVA_DETECTION_COLUMNS`.
    """
    if list(frame.columns) != AVA_DETECTION_COLUMNS:
        raise ValueError(f"detection table columns must be {AVA_DETECTION_COLUMNS}, got {list(frame.columns)}")
    return atomic.write_csv_atomic(frame, path, header=False)


# ---------------------------------------------------------------------------------------------------------
# per-person action tables of detect-video (slowfast_det.pipeline.detector)
# ---------------------------------------------------------------------------------------------------------

__all__ += ["ACTION_COLUMNS", "actions_to_ava_frame", "person_actions_frame", "write_actions_csv"]

#: Columns of ``<name>.actions.csv`` (written with this header).
ACTION_COLUMNS = [
    "video_id", "timestamp", "person_id", "x1", "y1", "x2", "y2", "detector_score", "action_id", "action_name",
    "score",
]


def person_actions_frame(
    *,
    video_id: str,
    timestamps: Sequence[float] | np.ndarray,
    person_ids: Sequence[int] | np.ndarray,
    boxes: np.ndarray,
    detector_scores: Sequence[float] | np.ndarray,
    scores: np.ndarray,
    class_names: dict[int, str],
    threshold: float,
    topk: int | None = None,
) -> pd.DataFrame:
    """One row per person and kept action: the ``detect-video`` table (:data:`ACTION_COLUMNS`).

    An action is kept when its score is >= ``threshold``; with ``topk`` only the ``topk`` best kept actions of
    each person remain (ties: lower action id first). A person with no kept action still gets one row, with
    empty ``action_id``, ``action_name`` and ``score``, so every tracked box appears in the table.

    Args:
        video_id: written in every row.
        timestamps: (N,) keyframe time of each person in seconds on the video's clock.
        person_ids: (N,) tracker ids.
        boxes: (N, 4) ``x1, y1, x2, y2`` normalised to [0, 1].
        detector_scores: (N,) person detector scores.
        scores: (N, C) action scores, column ``k`` for action id ``k + 1``.
        class_names: ``{action id: name}``; ids without a name are written with an empty name.
        threshold: smallest kept score.
        topk: at most this many actions per person (None: all above ``threshold``).

    Returns:
        Rows ordered by timestamp, then person (input order), then descending score. ``action_id`` is a
        nullable integer column (empty when the person has no kept action).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    n = boxes.shape[0]
    if scores.ndim != 2 or scores.shape[0] != n or len(timestamps) != n or len(person_ids) != n \
            or len(detector_scores) != n:
        raise ValueError(
            f"person table needs N timestamps, ids, detector scores, (N, 4) boxes and (N, C) scores; got "
            f"{len(timestamps)}, {len(person_ids)}, {len(detector_scores)}, {boxes.shape}, {scores.shape}"
        )
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    person_idx: list[int] = []
    action_ids: list[int | None] = []
    action_scores: list[float] = []
    for i in range(n):
        order = np.argsort(-scores[i], kind="stable")  # descending score, lower id first on ties
        kept = [int(k) for k in order if scores[i, k] >= threshold]
        if topk is not None:
            kept = kept[:topk]
        if not kept:
            person_idx.append(i)
            action_ids.append(None)
            action_scores.append(np.nan)
        for k in kept:
            person_idx.append(i)
            action_ids.append(k + 1)
            action_scores.append(float(scores[i, k]))
    idx = np.asarray(person_idx, dtype=np.int64)
    ids = pd.array(action_ids, dtype="Int64")
    names = [class_names.get(a, "") if a is not None else None for a in action_ids]
    return pd.DataFrame(
        {
            "video_id": [video_id] * len(idx),
            "timestamp": np.asarray(timestamps, dtype=np.float64)[idx] if n else np.zeros(0),
            "person_id": np.asarray(person_ids, dtype=np.int64)[idx] if n else np.zeros(0, np.int64),
            "x1": boxes[idx, 0],
            "y1": boxes[idx, 1],
            "x2": boxes[idx, 2],
            "y2": boxes[idx, 3],
            "detector_score": np.asarray(detector_scores, dtype=np.float64)[idx] if n else np.zeros(0),
            "action_id": ids,
            "action_name": pd.array(names, dtype="string"),
            "score": np.asarray(action_scores, dtype=np.float64),
        },
        columns=ACTION_COLUMNS,
    )


def actions_to_ava_frame(actions: pd.DataFrame) -> pd.DataFrame:
    """The AVA detection table (:data:`AVA_DETECTION_COLUMNS`) of a :func:`person_actions_frame` table.

    Rows without an action are dropped. Timestamps are written as integers when they all are whole seconds
    (AVA keyframes), else as floats; the evaluator reads both.
    """
    rows = actions[actions["action_id"].notna()]
    timestamps = rows["timestamp"].to_numpy(dtype=np.float64)
    whole = bool(np.all(np.equal(np.mod(timestamps, 1.0), 0.0)))
    return pd.DataFrame(
        {
            "video_id": rows["video_id"].to_numpy(dtype=object),
            "timestamp": timestamps.astype(np.int64) if whole else timestamps,
            "x1": rows["x1"].to_numpy(),
            "y1": rows["y1"].to_numpy(),
            "x2": rows["x2"].to_numpy(),
            "y2": rows["y2"].to_numpy(),
            "action_id": rows["action_id"].to_numpy(dtype=np.int64),
            "score": rows["score"].to_numpy(),
        },
        columns=AVA_DETECTION_COLUMNS,
    )


def write_actions_csv(path: str | os.PathLike[str], actions: pd.DataFrame) -> Path:
    """Write a :func:`person_actions_frame` table with its header, atomically (an empty table: header only)."""
    if list(actions.columns) != ACTION_COLUMNS:
        raise ValueError(f"action table columns must be {ACTION_COLUMNS}, got {list(actions.columns)}")
    return atomic.write_csv_atomic(actions, path, header=True)
