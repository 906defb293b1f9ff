"""Shared numbers of the official evaluator and the row containers (structure-of-arrays) used throughout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass




DETECTION_CAPACITY = 50
OFFICIAL_IOU = 0.5
MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
_CLASS_KEY = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/{}"
_COORDS = ("x1", "y1", "x2", "y2")
_MAX_CLASS_ID = 1_000_000  # the evaluator allocates one slot per id up to the largest


def metric_key(class_name: str) -> str:
    """Official per-class metric key for ``class_name``."""
    return _CLASS_KEY.format(class_name)


class _SlowPath(Exception):
    """The fast CSV reader met something only the line-by-line reader can judge or locate exactly."""


@dataclass
class _Rows:
    """Boxes in file order. ``score`` is the person_id for ground truth; ``row`` the 0-based data-row index."""

    key: np.ndarray  # (N,) int64 keyframe id
    action: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float64
    x1: np.ndarray  # (N,) float64, normalised
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    row: np.ndarray  # (N,) int64

    _FIELDS = ("key", "action", "score", "x1", "y1", "x2", "y2", "row")

    def __len__(self) -> int:
        return len(self.key)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(*(getattr(self, f)[index] for f in self._FIELDS))

    def slice(self, start: int, stop: int) -> _Rows:
        """Rows ``start:stop`` as views (no copy)."""
        return _Rows(*(getattr(self, f)[start:stop] for f in self._FIELDS))

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        if not parts:
            return _Rows.empty()
        if len(parts) == 1:
            return parts[0]
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows._FIELDS))

    @staticmethod
    def empty() -> _Rows:
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return _Rows(i, i, f, f, f, f, f, i)


@dataclass
class _RawBatch:
    """One parsed piece of a CSV before key/label-map filtering (numeric columns as numpy arrays)."""

    key: np.ndarray  # (N,) int64
    action: np.ndarray
    score: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    row0: int  # data-row index of the first row
    where: Callable[[int], str | None]  # local row -> "file, line N" / "<DataFrame>, row N"; None: unknown
    empty_keys: list[int]  # keys of 2-column rows in this piece
    piece: int  # index of the piece in the file, for re-reading
    piece_row0: int = 0  # data-row index of the piece's first row
