"""Fine-tune, evaluate and export a small Detectron2 person detector on SynthAVA (or any AVA layout).

* :func:`build_detector_cfg` starts from detectron2's own model-zoo config
  ``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml`` and shrinks it to a CPU-sized Faster R-CNN: ResNet-18
  (detectron2's ``BasicBlock``), batch norm, a narrow FPN, one class ("person"), anchors sized to the frame.
  No pretrained weights can be downloaded here, so the network is trained **from scratch** (``FREEZE_AT 0``,
  ``MODEL.WEIGHTS ""``); warm-up and a modest learning rate keep that stable.
* :func:`train_detector` runs detectron2's own training loop (``SimpleTrainer`` + ``IterationTimer`` and
  ``LRScheduler`` hooks, ``build_optimizer``/``build_lr_scheduler``) on the ``coco_person_train.json`` written
  by :mod:`ava_tools.synth`, and caches the result: weights are reused when the parameters and data match.
* :func:`evaluate_detector` reports COCO box AP and AP50 with pycocotools on ``coco_person_val.json``.
* :func:`export_predicted_boxes` writes PySlowFast's predicted-box CSV
  (``ava_detection_{split}_boxes_and_labels.csv``: ``video_id,timestamp,x1,y1,x2,y2,,score``, boxes
  normalised to [0, 1], empty label) for every keyframe image of
  the split, so ``AVA.TEST_PREDICT_BOX_LISTS`` reads it unchanged.

Only the person detector's own detectron2 config is built here (from explicit keyword arguments); the action
model's config stays in :mod:`slowfast_det.config`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ava_tools.atomic import write_bytes_atomic
from ava_tools.cli import UserError
from ava_tools.timeline import AVA_FPS, AVA_START_SEC
from slowfast_det.detection import compat

__all__ = [
    "DetectorDataError",
    "DetectorParams",
    "TrainedDetector",
    "DetectorMetrics",
    "KeyframeImage",
    "build_detector_cfg",
    "register_coco_split",
    "train_detector",
    "load_detector",
    "predict_images",
    "evaluate_detector",
    "coco_box_metrics",
    "keyframe_images",
    "export_predicted_boxes",
    "predicted_boxes_name",
    "write_groundtruth_boxes",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "PARAMS_NAME",
]

logger = logging.getLogger(__name__)

MODEL_ZOO_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
WEIGHTS_NAME = "model_final.pth"
CONFIG_NAME = "detector_config.yaml"
PARAMS_NAME = "detector_params.json"
# AVA: frame k (1-based) of a video cut at second 900 and extracted at 30 fps shows second 900 + (k - 1) / 30.
_FRAME_NAME = re.compile(r"^(?P<vid>.+)_(?P<idx>\d{6})\.jpg$")


class DetectorDataError(UserError, ValueError):
    """The dataset files the detector needs are missing or malformed."""


@dataclass(frozen=True)
class DetectorParams:
    """Everything that decides the trained weights (the cache key, with the data fingerprint).

    Attributes:
        max_iter: training iterations (one batch of ``ims_per_batch`` images each).
        base_lr: SGD learning rate after warm-up.
        warmup_iters: linear warm-up length in iterations (from ``0.001 * base_lr``).
        ims_per_batch: images per training batch.
        depth: ResNet depth of the backbone (18 or 34 use detectron2's BasicBlock).
        fpn_channels: FPN output channels (model zoo: 256).
        box_head_dim: width of the two box-head FC layers (model zoo: 1024).
        roi_batch_size: sampled RoIs per image for the box head (model zoo: 512).
        rpn_batch_size: sampled anchors per image for the RPN (model zoo: 256).
        min_size: shortest image side in pixels for training and testing; 0 = the frame height (no resize).
        anchor_scale: anchor sizes are ``min_size * anchor_scale * 2**level`` for the five FPN levels, pixels.
        seed: RNG seed for weights and data order.
    """

    max_iter: int = 300
    base_lr: float = 0.02
    warmup_iters: int = 50
    ims_per_batch: int = 4
    depth: int = 18
    fpn_channels: int = 64
    box_head_dim: int = 256
    roi_batch_size: int = 64
    rpn_batch_size: int = 64
    min_size: int = 0
    anchor_scale: float = 0.125
    seed: int = 0


@dataclass(frozen=True)
class DetectorMetrics:
    """COCO box metrics of the person detector, in percent (pycocotools ``COCOeval``)."""

    ap: float
    ap50: float
    ap75: float
    num_images: int
    num_gt_boxes: int


@dataclass
class TrainedDetector:
    """Result of :func:`train_detector`.

    Attributes:
        weights: ``model_final.pth`` (``{"model": state_dict}``, loadable by ``DetectionCheckpointer``).
        config: the full detectron2 config YAML of the model (for ``DEMO.DETECTRON2_CFG``).
        losses: total training loss per iteration (empty when cached weights were reused).
        loss_terms: each loss term per iteration (``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_cls``,
            ``loss_box_reg``).
        reused: True when cached weights matched and no training ran.
        seconds: wall time of the training run (0 when reused).
    """

    weights: Path
    config: Path
    losses: list[float] = field(default_factory=list)
    loss_terms: dict[str, list[float]] = field(default_factory=dict)
    reused: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class KeyframeImage:
    """One keyframe JPEG: ``path`` shows second ``timestamp`` of ``video_id``; size in pixels."""

    video_id: str
    timestamp: int
    path: Path
    width: int
    height: int


# ---------------------------------------------------------------------------------------------------------
# files and config
# ---------------------------------------------------------------------------------------------------------


def _coco_json(data_root: Path, split: str) -> Path:
    path = Path(data_root) / "annotations" / f"coco_person_{split}.json"
    if not path.is_file():
        raise DetectorDataError(
            f"{path} does not exist: expected a COCO person JSON as written by ava_tools.synth "
            f"(annotations/coco_person_{{train,val}}.json under the dataset root)"
        )
    return path


def _read_coco(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorDataError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DetectorDataError(f"{path}: a COCO JSON needs a list '{key}'")
    if len(data["categories"]) != 1:
        raise DetectorDataError(
            f"{path}: expected exactly one category (person), "
            f"got {[c.get('name') for c in data['categories']]}"
        )
    return data


def _frame_height(coco: dict[str, Any], source: Path) -> int:
    heights = {int(im["height"]) for im in coco["images"]}
    if not heights:
        raise DetectorDataError(f"{source}: no images")
    return max(heights)


def build_detector_cfg(
    *,
    params: DetectorParams,
    frame_height: int,
    frame_width: int,
    train_dataset: str = "",
    test_dataset: str = "",
    output_dir: str = "",
    device: str = "cpu",
) -> Any:
    """A detectron2 ``CfgNode``: the model-zoo Faster R-CNN R50-FPN config shrunk to a small person detector.

    Args:
        params: the training and size parameters.
        frame_height, frame_width: frame size in pixels (sets the input size and the anchor sizes).
        train_dataset, test_dataset: registered detectron2 dataset names (may be empty for inference only).
        output_dir: detectron2 ``OUTPUT_DIR``.
        device: torch device name.
    """
    compat.patch()
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(MODEL_ZOO_CONFIG))
    min_size = params.min_size or frame_height
    # ResizeShortestEdge caps the long side; keep the whole frame whatever its aspect ratio.
    max_size = int(np.ceil(max(frame_width, frame_height) * min_size / min(frame_width, frame_height)))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""  # trained from scratch: no pretrained weights are available offline
    cfg.MODEL.RESNETS.DEPTH = params.depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64  # required by detectron2 for R18/R34
    cfg.MODEL.RESNETS.NORM = "BN"  # FrozenBN would be an identity on randomly initialised weights
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # nothing pretrained to keep
    cfg.MODEL.FPN.OUT_CHANNELS = params.fpn_channels
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = params.box_head_dim
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = params.roi_batch_size
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = params.rpn_batch_size
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 600
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 300
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    base = max(4.0, min_size * params.anchor_scale)
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[float(round(base * 2**i))] for i in range(5)]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0, 2.0, 3.0]]  # height / width: standing people are tall
    cfg.INPUT.MIN_SIZE_TRAIN = (min_size,)
    cfg.INPUT.MAX_SIZE_TRAIN = max_size
    cfg.INPUT.MIN_SIZE_TEST = min_size
    cfg.INPUT.MAX_SIZE_TEST = max_size
    cfg.DATASETS.TRAIN = (train_dataset,) if train_dataset else ()
    cfg.DATASETS.TEST = (test_dataset,) if test_dataset else ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = params.ims_per_batch
    cfg.SOLVER.BASE_LR = params.base_lr
    cfg.SOLVER.MAX_ITER = params.max_iter
    if params.max_iter < 1 or params.ims_per_batch < 1:
        raise ValueError(
            f"max_iter and ims_per_batch must be >= 1, got {params.max_iter}, {params.ims_per_batch}"
        )
    step = int(params.max_iter * 0.8)  # one LR drop (x0.1) for the last fifth
    cfg.SOLVER.STEPS = (step,) if 0 < step < params.max_iter else ()
    cfg.SOLVER.WARMUP_ITERS = min(params.warmup_iters, params.max_iter)
    cfg.SOLVER.WARMUP_FACTOR = 1e-3
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**9
    # from scratch, early RPN gradients can be huge; clipping (detectron2's own option) keeps training finite
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 5.0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = params.seed
    cfg.OUTPUT_DIR = output_dir
    return cfg


def register_coco_split(data_root: str | os.PathLike[str], split: str) -> str:
    """Register ``annotations/coco_person_{split}.json`` (images under ``frames/``) with detectron2.

    Returns the dataset name (derived from the file's absolute path, so two datasets never clash); registering
    the same file twice returns the same name.
    """
    compat.patch()
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    json_path = _coco_json(Path(data_root), split).resolve()
    name = f"synth_person_{split}_{hashlib.sha1(str(json_path).encode()).hexdigest()[:10]}"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, str(json_path), str(json_path.parents[1] / "frames"))
    return name


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_key(params: DetectorParams, train_json: Path) -> dict[str, Any]:
    return {"params": asdict(params), "train_json_sha256": _fingerprint(train_json)}


# ---------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------


def train_detector(
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    params: DetectorParams = DetectorParams(),
    force: bool = False,
    progress: bool = False,
) -> TrainedDetector:
    """Train the small Faster R-CNN on ``annotations/coco_person_train.json`` with detectron2's training loop.

    Writes ``out_dir/model_final.pth``, ``out_dir/detector_config.yaml`` and ``out_dir/detector_params.json``
    (the cache key). When those exist and the key matches (same parameters, same training JSON), training is
    skipped and the cached weights are returned, unless ``force``. ``progress``: a tqdm bar over iterations
    (detectron2's own metric lines go to the ``detectron2`` logger).

    Reproducible on one machine: the weights, the data order and the augmentation draws all come from
    ``params.seed`` (detectron2's ``seed_all_rng`` + a seeded ``TrainingSampler``, no loader workers), and CPU
    kernels give the same results for the same thread count, so two runs with the same parameters, data and
    ``torch.get_num_threads()`` give the same weights (``tests/test_detector_training.py``).
    """
    compat.patch()
    import torch
    from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
    from detectron2.data.samplers import TrainingSampler
    from detectron2.engine import SimpleTrainer, hooks
    from detectron2.modeling import build_model
    from detectron2.solver import build_lr_scheduler, build_optimizer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import CommonMetricPrinter

    data_root, out_dir = Path(data_root), Path(out_dir)
    train_json = _coco_json(data_root, "train")
    coco = _read_coco(train_json)
    weights, config_path, params_path = out_dir / WEIGHTS_NAME, out_dir / CONFIG_NAME, out_dir / PARAMS_NAME
    key = _cache_key(params, train_json)
    if not force and weights.is_file() and config_path.is_file() and params_path.is_file():
        try:
            saved = json.loads(params_path.read_text())
        except json.JSONDecodeError:
            saved = None  # a damaged key: retrain
        if saved == key:
            logger.info("reusing the trained detector %s (same parameters and data)", weights)
            return TrainedDetector(weights=weights, config=config_path, reused=True)
        logger.info("detector parameters or data changed: retraining %s", weights)

    name = register_coco_split(data_root, "train")
    height = _frame_height(coco, train_json)
    width = max(int(im["width"]) for im in coco["images"])
    cfg = build_detector_cfg(
        params=params, frame_height=height, frame_width=width, train_dataset=name, output_dir=str(out_dir)
    )
    seed_all_rng(params.seed)
    torch.manual_seed(params.seed)
    model = build_model(cfg)
    model.train()
    dataset = get_detection_dataset_dicts([name], filter_empty=True)
    if not dataset:
        raise DetectorDataError(f"{train_json}: no image has a person box to train on")
    loader = build_detection_train_loader(
        cfg, dataset=dataset, sampler=TrainingSampler(len(dataset), seed=params.seed)
    )
    optimizer = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, loader, optimizer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer)),
            hooks.PeriodicWriter([CommonMetricPrinter(params.max_iter)], period=max(1, params.max_iter // 8)),
        ]
    )
    from tqdm import tqdm

    bar = tqdm(total=params.max_iter, desc="detector", unit="it", disable=not progress, dynamic_ncols=True)
    trainer.register_hooks([hooks.CallbackHook(after_step=lambda _t: bar.update())])
    start = time.perf_counter()
    try:
        trainer.train(0, params.max_iter)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    losses = [float(v) for v, _ in trainer.storage.history("total_loss").values()]
    terms = {
        k: [float(v) for v, _ in h.values()]
        for k, h in trainer.storage.histories().items()
        if k.startswith("loss_")
    }
    if not np.isfinite(losses).all():
        raise FloatingPointError(
            f"detector training diverged (loss {losses[-1]}); lower base_lr ({params.base_lr})"
        )

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "iteration": params.max_iter}, buffer)
    write_bytes_atomic(buffer.getvalue(), weights)
    cfg.MODEL.WEIGHTS = str(weights.resolve())
    cfg.DATASETS.TRAIN = ()  # the registered name exists only in this process
    write_bytes_atomic(cfg.dump().encode(), config_path)
    write_bytes_atomic(json.dumps(key, indent=1).encode(), params_path)
    logger.info("trained the person detector in %.0f s, final loss %.3f", seconds, losses[-1])
    return TrainedDetector(
        weights=weights, config=config_path, losses=losses, loss_terms=terms, seconds=seconds
    )


# ---------------------------------------------------------------------------------------------------------
# inference, evaluation, export
# ---------------------------------------------------------------------------------------------------------


def load_detector(config: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> Any:
    """Build the detector from its saved detectron2 config YAML and load ``weights`` (default: the config's
    ``MODEL.WEIGHTS``). Returns ``(cfg, model)`` with the model in eval mode on the config's device."""
    compat.patch()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"detector config {config} does not exist (written by train_detector)")
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    path = Path(weights) if weights is not None else Path(cfg.MODEL.WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {path} do not exist (named by {config})")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(path))
    model.eval()
    return cfg, model


def predict_images(
    model: Any, cfg: Any, paths: Sequence[Path], *, batch_size: int = 8
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Detect people in each image.

    Yields, per image, ``(boxes, scores)``: float32 ``(N, 4)`` pixel ``x1, y1, x2, y2`` in the image's own
    size and float32 ``(N,)`` scores in [0, 1], sorted by decreasing score.
    """
    compat.patch()
    import torch
    from detectron2.data import detection_utils
    from detectron2.data import transforms as T

    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    for start in range(0, len(paths), batch_size):
        inputs = []
        for path in paths[start : start + batch_size]:
            image = detection_utils.read_image(str(path), format=cfg.INPUT.FORMAT)
            height, width = image.shape[:2]
            resized = resize.get_transform(image).apply_image(image)
            tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
            inputs.append({"image": tensor, "height": height, "width": width})
        with torch.no_grad():
            outputs = model(inputs)
        for out in outputs:
            instances = out["instances"].to("cpu")
            scores = instances.scores.numpy().astype(np.float32)
            order = np.argsort(-scores, kind="stable")
            yield instances.pred_boxes.tensor.numpy().astype(np.float32)[order], scores[order]


def evaluate_detector(
    model: Any, cfg: Any, data_root: str | os.PathLike[str], *, split: str = "val"
) -> DetectorMetrics:
    """COCO box AP / AP50 / AP75 (percent) of the detector on ``annotations/coco_person_{split}.json``.

    Uses pycocotools' ``COCOeval`` directly (detectron2's COCOEvaluator would need its C++ fast evaluator or
    ``use_fast_impl=False``; the numbers are the same).
    """
    json_path = _coco_json(Path(data_root), split)
    data = _read_coco(json_path)
    frames = json_path.parents[1] / "frames"
    cat_id = int(data["categories"][0]["id"])
    images = data["images"]
    results = []
    paths = [frames / im["file_name"] for im in images]
    for path in paths:
        if not path.is_file():
            raise DetectorDataError(f"{json_path}: image {path} does not exist")
    for im, (boxes, scores) in zip(images, predict_images(model, cfg, paths), strict=True):
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist(), strict=True):
            results.append(
                {
                    "image_id": im["id"],
                    "category_id": cat_id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return coco_box_metrics(json_path, results)


def coco_box_metrics(json_path: str | os.PathLike[str], results: Sequence[dict[str, Any]]) -> DetectorMetrics:
    """COCO box AP / AP50 / AP75 (percent) of ``results`` against the COCO JSON ``json_path`` (pycocotools).

    ``results``: COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.
    No results (or no ground truth) gives 0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    json_path = Path(json_path)
    data = _read_coco(json_path)
    num_images, num_gt = len(data["images"]), len(data["annotations"])
    if not results or num_gt == 0:
        return DetectorMetrics(ap=0.0, ap50=0.0, ap75=0.0, num_images=num_images, num_gt_boxes=num_gt)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        gt = COCO(str(json_path))
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50, ap75 = (max(0.0, float(v)) * 100.0 for v in ev.stats[:3])
    return DetectorMetrics(ap=ap, ap50=ap50, ap75=ap75, num_images=num_images, num_gt_boxes=num_gt)


def keyframe_images(data_root: str | os.PathLike[str], split: str) -> list[KeyframeImage]:
    """The keyframe images of a split, from ``annotations/coco_person_{split}.json``.

    Each image's ``file_name`` is ``{vid}/{vid}_{k:06d}.jpg`` relative to ``frames/``; frame ``k`` (1-based)
    shows second ``900 + (k - 1) / 30``, which must be a whole second for a keyframe.
    """
    json_path = _coco_json(Path(data_root), split)
    data = _read_coco(json_path)
    frames = json_path.parents[1] / "frames"
    out = []
    for im in data["images"]:
        rel = str(im["file_name"])
        match = _FRAME_NAME.match(Path(rel).name)
        if match is None:
            raise DetectorDataError(
                f"{json_path}: image file_name {rel!r} is not '{{vid}}/{{vid}}_NNNNNN.jpg'"
            )
        offset = int(match["idx"]) - 1
        if offset % AVA_FPS:
            raise DetectorDataError(
                f"{json_path}: image {rel!r} is frame {offset + 1}, not on a whole second"
            )
        out.append(
            KeyframeImage(
                video_id=match["vid"],
                timestamp=AVA_START_SEC + offset // AVA_FPS,
                path=frames / rel,
                width=int(im["width"]),
                height=int(im["height"]),
            )
        )
    return sorted(out, key=lambda k: (k.video_id, k.timestamp))


def predicted_boxes_name(split: str) -> str:
    """PySlowFast's file name of a split's predicted person boxes (``AVA.*_PREDICT_BOX_LISTS``)."""
    return f"ava_detection_{split}_boxes_and_labels.csv"


def export_predicted_boxes(
    model: Any,
    cfg: Any,
    data_root: str | os.PathLike[str],
    *,
    split: str,
    min_score: float = 0.1,
    out_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the detector's person boxes for every keyframe of ``split`` in PySlowFast's predicted-box format.

    Rows (no header): ``video_id,timestamp,x1,y1,x2,y2,,score`` with the box normalised to [0, 1] by the image
    size, the timestamp an integer second (4 digits, as in AVA), the label column empty, boxes with
    ``score >= min_score`` (the AVA loader applies ``AVA.DETECTION_SCORE_THRESH`` on top). Written atomically
    to ``out_path`` (default ``annotations/ava_detection_{split}_boxes_and_labels.csv``).
    """
    data_root = Path(data_root)
    keyframes = keyframe_images(data_root, split)
    for kf in keyframes:
        if not kf.path.is_file():
            raise DetectorDataError(
                f"keyframe image {kf.path} ({kf.video_id} second {kf.timestamp}) does not exist"
            )
    rows = []
    for kf, (boxes, scores) in zip(
        keyframes, predict_images(model, cfg, [k.path for k in keyframes]), strict=True
    ):
        keep = scores >= min_score
        norm = boxes[keep] / np.array([kf.width, kf.height, kf.width, kf.height], dtype=np.float32)
        norm = np.clip(norm, 0.0, 1.0)
        for (x1, y1, x2, y2), score in zip(norm.tolist(), scores[keep].tolist(), strict=True):
            rows.append((kf.video_id, f"{kf.timestamp:04d}", x1, y1, x2, y2, "", score))
    frame = pd.DataFrame(rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "label", "score"])
    target = (
        Path(out_path) if out_path is not None else data_root / "annotations" / predicted_boxes_name(split)
    )
    text = frame.to_csv(header=False, index=False, float_format="%.4f")
    write_bytes_atomic(text.encode(), target)
    logger.info("wrote %d predicted person boxes for %d keyframes to %s", len(frame), len(keyframes), target)
    return target


def write_groundtruth_boxes(gt_csv: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write the ground-truth person boxes of an AVA annotation CSV as a predicted-box CSV (score 1.0).

    Each distinct ``(video_id, timestamp, box)`` of ``gt_csv``
    (``video_id,timestamp,x1,y1,x2,y2,action,person``)
    becomes one row ``video_id,timestamp,x1,y1,x2,y2,,1.0``: testing on it isolates the action model from the
    person detector (the "GT boxes" setting of the SlowFast paper's ablations). Written atomically.
    """
    gt_csv = Path(gt_csv)
    if not gt_csv.is_file():
        raise DetectorDataError(f"ground-truth CSV {gt_csv} does not exist")
    names = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "label", "person"]
    frame = pd.read_csv(gt_csv, header=None, names=names, dtype={"video_id": str, "timestamp": str})
    if frame[["x1", "y1", "x2", "y2"]].isna().any().any():
        bad = int(np.flatnonzero(frame[["x1", "y1", "x2", "y2"]].isna().any(axis=1).to_numpy())[0])
        raise DetectorDataError(f"{gt_csv}: line {bad + 1} has no box (expected {','.join(names)})")
    boxes = frame.drop_duplicates(subset=["video_id", "timestamp", "x1", "y1", "x2", "y2"])[
        ["video_id", "timestamp", "x1", "y1", "x2", "y2"]
    ].copy()
    boxes["timestamp"] = [f"{int(t):04d}" for t in boxes["timestamp"]]
    boxes["label"] = ""
    boxes["score"] = 1.0
    target = Path(out_path)
    write_bytes_atomic(boxes.to_csv(header=False, index=False, float_format="%.4f").encode(), target)
    return target
