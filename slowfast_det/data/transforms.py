"""Clip and box transforms of PySlowFast's AVA loader (its OpenCV backend, ``AVA.IMG_PROC_BACKEND: cv2``).

Plain functions over lists of (H, W, 3) BGR uint8 numpy frames (OpenCV's ``imdecode`` layout) and (N, 4)
float64 ``x1, y1, x2, y2`` box arrays. The test-time path (:func:`preprocess_clip_test`) reproduces
PySlowFast's model inputs bit for bit; the others follow PySlowFast's recipe with our own random draws.

Facts reproduced (PySlowFast ``ava_dataset.py`` / ``cv2_transform.py``):

* boxes: normalised -> pixels of the decoded frame (x by W, y by H), clipped to ``[0, W-1] x [0, H-1]``; every
  later scale multiplies all four coordinates by ONE factor (new long side / long side); crops shift them;
  a final clip to the output frame; never rounded;
* short-side resize to S: the long side becomes ``floor(long / short * S)``; ``cv2.resize`` ``INTER_LINEAR``
  on the uint8 frame; a frame whose short side already is S is left untouched;
* pixels: ``x / 255`` then ``(x - MEAN[c]) / STD[c]`` in float32, where ``c`` indexes the *BGR* channels
  (PySlowFast normalises before its BGR->RGB flip, so MEAN/STD are read in BGR order), then the channel
  order is reversed to RGB unless ``bgr``; output (C, T, H, W) float32;
* colour augmentation (training only) acts on the ``[0, 1]`` BGR values before normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from slowfast_det.boxes import BoxMode, clip, convert

__all__ = [
    "center_crop",
    "color_jitter",
    "frames_to_float",
    "horizontal_flip",
    "lighting_jitter",
    "normalize_to_clip",
    "normalize_uint8_to_clip",
    "pixel_boxes",
    "preprocess_clip_test",
    "preprocess_clip_train",
    "preprocess_clip_val",
    "random_crop",
    "random_short_side_scale_jitter",
    "resize_frames",
    "short_side_scale",
    "short_side_scale_size",
]


def _frame_size(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """(H, W) shared by all frames; ValueError otherwise."""
    if len(frames) == 0:
        raise ValueError("a clip needs at least one frame")
    height, width = frames[0].shape[:2]
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i} must be (H, W, 3), got shape {frame.shape}")
        if frame.shape[:2] != (height, width):
            raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {width}x{height}")
    return int(height), int(width)


def short_side_scale_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_height, new_width) with the short side scaled to ``size``: long ``floor(long/short*size)``."""
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def resize_frames(frames: Sequence[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    """``cv2.resize`` each frame to ``width x height`` (INTER_LINEAR); same-size frames stay as is."""
    return [
        f
        if f.shape[:2] == (height, width)
        else cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
        for f in frames
    ]


def pixel_boxes(boxes_norm: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """(N, 4) normalised boxes -> float64 pixels of a ``width x height`` frame, clipped to the frame."""
    boxes = np.array(boxes_norm, dtype=np.float64).reshape(-1, 4)
    return clip(
        convert(boxes, BoxMode.NORM_XYXY, BoxMode.ABS_XYXY, width=width, height=height),
        BoxMode.ABS_XYXY,
        width=width,
        height=height,
    )


def _clip_px(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    return clip(boxes, BoxMode.ABS_XYXY, width=width, height=height)


def short_side_scale(
    frames: Sequence[np.ndarray], boxes: np.ndarray, size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Scale frames (short side -> ``size``) and pixel boxes by the long side's factor (test/val rule)."""
    height, width = _frame_size(frames)
    new_h, new_w = short_side_scale_size(height, width, size)
    if (new_h, new_w) == (height, width):
        return list(frames), boxes
    # PySlowFast's scale_boxes: boxes *= new_long / long (the factor first, then the product)
    factor = float(new_h) / height if width < height else float(new_w) / width
    return resize_frames(frames, new_h, new_w), boxes * factor


def random_short_side_scale_jitter(
    frames: Sequence[np.ndarray], boxes: np.ndarray, *, min_size: int, max_size: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Scale the short side to ``round(1 / U(1/max_size, 1/min_size))`` (training scale jitter)."""
    size = int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))
    height, width = _frame_size(frames)
    new_h, new_w = short_side_scale_size(height, width, size)
    if (new_h, new_w) == (height, width):
        return list(frames), boxes
    # PySlowFast's jitter: proposal * new_long / long (the product first, then the division)
    boxes = boxes * float(new_h) / height if width < height else boxes * float(new_w) / width
    return resize_frames(frames, new_h, new_w), boxes


def random_crop(
    frames: Sequence[np.ndarray], boxes: np.ndarray, *, size: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Crop a ``size x size`` window; offsets drawn from ``[0, H - size)``, ``[0, W - size)`` (PySlowFast)."""
    height, width = _frame_size(frames)
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height} frames")
    if height == size and width == size:
        return list(frames), boxes
    y0 = int(rng.integers(0, height - size)) if height > size else 0
    x0 = int(rng.integers(0, width - size)) if width > size else 0
    out = [f[y0 : y0 + size, x0 : x0 + size] for f in frames]
    return out, boxes - np.array([x0, y0, x0, y0], dtype=np.float64)


def center_crop(
    frames: Sequence[np.ndarray], boxes: np.ndarray, *, size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Centre ``size x size`` crop (offsets ``ceil((H - size) / 2)``, ``ceil((W - size) / 2)``)."""
    height, width = _frame_size(frames)
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height} frames")
    y0 = int(math.ceil((height - size) / 2))
    x0 = int(math.ceil((width - size) / 2))
    out = [f[y0 : y0 + size, x0 : x0 + size] for f in frames]
    return out, boxes - np.array([x0, y0, x0, y0], dtype=np.float64)


def horizontal_flip(frames: Sequence[np.ndarray], boxes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Mirror frames left-right; a box ``x1, x2`` becomes ``W - 1 - x2, W - 1 - x1``."""
    _, width = _frame_size(frames)
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return [cv2.flip(f, 1) for f in frames], flipped


def frames_to_float(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) frames into a (T, 3, H, W) float32 array of ``x / 255`` (channels still BGR)."""
    _frame_size(frames)
    stacked = np.stack(frames).transpose(0, 3, 1, 2)
    return stacked.astype(np.float32) / np.float32(255.0)


def _grayscale(x: np.ndarray) -> np.ndarray:
    """(T, 3, H, W) BGR -> (T, H, W) luma 0.299 R + 0.587 G + 0.114 B."""
    return 0.299 * x[:, 2] + 0.587 * x[:, 1] + 0.114 * x[:, 0]


def color_jitter(
    x: np.ndarray, *, brightness: float, contrast: float, saturation: float, rng: np.random.Generator
) -> np.ndarray:
    """Brightness, contrast and saturation jitter in random order, one factor per clip (PySlowFast's recipe).

    Args:
        x: (T, 3, H, W) float32 BGR values in [0, 1].
        brightness, contrast, saturation: jitter ratios; the factor is ``1 + U(-ratio, ratio)`` (0 = off).

    Returns:
        (T, 3, H, W) float32 (not clipped to [0, 1], as in PySlowFast).
    """
    ops = [name for name, v in (("b", brightness), ("c", contrast), ("s", saturation)) if v != 0]
    for k in rng.permutation(len(ops)):
        op = ops[int(k)]
        if op == "b":
            x = x * np.float32(1.0 + rng.uniform(-brightness, brightness))
        elif op == "c":
            alpha = np.float32(1.0 + rng.uniform(-contrast, contrast))
            means = _grayscale(x).mean(axis=(1, 2), dtype=np.float64).astype(np.float32)  # one mean per frame
            x = x * alpha + means[:, None, None, None] * (1 - alpha)
        else:
            alpha = np.float32(1.0 + rng.uniform(-saturation, saturation))
            gray = _grayscale(x).astype(np.float32)
            x = x * alpha + gray[:, None] * (1 - alpha)
    return x.astype(np.float32, copy=False)


def lighting_jitter(
    x: np.ndarray,
    *,
    alphastd: float,
    eigval: Sequence[float],
    eigvec: Sequence[Sequence[float]],
    rng: np.random.Generator,
) -> np.ndarray:
    """AlexNet PCA lighting noise, one draw per clip.

    ``alpha ~ N(0, alphastd)^3``; ``rgb = eigvec @ (alpha * eigval)`` (RGB order) is added to the BGR channels
    (channel ``c`` gets ``rgb[2 - c]``).

    Args:
        x: (T, 3, H, W) float32 BGR values in [0, 1].
    """
    if alphastd == 0:
        return x
    alpha = rng.normal(0.0, alphastd, size=3)
    rgb = np.asarray(eigvec, dtype=np.float64) @ (alpha * np.asarray(eigval, dtype=np.float64))
    bgr = rgb[::-1].astype(np.float32)
    return (x + bgr[None, :, None, None]).astype(np.float32, copy=False)


def normalize_to_clip(
    x: np.ndarray, *, mean: Sequence[float], std: Sequence[float], bgr: bool
) -> torch.Tensor:
    """(T, 3, H, W) float32 BGR ``[0, 1]`` values -> (C, T, H, W) float32 model input.

    ``(x - mean[c]) / std[c]`` in float32 with ``c`` the BGR channel index (PySlowFast's order), then the
    channels are reversed to RGB unless ``bgr``.
    """
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    if m.size != 3 or s.size != 3:
        raise ValueError(f"MEAN and STD need 3 values, got {list(mean)} and {list(std)}")
    out = (x - m) / s
    out = out.transpose(1, 0, 2, 3)
    if not bgr:
        out = out[::-1]
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def normalize_uint8_to_clip(
    frames: Sequence[np.ndarray], *, mean: Sequence[float], std: Sequence[float], bgr: bool
) -> torch.Tensor:
    """T (H, W, 3) BGR uint8 frames -> (C, T, H, W) float32 model input, bit-identical to
    ``normalize_to_clip(frames_to_float(frames), ...)`` but through a 256-entry table per channel (each entry
    computed with the same float32 operations), several times faster."""
    _frame_size(frames)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    if m.size != 3 or s.size != 3:
        raise ValueError(f"MEAN and STD need 3 values, got {list(mean)} and {list(std)}")
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    stacked = np.stack(frames)  # (T, H, W, 3) BGR
    out = np.empty((3, *stacked.shape[:3]), dtype=np.float32)
    for c_out in range(3):
        c = c_out if bgr else 2 - c_out  # BGR channel feeding this output channel
        table = (levels - m[c]) / s[c]
        np.take(table, stacked[..., c], out=out[c_out])
    return torch.from_numpy(out)


def _finish(
    frames: Sequence[np.ndarray], boxes: np.ndarray, mean: Sequence[float], std: Sequence[float], bgr: bool
) -> tuple[torch.Tensor, np.ndarray]:
    clip_tensor = normalize_uint8_to_clip(frames, mean=mean, std=std, bgr=bgr)
    return clip_tensor, _clip_px(boxes, clip_tensor.shape[2], clip_tensor.shape[3])


def _preprocess_eval(
    frames: Sequence[np.ndarray],
    boxes_norm: np.ndarray,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    bgr: bool,
    force_flip: bool,
    *,
    square: bool,
) -> tuple[torch.Tensor, np.ndarray]:
    """Test/val preprocessing: short side -> ``crop_size``, a centre square crop if ``square``, optional flip."""
    height, width = _frame_size(frames)
    boxes = pixel_boxes(boxes_norm, height=height, width=width)
    out, boxes = short_side_scale(frames, boxes, crop_size)
    if square:
        out, boxes = center_crop(out, boxes, size=crop_size)
    if force_flip:
        out, boxes = horizontal_flip(out, boxes)
    return _finish(out, boxes, mean, std, bgr)


def preprocess_clip_test(
    frames: Sequence[np.ndarray],
    boxes_norm: np.ndarray,
    *,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    bgr: bool,
    force_flip: bool = False,
) -> tuple[torch.Tensor, np.ndarray]:
    """PySlowFast's test-time AVA preprocessing: exactly the model input for one keyframe.

    Short side -> ``crop_size`` (DATA.TEST_CROP_SIZE), full frame, no crop.

    Args:
        frames: T frames, (H, W, 3) BGR uint8 as decoded by ``cv2.imdecode``, all the same size.
        boxes_norm: (N, 4) normalised ``x1, y1, x2, y2``.
        crop_size: target short side in pixels.
        mean, std: DATA.MEAN / DATA.STD (applied in BGR channel order, see the module docstring).
        bgr: AVA.BGR (keep BGR channel order).
        force_flip: AVA.TEST_FORCE_FLIP (mirror frames and boxes).

    Returns:
        clip: (3, T, H', W') float32 tensor; boxes: (N, 4) float64 ``x1, y1, x2, y2`` in pixels of the clip.
    """
    return _preprocess_eval(frames, boxes_norm, crop_size, mean, std, bgr, force_flip, square=False)


def preprocess_clip_val(
    frames: Sequence[np.ndarray],
    boxes_norm: np.ndarray,
    *,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    bgr: bool,
    force_flip: bool = False,
) -> tuple[torch.Tensor, np.ndarray]:
    """PySlowFast's ``val`` split: short side -> ``crop_size``, centre ``crop_size`` square, optional flip.

    Arguments and returns as :func:`preprocess_clip_test`; the clip is (3, T, crop_size, crop_size).
    """
    return _preprocess_eval(frames, boxes_norm, crop_size, mean, std, bgr, force_flip, square=True)


def preprocess_clip_train(
    frames: Sequence[np.ndarray],
    boxes_norm: np.ndarray,
    *,
    jitter_scales: Sequence[int],
    crop_size: int,
    random_flip: bool,
    color_augmentation: bool,
    pca_jitter_only: bool,
    pca_eigval: Sequence[float],
    pca_eigvec: Sequence[Sequence[float]],
    mean: Sequence[float],
    std: Sequence[float],
    bgr: bool,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, np.ndarray]:
    """PySlowFast's training augmentation for AVA.

    Short-side scale jitter in ``jitter_scales`` (DATA.TRAIN_JITTER_SCALES, inverse-uniform), random
    ``crop_size`` square crop, horizontal flip with probability 0.5 when ``random_flip``; when
    ``color_augmentation`` (AVA.TRAIN_USE_COLOR_AUGMENTATION): brightness/contrast/saturation 0.4 unless
    ``pca_jitter_only``, then PCA lighting (alphastd 0.1). Boxes follow every geometric step and are clipped
    to the crop at the end (boxes outside the crop become degenerate, as in PySlowFast).

    Args:
        frames, boxes_norm, mean, std, bgr: as :func:`preprocess_clip_test`.
        rng: source of every random draw.

    Returns:
        clip: (3, T, crop_size, crop_size) float32; boxes: (N, 4) float64 pixels of the crop.
    """
    height, width = _frame_size(frames)
    boxes = pixel_boxes(boxes_norm, height=height, width=width)
    out, boxes = random_short_side_scale_jitter(
        frames, boxes, min_size=int(jitter_scales[0]), max_size=int(jitter_scales[1]), rng=rng
    )
    out, boxes = random_crop(out, boxes, size=crop_size, rng=rng)
    if random_flip and rng.uniform() < 0.5:
        out, boxes = horizontal_flip(out, boxes)
    if not color_augmentation:
        return _finish(out, boxes, mean, std, bgr)
    x = frames_to_float(out)
    if not pca_jitter_only:
        x = color_jitter(x, brightness=0.4, contrast=0.4, saturation=0.4, rng=rng)
    x = lighting_jitter(x, alphastd=0.1, eigval=pca_eigval, eigvec=pca_eigvec, rng=rng)
    clip_tensor = normalize_to_clip(x, mean=mean, std=std, bgr=bgr)
    return clip_tensor, _clip_px(boxes, clip_tensor.shape[2], clip_tensor.shape[3])
