"""IoU tracker that gives person boxes stable ids across keyframes.

Policy (one :meth:`IoUTracker.update` call per keyframe, boxes in any fixed coordinate frame, e.g. normalised):

* every track predicts its box at the current keyframe with a constant-velocity model: last observed box plus
  ``velocity x (keyframes since it was seen)``; the velocity is the per-keyframe box change between its two
  latest observations, smoothed (``velocity_smoothing``) so one noisy box does not throw it off;
* matching is Hungarian (:func:`scipy.optimize.linear_sum_assignment`) on ``1 - IoU(prediction, detection)``,
  in two rounds: first the tracks seen at the previous keyframe, then the lost ones against the detections
  still free (as DeepSORT's matching cascade), so a lost track's prediction cannot take a box from a track
  followed without a gap. A pair is accepted only if its IoU is at least ``iou_threshold``;
* an unmatched track is *lost*; it is kept, and can be re-found, for ``max_age`` keyframes, then dropped;
* an unmatched detection starts a new track with a fresh id (ids count up from 1 and are never reused).

The tracker sees only boxes; appearance is not used. Ids therefore hold through crossings with steady motion,
short occlusions (``<= max_age`` keyframes) along a steady path, and re-detections after missed keyframes;
a person who re-enters elsewhere or after ``max_age`` keyframes gets a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["IoUTracker", "Track", "pairwise_iou"]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box pair. ``a``: (N, 4), ``b``: (M, 4) ``x1, y1, x2, y2`` -> (N, M) float64 in [0, 1]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class Track:
    """One person followed over keyframes.

    Attributes:
        track_id: stable id (>= 1).
        box: (4,) last observed box.
        velocity: (4,) smoothed box change per keyframe.
        misses: keyframes since the last observation (0 = seen at the latest update).
        hits: number of observations.
    """

    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0
    hits: int = 1

    def predict(self) -> np.ndarray:
        """(4,) box expected at the next keyframe."""
        return self.box + self.velocity * (self.misses + 1)


class IoUTracker:
    """Links per-keyframe boxes into tracks with stable ids (policy in the module docstring).

    Args:
        iou_threshold: smallest IoU between a prediction and a detection for them to be linked.
        max_age: keyframes a lost track is kept for re-finding before it is dropped.
        velocity_smoothing: weight of the newest velocity estimate (1 = no smoothing).
        motion_model: predict with constant velocity; False matches against the last observed box only.
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        max_age: int = 3,
        velocity_smoothing: float = 0.7,
        motion_model: bool = True,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.velocity_smoothing = velocity_smoothing
        self.motion_model = motion_model
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks; ids start again from 1 (one tracker state per video)."""
        self.tracks = []
        self._next_id = 1

    def _match(self, tracks: list[Track], boxes: np.ndarray, free: list[int]) -> list[tuple[int, int]]:
        """Hungarian matching of ``tracks`` to detections ``free`` (indices); returns (track idx, det idx)."""
        if not tracks or not free:
            return []
        predictions = np.stack([t.predict() for t in tracks])
        iou = pairwise_iou(predictions, boxes[free])
        rows, cols = linear_sum_assignment(1.0 - iou)
        return [(int(r), free[int(c)]) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.iou_threshold]

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """Assign ids to the detections of the next keyframe.

        Args:
            boxes: (N, 4) ``x1, y1, x2, y2`` of this keyframe's detections (N may be 0).
        Returns:
            (N,) int64 track ids, in the order of ``boxes``.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = np.zeros(len(boxes), dtype=np.int64)
        free = list(range(len(boxes)))
        matched: set[int] = set()
        for group in ([t for t in self.tracks if t.misses == 0], [t for t in self.tracks if t.misses > 0]):
            for track_idx, det in self._match(group, boxes, free):
                track = group[track_idx]
                self._observe(track, boxes[det])
                ids[det] = track.track_id
                matched.add(id(track))
                free.remove(det)
        for track in self.tracks:
            if id(track) not in matched:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        for det in free:
            track = Track(self._next_id, boxes[det].copy())
            self._next_id += 1
            self.tracks.append(track)
            ids[det] = track.track_id
        return ids

    def _observe(self, track: Track, box: np.ndarray) -> None:
        if not self.motion_model:
            track.box, track.misses, track.hits = box.copy(), 0, track.hits + 1
            return
        gap = track.misses + 1
        new_velocity = (box - track.box) / gap
        if track.hits == 1:
            track.velocity = new_velocity  # first motion estimate: nothing to smooth with
        else:
            w = self.velocity_smoothing
            track.velocity = w * new_velocity + (1.0 - w) * track.velocity
        track.box = box.copy()
        track.misses = 0
        track.hits += 1
