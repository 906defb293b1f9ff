"""The public API: :func:`evaluate` and its :class:`EvalResult`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    import pandas as pd

from ava_tools.evaluate.cap import _groups, _order_groundtruth, _read_groundtruth, _resolve_cap
from ava_tools.evaluate.keys import _key_error, _KeyTable
from ava_tools.evaluate.metrics import _class_aps, _match, _read_detections, _replay, _sensitive_keys, _true_positives
from ava_tools.evaluate.readers import (
    _Filter,
    _is_frame,
    _release_arrow_memory,
    _Source,
    _with_fallback,
    read_exclusions_csv,
)
from ava_tools.evaluate.rows import _COORDS, _MAX_CLASS_ID, DETECTION_CAPACITY, MAP_KEY, OFFICIAL_IOU, metric_key
from ava_tools.labelmap import (
    AVA_V22_ACTIVITYNET,
    AVA_V22_ALL,
    CATEGORY_GROUPS,
    AvaFormatError,
    LabelMap,
    bundled_labelmap_path,
    load_bundled_labelmap,
    read_labelmap,
)


@dataclass
class EvalResult:
    """Result of :func:`evaluate`.

    Attributes:
        metrics: the official flat dict: ``MAP_KEY`` then one ``metric_key(name)`` per label-map name, values
            exactly as ActivityNet's evaluator returns them (NaN for classes without ground truth).
        per_class: DataFrame with columns id, name, ap, n_gt, n_det (one row per label-map id, ascending);
            built from ``class_table`` (the same columns as lists).
        mean_ap: ``metrics[MAP_KEY]``.
        group_ap: NOT official. Mean AP of the classes of each AVA category (pose, person-object,
            person-person), NaN classes left out.
        iou_metrics: NOT official. ``{threshold: {"mAP": ..., <class name>: AP}}`` for the extra IoU thresholds.
        stats: counts (rows read, detections scored, keyframes, keyframes replayed through the exact heap).
        legacy: True when the earlier release's semantics (``-e``) were used.
    """

    metrics: dict[str, float]
    class_table: dict[str, list[Any]]  # the per_class columns as lists
    mean_ap: float
    group_ap: dict[str, float] = field(default_factory=dict)
    iou_metrics: dict[float, dict[str, float]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    legacy: bool = False

    @property
    def per_class(self) -> pd.DataFrame:
        """Columns id, name, ap, n_gt (GT boxes evaluated), n_det (detections evaluated), ascending id."""
        import pandas as pd

        return pd.DataFrame(self.class_table)


def _as_labelmap(labelmap: str | os.PathLike[str] | LabelMap | None) -> LabelMap:
    if labelmap is None:
        return read_labelmap(bundled_labelmap_path(AVA_V22_ACTIVITYNET))
    if isinstance(labelmap, LabelMap):
        return labelmap
    return read_labelmap(labelmap)


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def _exclusion_keys(exclusions: str | os.PathLike[str] | pd.DataFrame, keys: _KeyTable) -> np.ndarray:
    frame = exclusions if _is_frame(exclusions) else read_exclusions_csv(cast("str | os.PathLike[str]", exclusions))
    ids = []
    for video, ts in zip(frame["video_id"].tolist(), frame["timestamp"].tolist(), strict=True):
        try:
            ids.append(keys.id_of(str(video), ts))
        except (ValueError, ArithmeticError, TypeError):
            raise _key_error("exclusions", None, video, ts, keys.legacy) from None
    excluded = np.zeros(len(keys), bool)
    excluded[ids] = True
    return excluded


def evaluate(
    groundtruth: str | os.PathLike[str] | pd.DataFrame,
    detections: str | os.PathLike[str] | pd.DataFrame,
    labelmap: str | os.PathLike[str] | LabelMap | None = None,
    exclusions: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    legacy: bool | None = None,
    iou_thresholds: Sequence[float] = (),
    check_range: bool = True,
    engine: str = "pyarrow",
) -> EvalResult:
    """Evaluate AVA detections exactly like ActivityNet's ``get_ava_performance.py``.

    Args:
        groundtruth: CSV path or DataFrame (video_id, timestamp, x1, y1, x2, y2, action_id, person_id);
            boxes normalised to [0, 1]; DataFrame rows with no box and no action_id are empty keyframes.
        detections: CSV path or DataFrame (same columns with ``score`` instead of person_id).
        labelmap: ``.pbtxt`` path or LabelMap; None: the bundled 60-class AVA v2.2 ActivityNet map.
        exclusions: CSV (video_id,second) or DataFrame of excluded keyframes; implies ``legacy``.
        legacy: the earlier official release's semantics (int() keys, exclusions, all detection keyframes
            scored, no 2-column rows). None: True iff ``exclusions`` is given.
        iou_thresholds: extra IoU thresholds for the NOT-official ``iou_metrics``.
        check_range: reject coordinates outside [0, 1] and inverted GT boxes (the official accepts them).
        engine: "pyarrow" (fast, falls back to line-by-line where needed) or "python" (line-by-line only).

    Returns:
        EvalResult; ``metrics`` equals the official dict.

    Raises:
        AvaFormatError: missing/empty/malformed input (message names file, line and problem).
    """
    if engine not in ("pyarrow", "python"):
        raise ValueError(f"engine must be 'pyarrow' or 'python', got {engine!r}")
    lm = _as_labelmap(labelmap)
    if lm.num_classes > _MAX_CLASS_ID:
        raise AvaFormatError(f"{lm.source}: class id {lm.num_classes} is too large (at most {_MAX_CLASS_ID})")
    if legacy is None:
        legacy = exclusions is not None
    if exclusions is not None and not legacy:
        raise ValueError("exclusions belong to the earlier official release: use legacy=True (or None)")
    keys = _KeyTable(legacy)
    excluded = _exclusion_keys(exclusions, keys) if exclusions is not None else np.zeros(0, bool)

    gt_source = _Source(groundtruth, keys, "groundtruth", not legacy, engine)
    gt = _read_groundtruth(gt_source, _Filter(lm, legacy, None, excluded), check_range)
    scored: np.ndarray | None = None
    if not legacy:
        scored = np.zeros(len(keys), bool)
        scored[gt.file_keys] = True
    det_flt = _Filter(lm, legacy, scored, excluded)
    det_source = _Source(detections, keys, "detections", not legacy, engine)
    pool, n_det_rows = _with_fallback(det_source, lambda: _read_detections(det_source, det_flt, check_range))

    _release_arrow_memory()
    dets = _resolve_cap(pool.finish(), pool.counts, DETECTION_CAPACITY)  # official per-keyframe order
    gt_rows, n_gt_replayed = _order_groundtruth(gt.rows)
    thresholds = [OFFICIAL_IOU, *[float(t) for t in iou_thresholds if float(t) != OFFICIAL_IOU]]
    matches = _match(dets, gt_rows, lm.num_classes)
    tps = [_true_positives(matches, t) for t in thresholds]
    sensitive = _sensitive_keys(dets, tps)
    if len(sensitive):
        replayed = _replay(det_source, det_flt, pool, sensitive)
        replayed = [r.take(np.flatnonzero((r.y1 < r.y2) & (r.x1 < r.x2))) for r in replayed]
        del matches, tps
        # Same survivors, exact order: overwrite each replayed keyframe's (contiguous) block in place.
        starts, lengths = _groups(dets.key)
        block = {int(k): (int(b), int(n)) for k, b, n in zip(dets.key[starts], starts, lengths, strict=True)}
        for r in replayed:
            b, n = block[int(r.key[0])]
            if n != len(r):
                raise AssertionError(f"exact heap replay kept {len(r)} boxes, the vectorised cap {n}")
            for f in ("action", "score", *_COORDS):
                getattr(dets, f)[b : b + n] = getattr(r, f)
        matches = _match(dets, gt_rows, lm.num_classes)
        tps = [_true_positives(matches, t) for t in thresholds]
    del matches

    n_gt = np.bincount(gt_rows.action, minlength=lm.num_classes + 1)
    ap_by_thr, n_det = _class_aps(dets, tps, n_gt, pool.first_row, lm.num_classes)

    names = lm.names()
    ap05 = ap_by_thr[0]
    metrics: dict[str, float] = {MAP_KEY: _nanmean(ap05)}
    for cid, name in names.items():
        metrics[metric_key(name)] = float(ap05[cid - 1])
    class_table: dict[str, list[Any]] = {
        "id": list(names), "name": list(names.values()),
        "ap": [float(ap05[c - 1]) for c in names],
        "n_gt": [int(n_gt[c]) for c in names],
        "n_det": [int(n_det[c]) for c in names],
    }
    group_ap = {}
    # AVA's category groups are id ranges of AVA's own classes: only meaningful when the names are AVA's
    ava_names = dict(load_bundled_labelmap(AVA_V22_ALL).entries)
    is_ava = all(ava_names.get(cid) == name for cid, name in names.items())
    for group, (g_lo, g_hi) in CATEGORY_GROUPS.items() if is_ava else ():
        ids = [c for c in names if g_lo <= c <= g_hi]
        group_ap[group] = _nanmean(ap05[np.asarray(ids, np.int64) - 1]) if ids else float("nan")
    iou_metrics = {}
    for t, ap in zip(thresholds[1:], ap_by_thr[1:], strict=True):
        iou_metrics[t] = {"mAP": _nanmean(ap), **{name: float(ap[c - 1]) for c, name in names.items()}}
    stats = {
        "groundtruth_rows": gt.n_rows,
        "groundtruth_boxes_evaluated": len(gt_rows),
        "detection_rows": n_det_rows,
        "detections_evaluated": len(dets),
        "keyframes_with_detections": int(np.count_nonzero(pool.counts)),
        "keyframes_replayed_exact_heap": int(len(sensitive)),
        "groundtruth_keyframes_replayed_exact_heap": n_gt_replayed,
    }
    return EvalResult(metrics, class_table, metrics[MAP_KEY], group_ap, iou_metrics, stats, legacy)
