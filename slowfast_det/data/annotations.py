"""AVA frame lists, boxes and labels, combined as PySlowFast's ``ava_helper`` combines them.

* Frame lists: the header line is skipped; only the video column and the path column are used; a video's
  frames are its rows in file order (``frame_id`` is ignored). Video indices follow first appearance.
* Boxes: the GT files (training only) then the predicted-box files are read in order; a predicted row is
  dropped iff ``score < score_thresh``; rows are merged per ``(video, second, coordinate text)`` -- the box
  of the first occurrence is kept and the labels of all occurrences are joined (an empty label adds none);
  seconds outside ``keyframe_range`` (AVA: 902..1798) are dropped; with ``keyframe_stride`` k > 1
  (PySlowFast's ``val`` split without AVA.FULL_TEST_ON_VAL uses 4) only seconds divisible by k are kept.
* Keyframes: every ``(video, second)`` with at least one box, by video index then second; boxes in order of
  first appearance. Keyframes without boxes do not exist (PySlowFast skips them too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ava_tools.io import read_annotations, read_frame_list_table, read_predicted_boxes
from ava_tools.labelmap import AvaFormatError
from ava_tools.timeline import AVA_KEYFRAME_RANGE

__all__ = ["FrameLists", "Keyframes", "describe", "load_boxes_and_labels", "load_frame_lists"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameLists:
    """Frame paths per video, stored compactly (one Arrow string buffer; no per-path Python objects).

    Attributes:
        video_names: video ids in index order.
        paths: every frame path as written in the lists, grouped by video, file order within a video.
        offsets: (V + 1,) int64; video ``v``'s frames are ``paths[offsets[v]:offsets[v + 1]]``.
        frame_dir: folder the paths are relative to (``os.path.join(frame_dir, path)``, as PySlowFast).
        sources: the frame-list files, for error messages.
    """

    video_names: list[str]
    paths: pa.Array
    offsets: np.ndarray
    frame_dir: str
    sources: tuple[str, ...]

    def num_frames(self, video_idx: int) -> int:
        """Number of frames of video ``video_idx``."""
        return int(self.offsets[video_idx + 1] - self.offsets[video_idx])

    def frame_path(self, video_idx: int, frame_idx: int) -> str:
        """Full path of 0-based frame ``frame_idx`` of video ``video_idx``."""
        if not 0 <= frame_idx < self.num_frames(video_idx):
            raise IndexError(
                f"video {self.video_names[video_idx]} has {self.num_frames(video_idx)} frames, "
                f"no frame {frame_idx}"
            )
        rel = self.paths[int(self.offsets[video_idx]) + int(frame_idx)].as_py()
        return os.path.join(self.frame_dir, rel)


def load_frame_lists(
    list_files: Sequence[str | os.PathLike[str]], frame_dir: str | os.PathLike[str]
) -> FrameLists:
    """Read PySlowFast frame lists (see :func:`ava_tools.io.read_frame_list`) into :class:`FrameLists`.

    Several files share one video index space: a video listed in two files gets the rows of both, in order.
    """
    if not list_files:
        raise ValueError("no frame list given (AVA.TRAIN_LISTS / AVA.TEST_LISTS)")
    tables = [read_frame_list_table(f).select(["original_vido_id", "path"]) for f in list_files]
    table = pa.concat_tables(tables)
    if table.num_rows == 0:
        raise ValueError(f"frame lists {[str(f) for f in list_files]} hold no frames")
    # dictionary codes follow first appearance: PySlowFast's video index order
    encoded = pc.dictionary_encode(table.column("original_vido_id").combine_chunks())
    codes = encoded.indices.to_numpy()
    uniques = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uniques))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    paths = table.column("path").combine_chunks().cast(pa.large_string()).take(pa.array(order))
    return FrameLists(
        video_names=[str(v) for v in uniques],
        paths=paths,
        offsets=offsets,
        frame_dir=str(frame_dir),
        sources=tuple(str(f) for f in list_files),
    )


@dataclass(frozen=True)
class Keyframes:
    """Keyframes with their boxes and multi-hot labels.

    Attributes:
        video_names: video ids in index order.
        video_idx: (K,) int64 video index of each keyframe.
        second: (K,) int64 keyframe second.
        offsets: (K + 1,) int64; keyframe ``k``'s boxes are rows ``offsets[k]:offsets[k + 1]``.
        boxes: (N, 4) float64 normalised ``x1, y1, x2, y2`` as read (not clipped).
        labels: (N, num_classes) uint8 multi-hot; action id ``a`` (1-based) sets column ``a - 1``.
        box_scores: (N,) float64 person score of each box: the predicted-box file's score column, 1.0 for a
            ground-truth box (the highest where a box text is in several files).
    """

    video_names: list[str]
    video_idx: np.ndarray
    second: np.ndarray
    offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    box_scores: np.ndarray

    def __len__(self) -> int:
        return int(self.video_idx.shape[0])

    def boxes_of(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (n, 4) float64, labels (n, num_classes) uint8)`` of keyframe ``k`` (copies)."""
        lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
        return self.boxes[lo:hi].copy(), self.labels[lo:hi].copy()

    def box_scores_of(self, k: int) -> np.ndarray:
        """(n,) float64 person scores of keyframe ``k``'s boxes (a copy; 1.0 for ground-truth boxes)."""
        return self.box_scores[int(self.offsets[k]):int(self.offsets[k + 1])].copy()


def _read_box_file(path: str, is_gt: bool, score_thresh: float) -> pd.DataFrame:
    if is_gt:
        table = read_annotations(path, with_source=True)
    else:
        table = read_predicted_boxes(path, score_thresh=score_thresh, with_source=True)
    table = table.assign(box_score=1.0 if is_gt else table["score"].to_numpy(np.float64))
    return table[["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "line", "box_text", "box_score"]]


def load_boxes_and_labels(
    gt_files: Sequence[str | os.PathLike[str]],
    predicted_files: Sequence[str | os.PathLike[str]],
    *,
    score_thresh: float,
    num_classes: int,
    video_names: Sequence[str] | None = None,
    keyframe_range: tuple[int, int] = AVA_KEYFRAME_RANGE,
    keyframe_stride: int = 1,
) -> Keyframes:
    """Boxes and labels per keyframe (the module docstring gives the rules).

    Args:
        gt_files: ground-truth annotation CSVs (AVA.TRAIN_GT_BOX_LISTS for training; none for testing).
        predicted_files: predicted-box CSVs (AVA.TRAIN_PREDICT_BOX_LISTS / AVA.TEST_PREDICT_BOX_LISTS).
        score_thresh: AVA.DETECTION_SCORE_THRESH, applied to predicted boxes only.
        num_classes: MODEL.NUM_CLASSES; action ids must lie in 1..num_classes.
        video_names: video index order (the frame lists'); None: order of first appearance in the files.
        keyframe_range: inclusive ``(first, last)`` keyframe second.
        keyframe_stride: keep only seconds divisible by it.

    Raises:
        AvaFormatError: an action id outside 1..num_classes, a video absent from ``video_names`` (naming the
            file and line), or any malformed row.
    """
    files = [(str(f), True) for f in gt_files] + [(str(f), False) for f in predicted_files]
    if not files:
        raise ValueError("no box file given (AVA.*_BOX_LISTS)")
    tables = []
    lo_sec, hi_sec = keyframe_range
    for file_idx, (path, is_gt) in enumerate(files):
        table = _read_box_file(path, is_gt, score_thresh)
        action = table["action_id"].to_numpy()
        bad = (action != -1) & ((action < 1) | (action > num_classes))
        if bad.any():
            i = int(np.argmax(bad))
            raise AvaFormatError(
                f"action id {action[i]} outside the label range 1..{num_classes}",
                path=path, line=int(table["line"].iloc[i]), column=7,
            )
        sec = table["timestamp"].to_numpy()
        keep = np.ones(len(table), dtype=bool)
        if keyframe_stride > 1:
            keep &= sec % keyframe_stride == 0
        in_range = (sec >= lo_sec) & (sec <= hi_sec)
        if (keep & ~in_range).any():
            logger.warning(
                "%s: %d rows with seconds outside %d..%d ignored",
                path,
                int((keep & ~in_range).sum()),
                lo_sec,
                hi_sec,
            )
        keep &= in_range
        coords = table[["x1", "y1", "x2", "y2"]].to_numpy()
        outside = keep & ((coords < 0) | (coords > 1)).any(axis=1)
        if outside.any():
            logger.warning(
                "%s: %d boxes reach outside [0, 1]; they are clipped to the frame as PySlowFast does",
                path,
                int(outside.sum()),
            )
        table = table[keep].copy()
        table["file"] = file_idx
        tables.append(table)
    rows = pd.concat(tables, ignore_index=True)

    if video_names is None:
        video_names = [str(v) for v in pd.unique(rows["video_id"])]
    name_to_idx = {name: i for i, name in enumerate(video_names)}
    vid = rows["video_id"].map(name_to_idx)
    if vid.isna().any():
        i = int(np.argmax(vid.isna().to_numpy()))
        raise AvaFormatError(
            f"video {rows['video_id'].iloc[i]!r} is not in the frame lists",
            path=files[int(rows["file"].iloc[i])][0], line=int(rows["line"].iloc[i]), column=1,
        )
    rows["video_idx"] = vid.to_numpy(dtype=np.int64)

    # one box per (video, second, coordinate text), numbered in order of first appearance
    box_id = rows.groupby(["video_idx", "timestamp", "box_text"], sort=False).ngroup().to_numpy()
    first = ~rows.duplicated(["video_idx", "timestamp", "box_text"]).to_numpy()
    n_boxes = int(first.sum())
    boxes = rows.loc[first, ["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    box_video = rows.loc[first, "video_idx"].to_numpy()
    box_sec = rows.loc[first, "timestamp"].to_numpy(dtype=np.int64)
    labels = np.zeros((n_boxes, num_classes), dtype=np.uint8)
    action = rows["action_id"].to_numpy()
    has_label = action != -1
    labels[box_id[has_label], action[has_label] - 1] = 1
    box_scores = np.full(n_boxes, -np.inf)
    np.maximum.at(box_scores, box_id, rows["box_score"].to_numpy(np.float64))

    order = np.lexsort((box_sec, box_video))  # stable: first-appearance order within a keyframe
    boxes, labels, box_video, box_sec = boxes[order], labels[order], box_video[order], box_sec[order]
    box_scores = box_scores[order]
    starts = (
        np.flatnonzero(np.r_[True, (np.diff(box_video) != 0) | (np.diff(box_sec) != 0)])
        if n_boxes
        else np.zeros(0, dtype=np.int64)
    )
    offsets = np.append(starts, n_boxes).astype(np.int64)
    return Keyframes(
        video_names=list(video_names),
        video_idx=box_video[starts].astype(np.int64),
        second=box_sec[starts].astype(np.int64),
        offsets=offsets,
        boxes=np.ascontiguousarray(boxes),
        labels=labels,
        box_scores=box_scores,
    )


def describe(keyframes: Keyframes, frame_lists: FrameLists | None = None) -> str:
    """One-line summary (videos, frames, keyframes, boxes) like PySlowFast's dataset summary."""
    frames = "" if frame_lists is None else f", {int(frame_lists.offsets[-1])} frames"
    return (
        f"{len(keyframes.video_names)} videos{frames}, {len(keyframes)} keyframes, "
        f"{keyframes.boxes.shape[0]} boxes"
    )
