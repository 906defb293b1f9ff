"""Trackers that give person boxes stable ids across keyframes.

Two policies, one ``update`` call per keyframe, boxes as ``x1, y1, x2, y2`` normalised to the image ([0, 1]):

:class:`PersonTracker` (what ``detect-video`` and ``detect-video live`` use; SORT / DeepSORT / ByteTrack-like):

* every track predicts its box with a constant-velocity model (last observed box plus the smoothed
  per-keyframe box change times the keyframes since it was seen);
* **motion**: a track and a detection may be linked when the detection's centre lies within ``motion_gate``
  track heights (plus ``|log|`` of the height ratio) of the predicted centre *or* of the last observed one
  (people turn round and stop), the gate growing by that much for every keyframe the track was missed, or
  when the IoU with the prediction is at least ``iou_threshold``. Keyframes are a second apart: a walker
  moves a box width or more between two of them, so boxes of the same person often do not overlap at all and
  an IoU gate alone loses them;
* **appearance** (when the keyframe image is passed): colour histograms of the upper and the lower half of each
  box (hue x saturation for coloured pixels, brightness for grey ones, weighted towards the box centre, with
  the colours of the ring around the box damped, as in background-weighted mean-shift tracking) compared by the
  Bhattacharyya coefficient with the track's running average (EMA ``appearance_momentum``; not updated from
  boxes that overlap another detection, whose pixels are mixed). Pairs whose appearance distance exceeds
  ``appearance_gate`` are never linked; the matching cost is
  ``appearance_weight x appearance distance + (1 - appearance_weight) x motion cost`` (motion cost: the mean
  of ``1 - IoU`` and the centre distance over the gate);
* matching is Hungarian (:func:`scipy.optimize.linear_sum_assignment`) in rounds, as DeepSORT's cascade and
  ByteTrack: the tracks seen at the previous keyframe against the confident detections (detector score at
  least ``high_score``; all of them when no scores are given), then the lost tracks against the confident
  detections left, then the tentative tracks (below) against those left, then the tracks seen at the previous
  keyframe and still unmatched against the low-score detections. A lost track's prediction therefore cannot
  take a box from a person followed without a gap, and a doubtful box cannot take a track from a confident one;
* an unmatched track is *lost*; it is kept, and can be re-found, for ``max_age`` keyframes, then dropped;
* an unmatched detection starts a new track with a fresh id (ids count up from 1 and are never reused); a track
  begun by a low-score detection is *tentative* until matched again, and dropped at its first miss.

Ids thus hold through crossings (the colours differ even where the motion is ambiguous), fast movers whose
boxes never overlap between keyframes, turns, and occlusions or missed detections of up to ``max_age``
keyframes; a person who re-enters after ``max_age`` keyframes gets a new id. Without the image the policy is
the same on motion alone. Same inputs give the same ids (no randomness; ties broken by input order).

:class:`IoUTracker` (the earlier policy, kept for comparison: ``tests/benchmarks/bench_tracker.py``): the same
constant-velocity prediction and two rounds, but a pair is linked only if the IoU of the prediction and the box
is at least ``iou_threshold``, and appearance is not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["IoUTracker", "PersonTracker", "Track", "box_histograms", "pairwise_iou"]


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
        feature: (D,) appearance (:func:`box_histograms` row, running average), None when no image was given.
        tentative: begun by a low-score detection and not matched since (:class:`PersonTracker` drops it at its
            first miss).
    """

    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0
    hits: int = 1
    feature: np.ndarray | None = None
    tentative: bool = False

    def predict(self) -> np.ndarray:
        """(4,) box expected at the next keyframe."""
        return self.box + self.velocity * (self.misses + 1)


class _TrackerState:
    """What every tracker here holds: its checked common settings, its tracks and the next fresh id."""

    def __init__(self, *, iou_threshold: float, max_age: int, velocity_smoothing: float) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.velocity_smoothing = velocity_smoothing
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks; ids start again from 1 (one tracker state per video)."""
        self.tracks = []
        self._next_id = 1

    def _count_misses(self, matched: set[int]) -> None:
        """One more miss for every track not matched at this keyframe (``matched``: ``id()`` of the matched)."""
        for track in self.tracks:
            if id(track) not in matched:
                track.misses += 1


class IoUTracker(_TrackerState):
    """Links per-keyframe boxes into tracks by IoU alone (the earlier policy, in the module docstring).

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
        super().__init__(iou_threshold=iou_threshold, max_age=max_age, velocity_smoothing=velocity_smoothing)
        self.motion_model = motion_model

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
        self._count_misses(matched)
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
        _observe_motion(track, box, self.velocity_smoothing)


# ----------------------------------------------------------------------------------------------------------
# Appearance
# ----------------------------------------------------------------------------------------------------------

_HUE_BINS, _SAT_BINS, _GREY_BINS = 16, 2, 4
#: pixels less saturated or darker than this count as grey (their hue is noise)
_CHROMA_MIN = 0.2
#: crops are subsampled to at most this many pixels on their long side (cost independent of the resolution)
_CROP_LONG_SIDE = 64
#: the ring whose colours are damped: the box grown by this fraction of its size on each side
_RING = 0.25
#: bins of one histogram; a descriptor holds two (upper and lower half of the box: shirt and trousers)
HISTOGRAM_BINS = _HUE_BINS * _SAT_BINS + _GREY_BINS


def _bins_of(bgr: np.ndarray) -> np.ndarray:
    """Histogram bin of each pixel of (..., 3) uint8 BGR: hue x saturation if coloured, else brightness."""
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    v = rgb.max(axis=-1)
    c = v - rgb.min(axis=-1)
    s = np.divide(c, v, out=np.zeros_like(v), where=v > 0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.where(c > 0, c, 1.0)
    sector = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = (sector / 6.0) % 1.0
    coloured = (s >= _CHROMA_MIN) & (v >= _CHROMA_MIN)
    h_bin = np.minimum((hue * _HUE_BINS).astype(np.int64), _HUE_BINS - 1)
    s_bin = np.minimum(((s - _CHROMA_MIN) / (1 - _CHROMA_MIN) * _SAT_BINS).astype(np.int64), _SAT_BINS - 1)
    grey_bin = _HUE_BINS * _SAT_BINS + np.minimum((v * _GREY_BINS).astype(np.int64), _GREY_BINS - 1)
    return np.where(coloured, h_bin * _SAT_BINS + np.clip(s_bin, 0, None), grey_bin)


def box_histograms(image: np.ndarray, boxes: np.ndarray, *, background_weighting: bool = True) -> np.ndarray:
    """Appearance descriptor of each box: colour histograms of the upper and the lower half of its pixels.

    Args:
        image: (H, W, 3) uint8 BGR keyframe.
        boxes: (N, 4) ``x1, y1, x2, y2`` normalised to the image.
        background_weighting: damp the colours frequent in the ring around the box (the background, or a
            neighbour), bin ``u`` by ``min(1, b_min / b_u)`` with ``b`` the ring's histogram (Comaniciu et al.).
    Returns:
        (N, 2 * HISTOGRAM_BINS) float64, the square roots of the two histograms side by side, normalised
        together (unit L2 norm), so the dot product of two rows is their Bhattacharyya coefficient (1: same
        colours in the same halves, 0: none shared); an all-zero row for a box without pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), 2 * HISTOGRAM_BINS))
    for i, (x1, y1, x2, y2) in enumerate(boxes * np.array([w, h, w, h])):
        bw, bh = x2 - x1, y2 - y1
        if not (bw > 0 and bh > 0):
            continue
        step = max(1, int(np.ceil(max(bw, bh) * (1 + 2 * _RING) / _CROP_LONG_SIDE)))
        gx1, gy1 = max(0, int(np.floor(x1 - _RING * bw))), max(0, int(np.floor(y1 - _RING * bh)))
        gx2, gy2 = min(w, int(np.ceil(x2 + _RING * bw))), min(h, int(np.ceil(y2 + _RING * bh)))
        ys, xs = np.arange(gy1, gy2, step), np.arange(gx1, gx2, step)
        if not len(ys) or not len(xs):
            continue
        bins = _bins_of(image[ys[:, None], xs[None, :]])
        # box coordinates of the pixel centres: |u|, |v| <= 1 inside the box
        u = (xs[None, :] + 0.5 - (x1 + x2) / 2) / (bw / 2)
        v = (ys[:, None] + 0.5 - (y1 + y2) / 2) / (bh / 2)
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
        # Epanechnikov kernel: the box's centre is the person, its corners are often background
        kernel = np.clip(1.0 - u**2 - v**2, 0.0, None) * inside
        upper = np.broadcast_to(v < 0, kernel.shape)
        hist = np.concatenate([
            np.bincount(bins[upper], weights=kernel[upper], minlength=HISTOGRAM_BINS),
            np.bincount(bins[~upper], weights=kernel[~upper], minlength=HISTOGRAM_BINS),
        ])
        ring = np.bincount(bins[~inside], minlength=HISTOGRAM_BINS).astype(np.float64)
        if background_weighting and ring.sum() > 0:
            present = ring > 0
            damp = np.ones(HISTOGRAM_BINS)
            damp[present] = np.minimum(1.0, ring[present].min() / ring[present])
            hist = hist * np.tile(damp, 2)
        total = hist.sum()
        if total > 0:
            out[i] = np.sqrt(hist / total)
    return out


# ----------------------------------------------------------------------------------------------------------
# Motion + appearance tracker
# ----------------------------------------------------------------------------------------------------------


def _centre_distance(tracks: list[Track], boxes: np.ndarray, aspect: float) -> np.ndarray:
    """(T, N) distance from each detection's centre to the nearer of the track's predicted and last centres,
    in track heights (x scaled by the image ``aspect`` = width / height, so the units are square), plus
    ``|log|`` of the height ratio (a box half or twice as tall is one height further)."""
    scale = np.array([aspect, 1.0])
    det_c = (boxes[:, :2] + boxes[:, 2:]) / 2 * scale
    det_h = np.clip(boxes[:, 3] - boxes[:, 1], 1e-6, None)
    out = np.empty((len(tracks), len(boxes)))
    for i, t in enumerate(tracks):
        height = max(float(t.box[3] - t.box[1]), 1e-6)
        pred, last = t.predict(), t.box
        d_pred = np.linalg.norm(det_c - (pred[:2] + pred[2:]) / 2 * scale, axis=1)
        d_last = np.linalg.norm(det_c - (last[:2] + last[2:]) / 2 * scale, axis=1)
        out[i] = np.minimum(d_pred, d_last) / height + np.abs(np.log(det_h / height))
    return out


class PersonTracker(_TrackerState):
    """Links per-keyframe person boxes into tracks by motion and appearance (policy in the module docstring).

    Args:
        iou_threshold: IoU with the prediction that links a pair even outside the motion gate.
        max_age: keyframes a lost track is kept for re-finding before it is dropped.
        motion_gate: largest centre distance, in track heights per keyframe since the track was seen, for a link.
        appearance_gate: largest appearance distance (1 - Bhattacharyya coefficient) for a link.
        appearance_weight: share of the appearance distance in the matching cost (the rest is motion).
        appearance_momentum: weight of a track's old appearance when a new box updates it.
        high_score: detector score of a confident detection (matched first; see the module docstring).
        velocity_smoothing: weight of the newest velocity estimate (1 = no smoothing).
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        max_age: int = 3,
        motion_gate: float = 1.5,
        appearance_gate: float = 0.5,
        appearance_weight: float = 0.6,
        appearance_momentum: float = 0.7,
        high_score: float = 0.7,
        velocity_smoothing: float = 0.7,
    ) -> None:
        super().__init__(iou_threshold=iou_threshold, max_age=max_age, velocity_smoothing=velocity_smoothing)
        if motion_gate <= 0:
            raise ValueError(f"motion_gate must be > 0, got {motion_gate}")
        if not 0.0 < appearance_gate <= 1.0:
            raise ValueError(f"appearance_gate must be in (0, 1], got {appearance_gate}")
        if not 0.0 <= appearance_weight <= 1.0:
            raise ValueError(f"appearance_weight must be in [0, 1], got {appearance_weight}")
        if not 0.0 <= appearance_momentum < 1.0:
            raise ValueError(f"appearance_momentum must be in [0, 1), got {appearance_momentum}")
        self.motion_gate = motion_gate
        self.appearance_gate = appearance_gate
        self.appearance_weight = appearance_weight
        self.appearance_momentum = appearance_momentum
        self.high_score = high_score

    def _match(self, tracks: list[Track], boxes: np.ndarray, features: np.ndarray | None, free: list[int],
               aspect: float) -> list[tuple[int, int]]:
        """Hungarian matching of ``tracks`` to detections ``free`` (indices); returns (track idx, det idx)."""
        if not tracks or not free:
            return []
        det = boxes[free]
        iou = pairwise_iou(np.stack([t.predict() for t in tracks]), det)
        gate = self.motion_gate * (1.0 + np.array([t.misses for t in tracks], dtype=np.float64))[:, None]
        dist = _centre_distance(tracks, det, aspect)
        allowed = (dist <= gate) | (iou >= self.iou_threshold)
        cost = (1.0 - iou + np.minimum(dist / gate, 1.0)) / 2.0
        if features is not None:
            f_det = features[free]
            has_det = f_det.any(axis=1)
            for i, t in enumerate(tracks):
                if t.feature is None or not t.feature.any():
                    continue
                app = np.where(has_det, 1.0 - f_det @ t.feature, 0.0)
                allowed[i] &= app <= self.appearance_gate
                cost[i] = np.where(has_det, self.appearance_weight * app + (1 - self.appearance_weight) * cost[i],
                                   cost[i])
        rows, cols = linear_sum_assignment(np.where(allowed, cost, 1e6))
        return [(int(r), free[int(c)]) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]

    def update(self, boxes: np.ndarray, *, scores: np.ndarray | None = None,
               image: np.ndarray | None = None) -> np.ndarray:
        """Assign ids to the detections of the next keyframe.

        Args:
            boxes: (N, 4) ``x1, y1, x2, y2`` of this keyframe's detections, normalised to the image (N may be 0).
            scores: (N,) detector scores (None: all detections are confident).
            image: (H, W, 3) uint8 BGR keyframe the boxes were detected on (None: motion only).
        Returns:
            (N,) int64 track ids, in the order of ``boxes``.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        if scores is not None and len(scores) != n:
            raise ValueError(f"{len(scores)} scores for {n} boxes")
        features = box_histograms(image, boxes) if image is not None and n else None
        aspect = image.shape[1] / image.shape[0] if image is not None else 1.0
        # boxes overlapping another detection mix two people's pixels: they do not update a track's appearance
        overlap = pairwise_iou(boxes, boxes) - np.eye(n)
        mixed = [bool((overlap[i] > 0.2).any()) for i in range(n)]
        confident = np.ones(n, bool) if scores is None else np.asarray(scores, dtype=np.float64) >= self.high_score
        ids = np.zeros(n, dtype=np.int64)
        high = [i for i in range(n) if confident[i]]
        low = [i for i in range(n) if not confident[i]]
        matched: set[int] = set()
        followed = [t for t in self.tracks if t.misses == 0 and not t.tentative]
        lost = [t for t in self.tracks if t.misses > 0]
        tentative = [t for t in self.tracks if t.tentative]
        for group, free in ((followed, high), (lost, high), (tentative, high), (None, low)):
            if group is None:  # low-score boxes continue only tracks followed without a gap (as ByteTrack)
                group = [t for t in followed + tentative if id(t) not in matched]
            for track_idx, det in self._match(group, boxes, features, free, aspect):
                track = group[track_idx]
                self._observe(track, boxes[det], None if features is None or mixed[det] else features[det])
                ids[det] = track.track_id
                matched.add(id(track))
                free.remove(det)
        self._count_misses(matched)
        # a track begun by a low-score box (often a false positive or two people in one box) is dropped at its
        # first miss, so it cannot later take a person's box
        self.tracks = [t for t in self.tracks if t.misses <= (0 if t.tentative else self.max_age)]
        for det in sorted(high + low):
            track = Track(self._next_id, boxes[det].copy(), feature=None if features is None else features[det],
                          tentative=not confident[det])
            self._next_id += 1
            self.tracks.append(track)
            ids[det] = track.track_id
        return ids

    def _observe(self, track: Track, box: np.ndarray, feature: np.ndarray | None) -> None:
        _observe_motion(track, box, self.velocity_smoothing)
        if feature is not None and feature.any():
            if track.feature is None or not track.feature.any():
                track.feature = feature.copy()
            else:
                mixed = self.appearance_momentum * track.feature + (1.0 - self.appearance_momentum) * feature
                track.feature = mixed / np.linalg.norm(mixed)


def _observe_motion(track: Track, box: np.ndarray, smoothing: float) -> None:
    """Update a matched track's box and smoothed velocity (per keyframe, over the gap since it was seen)."""
    track.tentative = False
    gap = track.misses + 1
    new_velocity = (box - track.box) / gap
    if track.hits == 1:
        track.velocity = new_velocity  # first motion estimate: nothing to smooth with
    else:
        track.velocity = smoothing * new_velocity + (1.0 - smoothing) * track.velocity
    track.box = box.copy()
    track.misses = 0
    track.hits += 1
