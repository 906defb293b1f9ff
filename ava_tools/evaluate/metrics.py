"""Greedy VOC matching at an IoU threshold (float64, the official formula) and all-points AP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass

from ava_tools.evaluate.cap import _DetectionPool, _groups, _heap_order, _tuples_of, _tuples_to_rows
from ava_tools.evaluate.readers import _Filter, _rows_of, _Source, _validate
from ava_tools.evaluate.rows import _COORDS, DETECTION_CAPACITY, _Rows


@dataclass
class _Matches:
    target: np.ndarray  # (D,) index of the arg-max GT box (-1: no GT of that class in the keyframe)
    best_iou: np.ndarray  # (D,) its IoU (NaN propagates as in np.argmax/np.max)


def _match(det: _Rows, gt: _Rows, num_classes: int, max_pairs: int = 1_000_000) -> _Matches:
    """Arg-max IoU ground-truth box of each detection among GT of its keyframe and class (first on ties).

    ``gt`` must be grouped by (key, action) in the official order; ``det`` in any order. Pairs are built in
    slices of about ``max_pairs`` to bound memory.
    """
    n_det = len(det)
    target = np.full(n_det, -1, np.int64)
    best = np.full(n_det, -np.inf)
    if n_det == 0 or len(gt) == 0:
        return _Matches(target, best)
    width = np.int64(num_classes + 1)
    gcode = gt.key * width + gt.action
    gstart, glen = _groups(gcode)
    ucode = gcode[gstart]
    dcode = det.key * width + det.action
    at = np.minimum(np.searchsorted(ucode, dcode), len(ucode) - 1)
    has = ucode[at] == dcode
    dets_all = np.flatnonzero(has)
    if len(dets_all) == 0:
        return _Matches(target, best)
    n_pair_all = glen[at[dets_all]]
    cum = np.cumsum(n_pair_all)
    lo = 0
    while lo < len(dets_all):
        hi = max(lo + 1, int(np.searchsorted(cum, (cum[lo - 1] if lo else 0) + max_pairs, side="right")))
        dets, n_pair = dets_all[lo:hi], n_pair_all[lo:hi]
        rep = np.repeat(dets, n_pair)
        first = np.cumsum(n_pair) - n_pair
        gi = np.repeat(gstart[at[dets]] - first, n_pair) + np.arange(len(rep))
        # Official np_box_ops.iou on [y1, x1, y2, x2] boxes: float64, same operations, same association.
        ih = np.minimum(det.y2[rep], gt.y2[gi])
        ih -= np.maximum(det.y1[rep], gt.y1[gi])
        np.maximum(ih, 0.0, out=ih)
        iw = np.minimum(det.x2[rep], gt.x2[gi])
        iw -= np.maximum(det.x1[rep], gt.x1[gi])
        np.maximum(iw, 0.0, out=iw)
        inter = ih
        inter *= iw
        union = (det.y2[rep] - det.y1[rep]) * (det.x2[rep] - det.x1[rep])
        union += (gt.y2[gi] - gt.y1[gi]) * (gt.x2[gi] - gt.x1[gi])
        union -= inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.divide(inter, union, out=union)
        mx = np.maximum.reduceat(iou, first)
        mx_rep = np.repeat(mx, n_pair)
        is_max = (iou == mx_rep) | (np.isnan(iou) & np.isnan(mx_rep))
        first_max = np.minimum.reduceat(np.where(is_max, np.arange(len(iou)), len(iou)), first)
        target[dets] = gi[first_max]
        best[dets] = mx
        lo = hi
    return _Matches(target, best)


def _true_positives(m: _Matches, threshold: float) -> np.ndarray:
    """Greedy labels of detections given in per-keyframe official order: a detection is a TP iff its
    IoU >= threshold and it is the first to claim its arg-max GT box; no fall-back to other boxes."""
    tp = np.zeros(len(m.target), bool)
    cand = np.flatnonzero(m.best_iou >= threshold)
    if len(cand) == 0:
        return tp
    _, first = np.unique(m.target[cand], return_index=True)  # first occurrence = earliest detection
    tp[cand[first]] = True
    return tp


def _official_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """VOC all-points AP exactly as ActivityNet's metrics.py computes it (same numpy calls, same order)."""
    if n_gt == 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    sorted_indices = np.argsort(scores)[::-1]
    labels = tp.astype(int)[sorted_indices]
    cum_tp = np.cumsum(labels)
    cum_fp = np.cumsum(1 - labels)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / n_gt
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # same values as the official right-to-left loop
    indices = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[indices] - recall[indices - 1]) * precision[indices]))


def _sensitive_keys(det: _Rows, tps: Sequence[np.ndarray]) -> np.ndarray:
    """Keyframes whose result depends on the heap's array order: one class has equal scores on different
    boxes and those detections got different labels (for some threshold). ``det`` is in per-key order."""
    n = len(det)
    if n < 2:
        return np.zeros(0, np.int64)
    same = (det.key[1:] == det.key[:-1]) & (det.score[1:] == det.score[:-1])
    in_run = np.zeros(n, bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    idx = np.flatnonzero(in_run)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    run = np.cumsum(np.r_[True, ~same])[idx]
    order = np.lexsort((det.x2[idx], det.y2[idx], det.x1[idx], det.y1[idx], det.action[idx], run))
    idx, run = idx[order], run[order]
    new_group = np.r_[True, (run[1:] != run[:-1]) | (det.action[idx][1:] != det.action[idx][:-1])]
    gid = np.cumsum(new_group) - 1
    box_change = np.zeros(len(idx), bool)
    for c in _COORDS:
        v = getattr(det, c)[idx]
        box_change[1:] |= v[1:] != v[:-1]
    distinct = np.bincount(gid, weights=box_change & ~new_group, minlength=gid[-1] + 1) > 0
    mixed = np.zeros(len(distinct), bool)
    for tp in tps:
        n_tp = np.bincount(gid, weights=tp[idx], minlength=len(distinct))
        size = np.bincount(gid, minlength=len(distinct))
        mixed |= (n_tp > 0) & (n_tp < size)
    bad_groups = np.flatnonzero(distinct & mixed)
    if len(bad_groups) == 0:
        return np.zeros(0, np.int64)
    return np.unique(det.key[idx[np.isin(gid, bad_groups)]])


def _read_detections(source: _Source, flt: _Filter, check_range: bool) -> tuple[_DetectionPool, int]:
    pool = _DetectionPool(DETECTION_CAPACITY)
    n_rows = 0
    for batch in source.batches():
        idx = np.flatnonzero(flt.mask(batch.action, batch.key))
        _validate(batch, idx, source.path, False, check_range)
        pool.add(_rows_of(batch, idx), batch.piece, batch.piece_row0)
        n_rows += len(batch.key) + len(batch.empty_keys)
    return pool, n_rows


def _replay(source: _Source, flt: _Filter, pool: _DetectionPool, keys: np.ndarray) -> list[_Rows]:
    """Run the literal official heap on every in-map row of ``keys`` (re-read from the input in file order)."""
    found: dict[int, list[tuple]] = {int(k): [] for k in keys}
    for piece in sorted(pool.piece_runs):
        run_keys, run_first, run_last = pool.piece_runs[piece]
        hit = np.isin(run_keys, keys)
        if not hit.any():
            continue
        for batch in source.reread(piece, int(run_first[hit].min()), int(run_last[hit].max())):
            idx = np.flatnonzero(flt.mask(batch.action, batch.key) & np.isin(batch.key, keys))
            rows = _rows_of(batch, idx)
            for k, item in zip(rows.key.tolist(), _tuples_of(rows), strict=True):
                found[k].append(item)
    return [_tuples_to_rows(k, _heap_order(items, DETECTION_CAPACITY)) for k, items in found.items()]


def _class_aps(dets: _Rows, tps: Sequence[np.ndarray], n_gt: np.ndarray, first_row: np.ndarray,
               num_classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Official per-class AP (index id - 1, NaN without GT) for each TP labelling, and detections per class.

    Each class's detections are concatenated keyframe by keyframe in order of first appearance in the
    detection file (``first_row``), in the official order inside a keyframe (``dets`` is in that order).
    """
    rank = np.empty(len(first_row), np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    order = np.argsort(dets.action * np.int64(len(first_row) + 1) + rank[dets.key], kind="stable")
    sorted_action = dets.action[order]
    ids = np.arange(num_classes + 1)
    lo = np.searchsorted(sorted_action, ids, side="left")
    hi = np.searchsorted(sorted_action, ids, side="right")
    scores = dets.score[order]
    result = []
    for tp in tps:
        ap = np.full(num_classes, np.nan)
        tp_sorted = tp[order]
        for cid in range(1, num_classes + 1):
            if n_gt[cid] > 0:
                ap[cid - 1] = _official_ap(scores[lo[cid] : hi[cid]], tp_sorted[lo[cid] : hi[cid]], int(n_gt[cid]))
        result.append(ap)
    return result, hi - lo
