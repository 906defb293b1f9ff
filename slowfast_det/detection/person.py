"""Detectron2 Faster R-CNN person detector, run on batches of keyframes.

:class:`PersonDetector` builds a detectron2 model from a detectron2 config (a model-zoo name such as
``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml`` or a YAML file, plus ``KEY VALUE`` overrides) and loads its
weights (a local file or a URL, see :mod:`slowfast_det.checkpoint.cache`). Pre-processing is detectron2's own
``DefaultPredictor`` recipe: ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)`` on the BGR
uint8 frame, channels as ``INPUT.FORMAT``; several frames go through one forward. Only the person class
(``person_class``: 0 in COCO and in one-class person detectors) with score >= ``score_threshold`` is kept.

The detectron2 config is read here (it is detectron2's own config, not the project's; the project's config
names it through ``DEMO.DETECTRON2_CFG`` / ``DEMO.DETECTRON2_WEIGHTS``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ava_tools.cli import UserError
from slowfast_det.checkpoint.cache import resolve_weights
from slowfast_det.detection import compat

__all__ = [
    "DEFAULT_DETECTOR_CONFIG",
    "DEFAULT_DETECTOR_WEIGHTS",
    "DetectorError",
    "PersonDetections",
    "PersonDetector",
    "load_detectron2_config",
]

DEFAULT_DETECTOR_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
DEFAULT_DETECTOR_WEIGHTS = "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"


class DetectorError(UserError, ValueError):
    """The detector's config or weights cannot be used (the message names the file and the problem)."""


@dataclass(frozen=True)
class PersonDetections:
    """People found in one frame.

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in pixels of the frame given to the detector.
        scores: (N,) float32 person scores in [0, 1], descending.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def load_detectron2_config(config: str | os.PathLike[str], opts: Sequence[str] = ()) -> Any:
    """A detectron2 ``CfgNode`` from a model-zoo name or a YAML path, with ``KEY VALUE`` overrides.

    Raises:
        DetectorError: neither an existing file nor a model-zoo config name; bad overrides.
    """
    compat.patch()
    from detectron2.config import get_cfg

    cfg = get_cfg()
    text = os.fspath(config)
    path = Path(text).expanduser()
    if not path.is_file():
        from detectron2 import model_zoo

        name = text if text.endswith(".yaml") else text + ".yaml"
        try:
            path = Path(model_zoo.get_config_file(name))
        except RuntimeError as exc:
            raise DetectorError(
                f"detector config {text!r} is neither a file nor a detectron2 model-zoo config name "
                f"(e.g. {DEFAULT_DETECTOR_CONFIG})"
            ) from exc
    try:
        cfg.merge_from_file(str(path))
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as exc:
        raise DetectorError(f"detector config {path}: {exc}") from exc
    return cfg


class PersonDetector:
    """Faster R-CNN person boxes for batches of BGR frames.

    Args:
        config: detectron2 model-zoo config name or YAML file.
        weights: local path or URL of the weights (``detectron2://`` accepted); None keeps the random
            initialisation (tests only).
        score_threshold: keep person boxes with score >= this (PySlowFast's AVA configs: 0.8).
        person_class: class index of "person" in the detector's outputs.
        opts: detectron2 ``KEY VALUE`` overrides (e.g. ``["INPUT.MIN_SIZE_TEST", "400"]``).
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: frames per forward.
        cache_dir: download cache for URL weights (default :func:`slowfast_det.checkpoint.cache.default_cache_dir`).
        progress: show a download progress bar.
        optimize: detect with a copy made by :func:`slowfast_det.detection.fused.optimize_detector` (BN folded,
            channels-last; the same boxes to float rounding, ~1.3x faster on CPU). The copy is made at the
            first call; ``self.model`` keeps detectron2's layout (its state dict loads into detectron2).
    """

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] = DEFAULT_DETECTOR_CONFIG,
        weights: str | os.PathLike[str] | None = DEFAULT_DETECTOR_WEIGHTS,
        score_threshold: float = 0.8,
        person_class: int = 0,
        opts: Sequence[str] = (),
        device: str = "cpu",
        batch_size: int = 8,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        optimize: bool = True,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"detector score threshold must be in [0, 1], got {score_threshold}")
        if batch_size < 1:
            raise ValueError(f"detector batch size must be >= 1, got {batch_size}")
        compat.patch()
        import torch
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.data import transforms as T
        from detectron2.modeling import build_model

        cfg = load_detectron2_config(config, opts)
        cfg.MODEL.DEVICE = device
        cfg.MODEL.WEIGHTS = ""
        # detectron2 drops boxes below SCORE_THRESH_TEST before we see them; never drop what we would keep
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min(float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), score_threshold)
        num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        if not 0 <= person_class < num_classes:
            raise DetectorError(f"person class {person_class} is outside the detector's {num_classes} classes")
        if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
            raise DetectorError(f"detector INPUT.FORMAT {cfg.INPUT.FORMAT!r} is not supported (BGR or RGB)")
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        if weights is not None:
            self._load_weights(DetectionCheckpointer, resolve_weights(weights, cache_dir=cache_dir, progress=progress))
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.score_threshold = score_threshold
        self.person_class = person_class
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.optimize = optimize
        self._optimized: Any = None
        self._torch = torch

    def inference_model(self) -> Any:
        """The model ``__call__`` runs: ``self.model``, or with ``optimize`` its optimised copy (made once, at
        the first call; weights changed in ``self.model`` after that are not seen by it)."""
        if not self.optimize:
            return self.model
        if self._optimized is None:
            import copy

            from slowfast_det.detection.fused import optimize_detector

            self._optimized = optimize_detector(copy.deepcopy(self.model))
        return self._optimized

    def _load_weights(self, checkpointer_class: Any, path: Path) -> None:
        """Load with detectron2's checkpointer (it converts model-zoo/Caffe2 names), but strictly: a missing
        or mis-shaped parameter is an error, not a warning (keys the model lacks are only logged)."""
        found: list[Any] = []

        class _Strict(checkpointer_class):  # type: ignore[misc, valid-type]
            def _log_incompatible_keys(self, incompatible: Any) -> None:
                found.append(incompatible)
                super()._log_incompatible_keys(incompatible)

        try:
            _Strict(self.model).load(str(path))
        except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
            raise DetectorError(f"detector weights {path}: cannot be loaded ({exc})") from exc
        for incompatible in found:
            problems = [f"missing: {', '.join(incompatible.missing_keys)}"] if incompatible.missing_keys else []
            if incompatible.incorrect_shapes:
                problems.append("mis-shaped: " + ", ".join(
                    f"{k} file {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes))
            if problems:
                raise DetectorError(f"detector weights {path} do not match the detector config: " + "; ".join(problems))

    def __call__(self, frames: Sequence[np.ndarray]) -> list[PersonDetections]:
        """Detect people in each frame.

        Args:
            frames: (H, W, 3) uint8 BGR arrays (sizes may differ).
        Returns:
            one :class:`PersonDetections` per frame, boxes in that frame's pixels.
        """
        torch = self._torch
        model = self.inference_model()
        out: list[PersonDetections] = []
        for start in range(0, len(frames), self.batch_size):
            inputs = []
            for frame in frames[start:start + self.batch_size]:
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"detector input must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
                image = frame[:, :, ::-1] if self.cfg.INPUT.FORMAT == "RGB" else frame
                resized = self.resize.get_transform(image).apply_image(np.ascontiguousarray(image))
                tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
                inputs.append({"image": tensor, "height": frame.shape[0], "width": frame.shape[1]})
            with torch.inference_mode():
                outputs = model(inputs)
            for result in outputs:
                instances = result["instances"].to("cpu")
                keep = (instances.pred_classes == self.person_class) & (instances.scores >= self.score_threshold)
                scores = instances.scores[keep].numpy().astype(np.float32)
                boxes = instances.pred_boxes.tensor[keep].numpy().astype(np.float32).reshape(-1, 4)
                order = np.argsort(-scores, kind="stable")
                out.append(PersonDetections(boxes[order], scores[order]))
        return out
