"""Ground-truth order and the official 50-detections-per-keyframe cap: streaming top-50 candidates, exact
resolution of the official min-heap (ties included), literal ``heapq`` replay where order matters."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass

from ava_tools.evaluate.readers import _Filter, _rows_of, _Source, _validate, _with_fallback
from ava_tools.evaluate.rows import _COORDS, _Rows
from ava_tools.labelmap import (
    AvaFormatError,
)

_POOL_LIMIT = 6_000_000  # candidate rows kept before re-pruning the pool


@dataclass
class _GroundTruth:
    rows: _Rows  # in-map rows of evaluated keyframes, file order
    file_keys: np.ndarray  # every key id present in the file (2-column and out-of-map rows included)
    n_rows: int  # data rows read


def _read_groundtruth(source: _Source, flt: _Filter, check_range: bool) -> _GroundTruth:
    def run() -> _GroundTruth:
        parts, keys, n = [], [], 0
        for batch in source.batches():
            keys.append(batch.key)
            keys.append(np.asarray(batch.empty_keys, np.int64))
            idx = np.flatnonzero(flt.mask(batch.action, batch.key))
            _validate(batch, idx, source.path, True, check_range)
            parts.append(_rows_of(batch, idx))
            n += len(batch.key) + len(batch.empty_keys)
        file_keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return _GroundTruth(_Rows.concat(parts), file_keys, n)

    gt = _with_fallback(source, run)
    if gt.n_rows == 0:
        raise AvaFormatError(f"{source.path}: the ground truth has no rows")
    return gt


def _heap_order(rows: list[tuple[float, int, float, float, float, float]], capacity: int) -> list[tuple]:
    """The official per-keyframe selection: min-heap of (score, action, y1, x1, y2, x2) tuples in file order,
    capped at ``capacity`` (0: no cap), then stably sorted by descending score over the heap array."""
    heap: list[tuple] = []
    for item in rows:
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    return sorted(heap, key=lambda t: -t[0])


def _tuples_to_rows(key: int, items: list[tuple]) -> _Rows:
    n = len(items)
    arr = np.asarray(items, np.float64).reshape(n, 6)
    return _Rows(
        np.full(n, key, np.int64), arr[:, 1].astype(np.int64), arr[:, 0], arr[:, 3], arr[:, 2], arr[:, 5],
        arr[:, 4], np.zeros(n, np.int64),
    )


def _tuples_of(rows: _Rows) -> list[tuple]:
    return list(zip(rows.score.tolist(), rows.action.tolist(), rows.y1.tolist(), rows.x1.tolist(),
                    rows.y2.tolist(), rows.x2.tolist(), strict=True))


def _order_groundtruth(rows: _Rows) -> tuple[_Rows, int]:
    """GT rows ordered per keyframe as the official heap (no cap, person_id as score) leaves them.

    Sorted by (key, action, -person_id); keyframes where one class has equal person_ids on different boxes
    (heap-order dependent) are replayed through the literal heap. Returns (rows, replayed keyframe count).
    """
    order = np.lexsort((-rows.score, rows.action, rows.key))
    r = rows.take(order)
    same = (r.key[1:] == r.key[:-1]) & (r.action[1:] == r.action[:-1]) & (r.score[1:] == r.score[:-1])
    differ = np.zeros(len(same), bool)
    for c in _COORDS:
        v = getattr(r, c)
        differ |= v[1:] != v[:-1]
    sensitive = np.unique(r.key[1:][same & differ])
    if len(sensitive) == 0:
        return r, 0
    hit = np.isin(rows.key, sensitive)
    replaced = []
    sub = rows.take(np.flatnonzero(hit))  # file order
    bounds = np.argsort(sub.key, kind="stable")
    sub = sub.take(bounds)
    starts = np.flatnonzero(np.r_[True, sub.key[1:] != sub.key[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(sub)], strict=True):
        part = sub.take(np.arange(s, e))
        replaced.append(_tuples_to_rows(int(part.key[0]), _heap_order(_tuples_of(part), 0)))
    keep = r.take(np.flatnonzero(~np.isin(r.key, sensitive)))
    merged = _Rows.concat([keep, *replaced])
    merged = merged.take(np.argsort(merged.key, kind="stable"))
    # Only the order within (key, action) matters for matching: group by action, keeping heap order.
    return merged.take(np.lexsort((np.arange(len(merged)), merged.action, merged.key))), len(sensitive)


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of runs of equal values in a grouped array."""
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return starts, np.diff(np.r_[starts, n])


def _padded(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad: float
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """(groups x max length) matrix of ``values`` (``pad`` beyond each group) and its row indices (-1 in the
    padding), or None when padding would more than triple the size."""
    width = int(lengths.max())
    if len(starts) * width > 3 * int(lengths.sum()) + 4096:
        return None
    cols = np.arange(width)
    inside = cols < lengths[:, None]
    idx = np.where(inside, starts[:, None] + cols, 0)
    return np.where(inside, values[idx], pad), np.where(inside, idx, -1)


def _cap_thresholds(neg: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cap: int) -> np.ndarray:
    """Per group, the cap-th smallest of ``neg`` (= minus the cap-th best score); +inf for groups <= cap."""
    threshold = np.full(len(starts), np.inf)
    long = lengths > cap
    if not long.any():
        return threshold
    width = int(lengths[0])
    if (lengths == width).all() and int(starts[-1]) == (len(starts) - 1) * width:
        # Every keyframe has the same number of rows (PySlowFast writes boxes x classes): a reshape, no copy.
        threshold[:] = np.partition(neg[: len(starts) * width].reshape(-1, width), cap - 1, axis=1)[:, cap - 1]
        return threshold
    mat = _padded(neg, starts[long], lengths[long], np.inf)
    if mat is not None:
        threshold[long] = np.partition(mat[0], cap - 1, axis=1)[:, cap - 1]
    else:
        gid = np.repeat(np.arange(int(long.sum())), lengths[long])
        flat = np.concatenate([np.arange(a, a + m) for a, m in zip(starts[long], lengths[long], strict=True)])
        srt = flat[np.lexsort((neg[flat], gid))]
        threshold[long] = neg[srt[np.cumsum(lengths[long]) - lengths[long] + cap - 1]]
    return threshold


def _sorted_candidates(key: np.ndarray, score: np.ndarray, cap: int) -> tuple[np.ndarray, bool]:
    """Rows that may still be among their keyframe's top ``cap``, ordered by (keyframe, -score, file order).

    A row scoring below the cap-th best score of its keyframe *within this set* can never survive, whatever
    comes later, so it is dropped. Keyframes come in order of first appearance. Returns (indices, grouped):
    ``grouped`` tells whether every keyframe formed one contiguous run of rows.
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64), True
    starts, lengths = _groups(key)
    grouped = len(starts) == len(np.unique(key[starts]))
    order = None
    if not grouped:
        order = np.argsort(key, kind="stable")
        starts, lengths = _groups(key[order])
    neg = -score if order is None else -score[order]
    threshold = _cap_thresholds(neg, starts, lengths, cap)
    if np.isinf(threshold).all():
        kept = np.arange(n)
    else:
        kept = np.flatnonzero(neg <= np.repeat(threshold, lengths))
    # Sort the kept rows of each keyframe by (-score, file order): stable sorts of short padded rows.
    gk = np.searchsorted(starts, kept, side="right") - 1
    kstarts, klengths = _groups(gk)
    mat = _padded(neg[kept], kstarts, klengths, np.inf)
    if mat is not None:
        srt = np.argsort(mat[0], axis=1, kind="stable")
        pos = np.take_along_axis(mat[1], srt, axis=1)
        sel = kept[pos[pos >= 0]]
    else:
        sel = kept[np.lexsort((neg[kept], gk))]
    return (sel if order is None else order[sel]), grouped


class _DetectionPool:
    """Streaming store of the in-map, scored detection rows that can still survive the per-keyframe cap.

    Rows are kept grouped by keyframe and sorted by (-score, file order) when the input is grouped by
    keyframe (the rows of the last keyframe of a batch wait for the next batch); ``presorted`` says so.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[_Rows] = []
        self.n_pool = 0
        self.presorted = True
        self.counts = np.zeros(0, np.int64)  # in-map scored rows per key
        self.first_row = np.zeros(0, np.int64)  # first in-map row per key (keyframe order of the official)
        self._in_pool = np.zeros(0, bool)
        self._carry: _Rows | None = None
        # piece -> (keys, first local row, last local row) of its runs, for the exact replay
        self.piece_runs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _grow(self, n_keys: int) -> None:
        if n_keys > len(self.counts):
            extra = n_keys - len(self.counts)
            self.counts = np.r_[self.counts, np.zeros(extra, np.int64)]
            self.first_row = np.r_[self.first_row, np.full(extra, np.iinfo(np.int64).max)]
            self._in_pool = np.r_[self._in_pool, np.zeros(extra, bool)]

    def add(self, rows: _Rows, piece: int, piece_row0: int) -> None:
        """Take the kept rows (file order) of one batch."""
        if len(rows):
            self._grow(int(rows.key.max()) + 1)
            self.counts += np.bincount(rows.key, minlength=len(self.counts))
            starts, lengths = _groups(rows.key)
            run_keys = rows.key[starts]
            np.minimum.at(self.first_row, run_keys, rows.row[starts])
            local = rows.row - piece_row0
            runs = (run_keys, local[starts], local[starts + lengths - 1])
            if piece in self.piece_runs:
                runs = tuple(np.r_[a, b] for a, b in zip(self.piece_runs[piece], runs, strict=True))  # type: ignore
            self.piece_runs[piece] = runs
        # The last keyframe of a batch may go on in the next one: hold its rows back until then.
        n = len(rows)
        starts, _ = _groups(rows.key)
        if self._carry is not None:
            if n and rows.key[0] == self._carry.key[0]:
                head_end = int(starts[1]) if len(starts) > 1 else n
                self._carry = _Rows.concat([self._carry, rows.slice(0, head_end)])
                if head_end == n:
                    return
                rows, starts, n = rows.slice(head_end, n), starts[1:] - head_end, n - head_end
            self._store(self._carry)
            self._carry = None
        if n:
            tail = int(starts[-1])
            self._carry = rows.take(np.arange(tail, n))  # a copy: views would pin the whole batch
            self._store(rows.slice(0, tail))

    def finish(self) -> _Rows:
        """All candidates, grouped by keyframe and sorted by (-score, file order) within each."""
        if self._carry is not None:
            self._store(self._carry)
            self._carry = None
        pool = _Rows.concat(self.parts)
        self.parts = []
        if not self.presorted:
            pool = pool.take(np.lexsort((pool.row, -pool.score, pool.key)))
        return pool

    def _store(self, rows: _Rows) -> None:
        if len(rows) == 0:
            return
        sel, grouped = _sorted_candidates(rows.key, rows.score, self.cap)
        rows = rows.take(sel)
        run_keys = rows.key[_groups(rows.key)[0]]
        if not grouped or self._in_pool[run_keys].any():
            self.presorted = False
        self._in_pool[run_keys] = True
        self.parts.append(rows)
        self.n_pool += len(rows)
        if self.n_pool > _POOL_LIMIT and len(self.parts) > 1:
            pool = _Rows.concat(self.parts)
            pool = pool.take(np.sort(_sorted_candidates(pool.key, pool.score, self.cap)[0]))  # keep file order
            self.parts, self.n_pool = [pool], len(pool)
            self.presorted = False


def _resolve_cap(pool: _Rows, counts: np.ndarray, cap: int) -> _Rows:
    """Exact survivors of the official per-keyframe heap with a valid box (y1 < y2 and x1 < x2; invalid
    boxes took a slot and are then dropped), in the pool's (key, -score, file order) order.

    With s* the cap-th best score of a keyframe, rows above s* always survive and rows below never do. Of the
    rows at s*: the heap admits the first ``cap`` rows scoring >= s* (file order) and then rejects further
    s*-rows (not strictly above the heap minimum); each later row above s* evicts the smallest s*-tuple
    (by action, y1, x1, y2, x2) still inside.
    """
    p = pool  # grouped by key, sorted by (-score, file order) within each key
    n = len(p)
    if n == 0:
        return p
    starts, lengths = _groups(p.key)
    gid = np.repeat(np.arange(len(starts)), lengths)
    pos = np.arange(n) - starts[gid]
    capped = counts[p.key[starts]] > cap
    sstar = np.full(len(starts), -np.inf)
    sstar[capped] = p.score[starts[capped] + cap - 1]
    above = p.score > sstar[gid]
    at = (p.score == sstar[gid]) & capped[gid]
    n_above = np.bincount(gid, weights=above & capped[gid], minlength=len(starts)).astype(np.int64)
    n_at = np.bincount(gid, weights=at, minlength=len(starts)).astype(np.int64)
    keep = ~capped[gid] | (pos < cap)
    tied = capped & (n_above + n_at > cap)
    if tied.any():
        sel = np.flatnonzero(tied[gid] & (above | at))
        sel = sel[np.lexsort((p.row[sel], gid[sel]))]  # file order within keyframe
        g = gid[sel]
        gs, gl = _groups(g)
        rank = np.arange(len(sel)) - np.repeat(gs, gl)
        early = rank < cap
        early_above = np.bincount(g[early & above[sel]], minlength=len(starts))
        evictions = n_above - early_above
        inside = sel[early & at[sel]]
        inside = inside[np.lexsort((p.x2[inside], p.y2[inside], p.x1[inside], p.y1[inside], p.action[inside],
                                    gid[inside]))]
        gi = gid[inside]
        is_, il = _groups(gi)
        irank = np.arange(len(inside)) - np.repeat(is_, il)
        keep[np.flatnonzero(tied[gid])] = False
        keep[sel[above[sel]]] = True
        keep[inside[irank >= evictions[gi]]] = True
    keep &= (p.y1 < p.y2) & (p.x1 < p.x2)
    return p.take(np.flatnonzero(keep))
