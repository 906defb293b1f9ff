"""Testing: per-box action scores on every process, gathered, written in AVA format and evaluated.

Steps (:func:`run_test`):

1. :func:`predict` runs the model on this process's share of the test set: sigmoid scores per box, with the
   box's *original* normalised coordinates (``ori_boxes``), video, keyframe second and dataset sample index.
2. :func:`gather_predictions` collects every process's rows; rows of a sample seen twice are kept once and
   rows are put in dataset order, so the table is the same on 1 or K processes.
3. Rank 0 checks the scores: non-finite ones (NaN: broken weights, or activations overflowing float32) stop
   the run with :class:`NonFiniteScoresError` naming the model, the first video and keyframe and how many
   scores are affected, unless ``allow_nonfinite`` (then they are written as ``nan`` and left out of the
   evaluation, with a warning).
4. Rank 0 writes ``detections.csv`` (one row per box and per class of the label map,
   :func:`slowfast_det.pipeline.tables.detections_frame`) and ``groundtruth.csv`` (the ground-truth rows evaluated)
   *before* evaluating, so a failing evaluation loses no computed work; then it evaluates with
   ``ava_tools.evaluate`` and writes ``metrics.json``.

:func:`check_test_inputs` checks the evaluation files and that the label map's class ids exist in the model
before any model runs.

Evaluation semantics: without an exclusion file, the current official ActivityNet evaluator (only keyframes
present in the ground truth are scored). With one (``use_exclusions``), the earlier official release run with
``-e``: excluded keyframes are dropped and every other detected keyframe is scored. PySlowFast's own copy of
the evaluator is neither (no 50-detection cap), so its numbers can differ slightly.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ava_tools import atomic
from ava_tools.atomic import atomic_output
from ava_tools.cli import UserError
from slowfast_det.engine.distributed import DistContext, all_gather_objects
from slowfast_det.pipeline.tables import detections_frame

if TYPE_CHECKING:
    from ava_tools.labelmap import LabelMap

__all__ = [
    "EvaluationOutput",
    "NonFiniteScoresError",
    "Predictions",
    "check_test_inputs",
    "copy_groundtruth_csv",
    "evaluate_detections",
    "evaluate_predictions",
    "format_results",
    "gather_predictions",
    "merge_predictions",
    "nonfinite_message",
    "predict",
    "predictions_to_detections",
    "run_test",
]

logger = logging.getLogger(__name__)


class NonFiniteScoresError(UserError):
    """The model gave NaN or infinite action scores (the message names the model, where and how many)."""


@dataclass
class Predictions:
    """Per-box results, N rows.

    Attributes:
        sample_index: (N,) int64 dataset index of the keyframe sample each box belongs to.
        video_ids: (N,) video id (str) of each box.
        timestamps: (N,) int64 keyframe second.
        boxes: (N, 4) float64 ``x1, y1, x2, y2`` normalised to the original frame.
        scores: (N, C) float32 sigmoid probabilities, column ``k`` for action id ``k + 1``.
    """

    sample_index: np.ndarray
    video_ids: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.sample_index.shape[0])

    @staticmethod
    def concat(parts: Sequence[Predictions], num_classes: int = 0) -> Predictions:
        """Rows of ``parts`` one after the other (``num_classes`` sizes an empty result)."""
        if not parts:
            return Predictions(
                np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, np.int64),
                np.zeros((0, 4)), np.zeros((0, num_classes), np.float32),
            )
        return Predictions(
            np.concatenate([p.sample_index for p in parts]),
            np.concatenate([p.video_ids for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )

    def select(self, keep: np.ndarray) -> Predictions:
        """Rows where the boolean mask (or index array) ``keep`` selects."""
        return Predictions(
            self.sample_index[keep], self.video_ids[keep], self.timestamps[keep], self.boxes[keep], self.scores[keep]
        )


def _per_box_video_ids(video_ids: Sequence[str], batch_index: np.ndarray, num_boxes: int) -> np.ndarray:
    """The collate's ``video_ids`` (one per sample, or one per box) as one per box."""
    ids = np.asarray(list(video_ids), dtype=object)
    if ids.shape[0] == num_boxes:
        return ids
    if batch_index.size and batch_index.max() >= ids.shape[0]:
        raise ValueError(f"batch has {ids.shape[0]} video ids but boxes refer to sample {batch_index.max()}")
    return ids[batch_index]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a test precision (``None`` for fp32).

    Raises:
        ValueError: an unknown precision, or fp16/bf16 on a device other than CUDA.
    """
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(dtypes)}")
    dtype = dtypes[precision]
    if dtype is not None and device.type != "cuda":
        raise ValueError(f"precision {precision} is for CUDA devices (on {device.type}, float32 is faster)")
    return dtype


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    device: torch.device,
    precision: str = "fp32",
    multiply_person_score: bool = False,
    progress: bool = True,
) -> Predictions:
    """Scores for this process's share of ``loader`` (a :func:`slowfast_det.engine.loader.build_loader` loader).

    Batches must hold ``inputs``, ``boxes`` (N, 5), ``ori_boxes`` (N, 4), ``metadata`` (N, 2: video index,
    second), ``video_ids`` and ``sample_index`` (N,). The model is put in eval mode.

    Scores that are not finite are kept (every process runs to the end, so the gathering stays in step); the
    first batch holding any is logged at once, naming its video and keyframe. :func:`run_test` decides.

    ``precision``: ``fp32``, or ``fp16`` / ``bf16`` autocast (CUDA only: on CPU they are slower than float32,
    measured in ``tests/benchmarks/bench_model.py``). Scores are computed from float32 logits either way. No
    config key or CLI option selects fp16/bf16 yet: their GPU speed is not measured (README, "Precision").

    ``multiply_person_score`` (``AVA.MULTIPLY_PERSON_SCORE``): each box's scores times its person score
    (the batches' ``box_scores``), i.e. P(person doing the action) rather than P(action | person).
    """
    model.eval()
    amp_dtype = autocast_dtype(precision, device)
    parts: list[Predictions] = []
    num_classes = 0
    warned = False
    batches = iter(tqdm(loader, desc="test", disable=not progress, dynamic_ncols=True))
    for it in range(len(loader)):
        try:
            batch = next(batches)
        except Exception as exc:
            exc.add_note(f"(loading test batch {it})")
            raise
        inputs = [x.to(device, non_blocking=True) for x in batch["inputs"]]
        boxes = batch["boxes"].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(inputs, boxes)
        scores = torch.sigmoid(logits.float()).cpu().numpy()
        if multiply_person_score:
            scores = scores * batch["box_scores"].numpy()[:, None]
        num_classes = scores.shape[1]
        batch_index = batch["boxes"][:, 0].long().numpy()
        part = Predictions(
            sample_index=batch["sample_index"].numpy().astype(np.int64),
            video_ids=_per_box_video_ids(batch["video_ids"], batch_index, scores.shape[0]),
            timestamps=np.rint(batch["metadata"][:, 1].double().numpy()).astype(np.int64),
            boxes=batch["ori_boxes"].double().numpy(),
            scores=scores.astype(np.float32),
        )
        if not warned and not np.isfinite(part.scores).all():
            warned = True
            logger.warning("the model gives non-finite scores: %s", nonfinite_message(part, f"test batch {it}"))
        parts.append(part)
    return Predictions.concat(parts, num_classes)


def merge_predictions(parts: Sequence[Predictions]) -> Predictions:
    """Rows of several processes' predictions, each sample once, in dataset-index order.

    A sample present in several parts (a padded sampler) is kept from the first part holding it; the box
    order inside a sample is kept.
    """
    merged = Predictions.concat(parts, max((p.scores.shape[1] for p in parts), default=0))
    if len(merged) == 0:
        return merged
    source = np.concatenate([np.full(len(p), r, dtype=np.int64) for r, p in enumerate(parts)])
    first = pd.Series(source).groupby(merged.sample_index).transform("min").to_numpy()
    keep = np.flatnonzero(source == first)
    return merged.select(keep[np.argsort(merged.sample_index[keep], kind="stable")])


def gather_predictions(local: Predictions) -> Predictions:
    """Every process's predictions merged by :func:`merge_predictions` (the same on 1 or K processes).

    Collective: call on every process; all receive the result.
    """
    return merge_predictions(all_gather_objects(local))


def nonfinite_message(preds: Predictions, where: str = "the test set") -> str | None:
    """``None`` when every score is finite, else how many are not and the first box holding one, e.g.
    ``"162 of 162 scores (18 of 18 boxes) in the test set are NaN, the first at video v, keyframe 902"``."""
    bad = ~np.isfinite(preds.scores)
    if not bad.any():
        return None
    boxes = bad.any(axis=1)
    first = int(np.argmax(boxes))
    kinds = [k for k, n in (("NaN", int(np.isnan(preds.scores).sum())), ("infinite", int(np.isinf(preds.scores).sum())))
             if n]
    return (
        f"{int(bad.sum())} of {bad.size} scores ({int(boxes.sum())} of {len(preds)} boxes) in {where} are "
        f"{' or '.join(kinds)}, the first at video {preds.video_ids[first]}, keyframe {int(preds.timestamps[first])}"
    )


@dataclass
class EvaluationOutput:
    """What :func:`evaluate_predictions` produced.

    Attributes:
        detections: the AVA detection table evaluated (8 columns, :data:`AVA_DETECTION_COLUMNS`).
        groundtruth: the ground-truth rows evaluated (``ava_tools.evaluate.read_groundtruth_csv`` columns).
        result: the evaluator's result (``metrics`` is the official flat dict, ``per_class`` a table).
        semantics: ``"current"`` or ``"earlier-with-exclusions"``.
        nonfinite_rows: detection rows left out of the evaluation because their score is not finite (only
            with ``allow_nonfinite``).
    """

    detections: pd.DataFrame
    groundtruth: pd.DataFrame
    result: Any
    semantics: str
    nonfinite_rows: int = 0

    @property
    def map(self) -> float:
        return float(self.result.mean_ap)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.result.metrics)

    @property
    def per_class(self) -> dict[int, float]:
        """``{class id: AP}`` (NaN for classes without ground truth)."""
        table = self.result.per_class
        return {int(i): float(ap) for i, ap in zip(table["id"], table["ap"], strict=True)}


def _keep_stride(timestamps: pd.Series, stride: int) -> np.ndarray:
    return np.asarray(pd.to_numeric(timestamps).to_numpy(np.float64) % stride == 0)


def check_test_inputs(
    *,
    labelmap_path: str | os.PathLike[str],
    groundtruth_path: str | os.PathLike[str],
    exclusions_path: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
) -> LabelMap:
    """Check the evaluation's files before a model runs; returns the label map.

    Args:
        labelmap_path, groundtruth_path, exclusions_path: as :func:`evaluate_predictions`.
        num_classes: the model's classes (``MODEL.NUM_CLASSES``): every class id of the label map must be one
            of its scores.

    Raises:
        AvaFormatError: the label map is missing or malformed.
        FileNotFoundError: the ground truth or exclusion file does not exist (``filename`` set).
        ConfigError: the label map has class ids above ``num_classes``.
    """
    from ava_tools.labelmap import read_labelmap
    from slowfast_det.config import ConfigError

    labelmap = read_labelmap(labelmap_path)
    for what, path in (("ground truth, AVA.GROUNDTRUTH_FILE", groundtruth_path),
                       ("exclusions, AVA.EXCLUSION_FILE", exclusions_path)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(errno.ENOENT, f"no such file ({what})", os.fspath(path))
    if num_classes is not None and labelmap.class_ids:
        top = max(labelmap.class_ids)
        if top > num_classes:
            raise ConfigError(
                f"the label map {labelmap_path} has class ids up to {top} ({len(labelmap.class_ids)} classes, "
                f"e.g. {top}: {labelmap.name(top)!r}) but the model has {num_classes} classes "
                f"(MODEL.NUM_CLASSES {num_classes}): use the label map of the model's classes "
                "(AVA.LABEL_MAP_FILE) or a model with that many classes"
            )
        if top < num_classes:
            logger.warning(
                "the model's classes %d..%d are not in the label map %s and are not evaluated (is it the label "
                "map of this model? MODEL.NUM_CLASSES is %d)", top + 1, num_classes, labelmap_path, num_classes,
            )
    return labelmap


def predictions_to_detections(
    preds: Predictions, labelmap: LabelMap, *, keyframe_stride: int = 1
) -> pd.DataFrame:
    """The AVA detection table of ``preds``: one row per box and label-map class, keyframes whose second is
    a multiple of ``keyframe_stride`` only (:func:`slowfast_det.pipeline.tables.detections_frame`)."""
    if keyframe_stride > 1:
        preds = preds.select(preds.timestamps % keyframe_stride == 0)
    return detections_frame(
        video_ids=preds.video_ids.tolist(),
        timestamps=preds.timestamps,
        boxes=preds.boxes,
        scores=preds.scores,
        class_ids=labelmap.class_ids,
    )


def evaluate_detections(
    detections: pd.DataFrame,
    *,
    labelmap: LabelMap,
    groundtruth_path: str | os.PathLike[str],
    exclusions_path: str | os.PathLike[str] | None = None,
    keyframe_stride: int = 1,
) -> EvaluationOutput:
    """Evaluate an AVA detection table (:func:`predictions_to_detections`) with the official semantics.

    Rows whose score is not finite cannot be ranked: they are left out with a warning and counted in
    ``nonfinite_rows``. Arguments as :func:`evaluate_predictions`.
    """
    from ava_tools.evaluate import AvaFormatError, evaluate, read_groundtruth_csv

    finite = np.isfinite(detections["score"].to_numpy(np.float64))
    nonfinite = int((~finite).sum())
    if nonfinite:
        logger.warning(
            "%d of %d detection rows have a non-finite score: they are left out of the evaluation (the mAP "
            "counts their boxes as missed)", nonfinite, len(detections),
        )
        detections = detections[finite].reset_index(drop=True)
    groundtruth = read_groundtruth_csv(groundtruth_path)
    exclusions = None if exclusions_path is None else os.fspath(exclusions_path)
    if keyframe_stride > 1:
        groundtruth = groundtruth[_keep_stride(groundtruth["timestamp"], keyframe_stride)].reset_index(drop=True)
        try:
            result = evaluate(groundtruth, detections, labelmap, exclusions=exclusions)
        except AvaFormatError as exc:  # rows of a table: name the file they come from
            raise AvaFormatError(
                f"{groundtruth_path} (its keyframes whose second is a multiple of {keyframe_stride}): {exc}"
            ) from exc
    else:  # read by the evaluator from the file: errors name its line
        result = evaluate(os.fspath(groundtruth_path), detections, labelmap, exclusions=exclusions)
    return EvaluationOutput(
        detections=detections,
        groundtruth=groundtruth,
        result=result,
        semantics="current" if exclusions_path is None else "earlier-with-exclusions",
        nonfinite_rows=nonfinite,
    )


def evaluate_predictions(
    preds: Predictions,
    *,
    labelmap_path: str | os.PathLike[str],
    groundtruth_path: str | os.PathLike[str],
    exclusions_path: str | os.PathLike[str] | None = None,
    keyframe_stride: int = 1,
) -> EvaluationOutput:
    """Evaluate gathered predictions with the official AVA semantics (see the module docstring).

    Args:
        preds: from :func:`gather_predictions`.
        labelmap_path: evaluation label map (its class ids are the detection rows written).
        groundtruth_path: AVA ground-truth CSV.
        exclusions_path: keyframes to exclude; given, the earlier evaluator's semantics apply.
        keyframe_stride: keep only keyframes whose second is a multiple of it, in both the detections and the
            ground truth (4 = PySlowFast's quick validation during training without AVA.FULL_TEST_ON_VAL).
    """
    from ava_tools.labelmap import read_labelmap

    labelmap = read_labelmap(labelmap_path)
    return evaluate_detections(
        predictions_to_detections(preds, labelmap, keyframe_stride=keyframe_stride),
        labelmap=labelmap,
        groundtruth_path=groundtruth_path,
        exclusions_path=exclusions_path,
        keyframe_stride=keyframe_stride,
    )


def copy_groundtruth_csv(
    source: str | os.PathLike[str], target: str | os.PathLike[str], *, keyframe_stride: int = 1
) -> Path:
    """Copy the ground-truth CSV's lines (those of keyframes ``% keyframe_stride == 0``) atomically.

    The lines are copied as they are (2-column empty-keyframe rows included), so the file is exactly the
    ground truth the evaluator read.
    """
    target = Path(target)
    with atomic_output(target) as tmp, open(source, newline="") as src, open(tmp, "w", newline="") as dst:
        for line in src:
            fields = line.split(",", 2)
            if keyframe_stride > 1 and len(fields) > 1 and float(fields[1]) % keyframe_stride != 0:
                continue
            dst.write(line)
    return target


def format_results(out: EvaluationOutput) -> str:
    """Per-class AP table and mAP (``ava_tools.evaluate.format_report``) with the semantics used."""
    from ava_tools.evaluate import format_report

    text = f"{format_report(out.result)}\n(evaluated with the {out.semantics} official evaluator semantics)"
    if out.nonfinite_rows:
        text += f"\n({out.nonfinite_rows} detection rows with a non-finite score were left out of the evaluation)"
    return text


def run_test(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    ctx: DistContext,
    output_dir: str | os.PathLike[str],
    labelmap_path: str | os.PathLike[str],
    groundtruth_path: str | os.PathLike[str],
    exclusions_path: str | os.PathLike[str] | None = None,
    keyframe_stride: int = 1,
    precision: str = "fp32",
    multiply_person_score: bool = False,
    progress: bool = True,
    write_files: bool = True,
    allow_nonfinite: bool = False,
    model_name: str = "the model",
) -> EvaluationOutput | None:
    """Predict on every process, then on rank 0 check the scores, write the CSVs, evaluate, write the metrics.

    Files in ``output_dir`` (``write_files``): ``detections.csv`` and ``groundtruth.csv`` (written before
    the evaluation runs), then ``metrics.json``.

    Args:
        allow_nonfinite: write non-finite scores out (as ``nan``) and evaluate without them, instead of
            raising :class:`NonFiniteScoresError`.
        model_name: how messages name the weights (e.g. the checkpoint's path).
        multiply_person_score: scores times each box's person score (:func:`predict`).

    Returns:
        The evaluation on rank 0, ``None`` on the other ranks.
    Raises:
        NonFiniteScoresError: some score is NaN or infinite (rank 0; nothing is written).
    """
    from ava_tools.labelmap import read_labelmap

    local = predict(
        model, loader, device=ctx.device, precision=precision, multiply_person_score=multiply_person_score,
        progress=progress and ctx.is_main,
    )
    preds = gather_predictions(local)
    if not ctx.is_main:
        return None
    problem = nonfinite_message(preds)
    if problem is not None:
        if not allow_nonfinite:
            raise NonFiniteScoresError(
                f"{model_name}: {problem}; are the weights or the inputs broken? (nothing written; "
                "slowfast-test --allow-nonfinite writes them out anyway)"
            )
        logger.warning("%s: %s; written out as nan (allow_nonfinite)", model_name, problem)
    labelmap = read_labelmap(labelmap_path)
    detections = predictions_to_detections(preds, labelmap, keyframe_stride=keyframe_stride)
    output_dir = Path(output_dir)
    if write_files:
        # computed work first: a failing evaluation must not lose the detections
        # as slowfast_det.pipeline.tables.write_detections_csv, with NaN written as "nan" (the evaluator names it)
        atomic.write_csv_atomic(detections, output_dir / "detections.csv", header=False, na_rep="nan")
        copy_groundtruth_csv(groundtruth_path, output_dir / "groundtruth.csv", keyframe_stride=keyframe_stride)
        logger.info("wrote %s and %s; evaluating", output_dir / "detections.csv", output_dir / "groundtruth.csv")
    out = evaluate_detections(
        detections,
        labelmap=labelmap,
        groundtruth_path=groundtruth_path,
        exclusions_path=exclusions_path,
        keyframe_stride=keyframe_stride,
    )
    if write_files:
        atomic.write_json_atomic(
            {
                "mAP": out.map,
                "semantics": out.semantics,
                "per_class": out.result.per_class.to_dict(orient="records"),
                "metrics": out.metrics,
                "num_boxes": len(preds),
                "num_keyframes": int(len(np.unique(preds.sample_index))),
                "nonfinite_detection_rows": out.nonfinite_rows,
                "model": model_name,
                "labelmap": str(labelmap_path),
                "groundtruth": str(groundtruth_path),
                "exclusions": None if exclusions_path is None else str(exclusions_path),
                "keyframe_stride": keyframe_stride,
            },
            output_dir / "metrics.json",
            indent=2,
            nan_as_null=True,
        )
    return out
