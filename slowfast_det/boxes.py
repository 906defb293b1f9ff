"""Boxes that carry their coordinate mode; every mode conversion in the project happens here.

Two modes exist:

* ``BoxMode.NORM_XYXY``: ``(x1, y1, x2, y2)`` as fractions of the frame width/height in [0, 1] (AVA CSVs);
* ``BoxMode.ABS_XYXY``: ``(x1, y1, x2, y2)`` in pixels of a frame of known ``(width, height)``
  (detector outputs, network inputs).

Conversions are pure arithmetic on float arrays and work on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np


class BoxMode(enum.Enum):
    NORM_XYXY = "norm_xyxy"
    ABS_XYXY = "abs_xyxy"


def _scale_vector(like: Any, width: float, height: float) -> Any:
    values = [width, height, width, height]
    if isinstance(like, np.ndarray):
        return np.asarray(values, dtype=like.dtype if like.dtype.kind == "f" else np.float64)
    import torch

    return torch.tensor(values, dtype=like.dtype if like.is_floating_point() else torch.float64, device=like.device)


def convert(boxes: Any, from_mode: BoxMode, to_mode: BoxMode, *, width: float, height: float) -> Any:
    """Convert an (N, 4) array/tensor of boxes between modes for a ``width`` x ``height`` (pixels) frame."""
    if from_mode == to_mode:
        return boxes
    scale = _scale_vector(boxes, width, height)
    if from_mode == BoxMode.NORM_XYXY and to_mode == BoxMode.ABS_XYXY:
        return boxes * scale
    if from_mode == BoxMode.ABS_XYXY and to_mode == BoxMode.NORM_XYXY:
        return boxes / scale
    raise ValueError(f"no conversion from {from_mode} to {to_mode}")


def clip(boxes: Any, mode: BoxMode, *, width: float = 1.0, height: float = 1.0) -> Any:
    """Clip boxes to the frame: [0, 1] in NORM_XYXY, [0, width-1] x [0, height-1] in ABS_XYXY (as PySlowFast)."""
    if mode == BoxMode.NORM_XYXY:
        hi_x, hi_y = 1.0, 1.0
    else:
        hi_x, hi_y = width - 1.0, height - 1.0
    out = boxes.copy() if isinstance(boxes, np.ndarray) else boxes.clone()
    if isinstance(out, np.ndarray):
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, hi_x)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, hi_y)
    else:
        out[:, [0, 2]] = out[:, [0, 2]].clamp(0.0, hi_x)
        out[:, [1, 3]] = out[:, [1, 3]].clamp(0.0, hi_y)
    return out
