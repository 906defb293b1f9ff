"""The one place that maps a config (``slowfast_det.config``) to the keyword arguments of library modules.

Library classes and functions take plain keyword arguments and never read a config. Each ``*_kwargs(cfg)``
function below returns exactly the keyword arguments of one constructor, so a reader sees in one file which
config key drives which argument.

**Places to plug in.** Models and datasets are chosen through two registries, not if-chains:

* ``MODEL.ARCH`` -> a model builder ``fn(cfg) -> nn.Module``, registered with ``@register_model("arch")``;
* ``TRAIN.DATASET`` / ``TEST.DATASET`` -> a dataset builder ``fn(cfg, split) -> Dataset``, registered with
  ``@register_dataset("name")``.

A new backbone (say X3D) or dataset (say AVA-Kinetics) is a new module with a class that takes keyword
arguments, plus, in this file, one ``*_kwargs(cfg)`` function and one registered builder; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from yacs.config import CfgNode

F = TypeVar("F", bound=Callable[..., Any])

MODEL_BUILDERS: dict[str, Callable[[CfgNode], Any]] = {}
"""``MODEL.ARCH`` -> ``fn(cfg) -> nn.Module``."""
DATASET_BUILDERS: dict[str, Callable[[CfgNode, str], Any]] = {}
"""``TRAIN.DATASET`` / ``TEST.DATASET`` -> ``fn(cfg, split) -> torch.utils.data.Dataset``."""


def register_model(*archs: str) -> Callable[[F], F]:
    """Decorator: ``fn(cfg)`` builds the model of each ``MODEL.ARCH`` in ``archs``."""

    def add(fn: F) -> F:
        for arch in archs:
            if arch in MODEL_BUILDERS:
                raise ValueError(f"MODEL.ARCH {arch!r} is registered twice")
            MODEL_BUILDERS[arch] = fn
        return fn

    return add


def register_dataset(*names: str) -> Callable[[F], F]:
    """Decorator: ``fn(cfg, split)`` builds the dataset named ``TRAIN.DATASET`` / ``TEST.DATASET``."""

    def add(fn: F) -> F:
        for name in names:
            if name in DATASET_BUILDERS:
                raise ValueError(f"dataset {name!r} is registered twice")
            DATASET_BUILDERS[name] = fn
        return fn

    return add


def _lookup(registry: dict[str, Any], key: str, value: str) -> Any:
    from slowfast_det.config import ConfigError

    try:
        return registry[value]
    except KeyError:
        raise ConfigError(f"{key} {value!r} has no builder (registered: {', '.join(sorted(registry))})") from None


def build_model(cfg: CfgNode) -> Any:
    """The model of ``MODEL.ARCH`` (randomly initialised as PySlowFast does); load weights with
    :func:`slowfast_det.checkpoint.load_weights`."""
    return _lookup(MODEL_BUILDERS, "MODEL.ARCH", cfg.MODEL.ARCH)(cfg)


def build_dataset(cfg: CfgNode, split: str) -> Any:
    """The dataset of ``TRAIN.DATASET`` (split "train") or ``TEST.DATASET`` (other splits) for ``split``."""
    key = "TRAIN.DATASET" if split == "train" else "TEST.DATASET"
    name = cfg.TRAIN.DATASET if split == "train" else cfg.TEST.DATASET
    return _lookup(DATASET_BUILDERS, key, str(name).lower())(cfg, split)

# ---------------------------------------------------------------------------------------------------------
# models (slowfast_det.models)
# ---------------------------------------------------------------------------------------------------------

# PySlowFast picks the class by MODEL.MODEL_NAME and the kernels/pools by MODEL.ARCH; these pairs exist.
_MODEL_ARCHS = {"SlowFast": "slowfast", "ResNet": "slow"}


@register_model("slowfast", "slow")
def _build_slowfast(cfg: CfgNode) -> Any:
    """``slowfast_det.models.SlowFast(**model_kwargs(cfg))`` (ARCH slowfast: two pathways; slow: Slow-only)."""
    from slowfast_det.models.slowfast import SlowFast

    return SlowFast(**model_kwargs(cfg))


def model_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.models.SlowFast`` for ``cfg``.

    ``DETECTION.ENABLE`` selects the RoI head (AVA) or the clip head (Kinetics); ``MODEL.HEAD_ACT`` is not
    used here (the model returns logits).
    """
    from slowfast_det.config import ConfigError

    name, arch = cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH
    if _MODEL_ARCHS.get(name) != arch:
        pairs = ", ".join(f"{n}/{a}" for n, a in _MODEL_ARCHS.items())
        raise ConfigError(f"MODEL.MODEL_NAME {name!r} with MODEL.ARCH {arch!r} is not supported ({pairs})")
    if cfg.RESNET.TRANS_FUNC != "bottleneck_transform":
        raise ConfigError(f"RESNET.TRANS_FUNC {cfg.RESNET.TRANS_FUNC!r}: only bottleneck_transform exists")
    pathways = 2 if arch == "slowfast" else 1
    if len(cfg.DATA.INPUT_CHANNEL_NUM) != pathways:
        raise ConfigError(
            f"DATA.INPUT_CHANNEL_NUM {cfg.DATA.INPUT_CHANNEL_NUM} needs one entry per pathway "
            f"({pathways}) for MODEL.ARCH {arch}"
        )
    return {
        "arch": arch,
        "depth": cfg.RESNET.DEPTH,
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "head": "roi" if cfg.DETECTION.ENABLE else "clip",
        "num_frames": cfg.DATA.NUM_FRAMES,
        "input_channels": list(cfg.DATA.INPUT_CHANNEL_NUM),
        "width_per_group": cfg.RESNET.WIDTH_PER_GROUP,
        "num_groups": cfg.RESNET.NUM_GROUPS,
        "stride_1x1": cfg.RESNET.STRIDE_1X1,
        "spatial_strides": cfg.RESNET.SPATIAL_STRIDES,
        "spatial_dilations": cfg.RESNET.SPATIAL_DILATIONS,
        "num_block_temp_kernel": cfg.RESNET.NUM_BLOCK_TEMP_KERNEL,
        "alpha": cfg.SLOWFAST.ALPHA,
        "beta_inv": cfg.SLOWFAST.BETA_INV,
        "fusion_conv_channel_ratio": cfg.SLOWFAST.FUSION_CONV_CHANNEL_RATIO,
        "fusion_kernel_size": cfg.SLOWFAST.FUSION_KERNEL_SZ,
        "nonlocal_locations": cfg.NONLOCAL.LOCATION,
        "nonlocal_groups": cfg.NONLOCAL.GROUP,
        "nonlocal_pools": cfg.NONLOCAL.POOL,
        "nonlocal_instantiation": cfg.NONLOCAL.INSTANTIATION,
        "roi_resolution": cfg.DETECTION.ROI_XFORM_RESOLUTION,
        "roi_spatial_scale": 1.0 / cfg.DETECTION.SPATIAL_SCALE_FACTOR,
        "roi_aligned": cfg.DETECTION.ALIGNED,
        "dropout_rate": cfg.MODEL.DROPOUT_RATE,
        "fc_init_std": cfg.MODEL.FC_INIT_STD,
        "zero_init_final_bn": cfg.RESNET.ZERO_INIT_FINAL_BN,
        "norm_type": cfg.BN.NORM_TYPE,
        "bn_frozen": cfg.BN.FREEZE,
    }


# ---------------------------------------------------------------------------------------------------------
# data (slowfast_det.data)
# ---------------------------------------------------------------------------------------------------------

_DATA_SPLITS = ("train", "val", "test")


def dataset_kwargs(cfg: CfgNode, split: str) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.data.AvaDataset`` for ``split`` ("train", "val" or "test").

    As PySlowFast's ``Ava`` dataset: frame lists ``AVA.TRAIN_LISTS`` (train) / ``AVA.TEST_LISTS`` (val, test)
    in ``AVA.FRAME_LIST_DIR``; box files in ``AVA.ANNOTATION_DIR``: GT (``TRAIN_GT_BOX_LISTS``) and predicted
    (``TRAIN_PREDICT_BOX_LISTS``) for training, only ``TEST_PREDICT_BOX_LISTS`` otherwise; the val split keeps
    seconds divisible by 4 unless ``AVA.FULL_TEST_ON_VAL``. ``AVA.VIDEO_DIR`` (ours) decodes the videos
    instead of reading frame lists; ``DATA_LOADER.CACHE_CLIPS`` (ours) keeps decoded clips in memory.
    Two-pathway input (slow every ``SLOWFAST.ALPHA``-th frame) iff
    ``MODEL.ARCH`` is "slowfast".
    """
    import os

    from slowfast_det.config import ConfigError

    if split not in _DATA_SPLITS:
        raise ValueError(f"split must be one of {_DATA_SPLITS}, got {split!r}")
    if cfg.AVA.IMG_PROC_BACKEND != "cv2":
        raise ConfigError(
            f"AVA.IMG_PROC_BACKEND {cfg.AVA.IMG_PROC_BACKEND!r} is not supported: only 'cv2' "
            "(PySlowFast's default)"
        )
    train = split == "train"
    ann = cfg.AVA.ANNOTATION_DIR
    lists = cfg.AVA.TRAIN_LISTS if train else cfg.AVA.TEST_LISTS
    video_dir = cfg.AVA.VIDEO_DIR or None
    predicted = cfg.AVA.TRAIN_PREDICT_BOX_LISTS if train else cfg.AVA.TEST_PREDICT_BOX_LISTS
    return {
        "split": split,
        "frame_lists": [] if video_dir else [os.path.join(cfg.AVA.FRAME_LIST_DIR, f) for f in lists],
        "frame_dir": cfg.AVA.FRAME_DIR,
        "gt_box_lists": [os.path.join(ann, f) for f in cfg.AVA.TRAIN_GT_BOX_LISTS] if train else [],
        "predicted_box_lists": [os.path.join(ann, f) for f in predicted],
        "score_thresh": cfg.AVA.DETECTION_SCORE_THRESH,
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "num_frames": cfg.DATA.NUM_FRAMES,
        "sampling_rate": cfg.DATA.SAMPLING_RATE,
        "slowfast_alpha": cfg.SLOWFAST.ALPHA if cfg.MODEL.ARCH == "slowfast" else None,
        "mean": list(cfg.DATA.MEAN),
        "std": list(cfg.DATA.STD),
        "bgr": cfg.AVA.BGR,
        "train_jitter_scales": list(cfg.DATA.TRAIN_JITTER_SCALES),
        "train_crop_size": cfg.DATA.TRAIN_CROP_SIZE,
        "random_flip": cfg.DATA.RANDOM_FLIP,
        "color_augmentation": cfg.AVA.TRAIN_USE_COLOR_AUGMENTATION,
        "pca_jitter_only": cfg.AVA.TRAIN_PCA_JITTER_ONLY,
        "pca_eigval": list(cfg.DATA.TRAIN_PCA_EIGVAL),
        "pca_eigvec": [list(row) for row in cfg.DATA.TRAIN_PCA_EIGVEC],
        "test_crop_size": cfg.DATA.TEST_CROP_SIZE,
        "test_force_flip": cfg.AVA.TEST_FORCE_FLIP,
        "keyframe_stride": 4 if split == "val" and not cfg.AVA.FULL_TEST_ON_VAL else 1,
        "video_dir": video_dir,
        "cache_clips": cfg.DATA_LOADER.CACHE_CLIPS,
    }


@register_dataset("ava")
def _build_ava_dataset(cfg: CfgNode, split: str) -> Any:
    """``slowfast_det.data.AvaDataset(**dataset_kwargs(cfg, split))``."""
    from slowfast_det.data import AvaDataset

    return AvaDataset(**dataset_kwargs(cfg, split))


# ---------------------------------------------------------------------------------------------------------
# engine: optimiser, schedule, training and testing loops (slowfast_det.engine)
# ---------------------------------------------------------------------------------------------------------

_BCE_LOSSES = ("bce", "bce_logit")  # PySlowFast's BCELoss after its sigmoid head == BCE-with-logits here


def _engine_checks(cfg: CfgNode) -> None:
    from slowfast_det.config import ConfigError

    if not cfg.DETECTION.ENABLE:
        raise ConfigError("slowfast-train/slowfast-test handle AVA detection only: set DETECTION.ENABLE True")
    if cfg.MODEL.LOSS_FUNC not in _BCE_LOSSES:
        raise ConfigError(f"MODEL.LOSS_FUNC {cfg.MODEL.LOSS_FUNC!r} is not supported for AVA; use 'bce'")
    if cfg.BN.USE_PRECISE_STATS:
        raise ConfigError("BN.USE_PRECISE_STATS is not supported (PySlowFast's AVA configs set it False)")


def distributed_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.distributed.init_distributed`` (NUM_GPUS 0 forces the CPU)."""
    return {"use_gpu": cfg.NUM_GPUS > 0, "gpu_backend": cfg.DIST_BACKEND}


def _lr_scale(cfg: CfgNode, num_nodes: int) -> int:
    """Learning-rate multiplier: the number of nodes when ``SOLVER.BASE_LR_SCALE_NUM_SHARDS``, else 1."""
    return num_nodes if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS else 1


def optimizer_kwargs(cfg: CfgNode, *, num_nodes: int = 1) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.solver.build_optimizer``.

    ``num_nodes`` scales the rate when ``SOLVER.BASE_LR_SCALE_NUM_SHARDS`` (PySlowFast multiplies by
    NUM_SHARDS, its number of nodes; with torchrun it is WORLD_SIZE / LOCAL_WORLD_SIZE).
    """
    scale = _lr_scale(cfg, num_nodes)
    return {
        "method": cfg.SOLVER.OPTIMIZING_METHOD,
        "base_lr": cfg.SOLVER.BASE_LR * scale,
        "momentum": cfg.SOLVER.MOMENTUM,
        "weight_decay": cfg.SOLVER.WEIGHT_DECAY,
        "bn_weight_decay": cfg.BN.WEIGHT_DECAY,
        "dampening": cfg.SOLVER.DAMPENING,
        "nesterov": cfg.SOLVER.NESTEROV,
        "zero_wd_1d_param": cfg.SOLVER.ZERO_WD_1D_PARAM,
    }


def lr_schedule_kwargs(cfg: CfgNode, *, num_nodes: int = 1) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.solver.LRSchedule`` (scaled as :func:`optimizer_kwargs`)."""
    scale = _lr_scale(cfg, num_nodes)
    return {
        "policy": cfg.SOLVER.LR_POLICY,
        "base_lr": cfg.SOLVER.BASE_LR * scale,
        "max_epoch": cfg.SOLVER.MAX_EPOCH,
        "warmup_epochs": cfg.SOLVER.WARMUP_EPOCHS,
        "warmup_start_lr": cfg.SOLVER.WARMUP_START_LR * scale,
        "cosine_end_lr": cfg.SOLVER.COSINE_END_LR * scale,
        "cosine_after_warmup": cfg.SOLVER.COSINE_AFTER_WARMUP,
        "steps": list(cfg.SOLVER.STEPS),
        "lrs": list(cfg.SOLVER.LRS),
    }


def loader_kwargs(cfg: CfgNode, split: str) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.loader.build_loader`` except dataset, collate and rank.

    ``TRAIN.BATCH_SIZE`` (splits "train" and "val", as PySlowFast) / ``TEST.BATCH_SIZE`` ("test") are global
    batches (divided over the processes).
    """
    train = split == "train"
    return {
        "train": train,
        "global_batch_size": cfg.TEST.BATCH_SIZE if split == "test" else cfg.TRAIN.BATCH_SIZE,
        "seed": cfg.RNG_SEED,
        "num_workers": cfg.DATA_LOADER.NUM_WORKERS,
        "pin_memory": cfg.DATA_LOADER.PIN_MEMORY,
    }


def trainer_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.trainer.Trainer`` that come from the config.

    TensorBoard goes to ``OUTPUT_DIR/TENSORBOARD.LOG_DIR``, or ``OUTPUT_DIR/runs-{TRAIN.DATASET}`` when that is
    empty (as PySlowFast).
    """
    _engine_checks(cfg)
    from pathlib import Path

    out = Path(cfg.OUTPUT_DIR)
    tb = None
    if cfg.TENSORBOARD.ENABLE:
        tb = out / (cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}")
    return {
        "output_dir": out,
        "max_epoch": cfg.SOLVER.MAX_EPOCH,
        "checkpoint_period": cfg.TRAIN.CHECKPOINT_PERIOD,
        "eval_period": cfg.TRAIN.EVAL_PERIOD,
        "clip_grad_val": cfg.SOLVER.CLIP_GRAD_VAL,
        "clip_grad_l2norm": cfg.SOLVER.CLIP_GRAD_L2NORM,
        "mixed_precision": cfg.TRAIN.MIXED_PRECISION,
        "seed": cfg.RNG_SEED,
        "log_period": cfg.LOG_PERIOD,
        "tensorboard_dir": tb,
    }


def evaluation_kwargs(cfg: CfgNode, *, use_exclusions: bool = False, during_training: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.engine.tester.evaluate_predictions`` / ``run_test`` (files).

    Files come from ``AVA.ANNOTATION_DIR``; the exclusion file only with ``use_exclusions`` (earlier evaluator
    semantics). During training without ``AVA.FULL_TEST_ON_VAL`` only keyframes whose second is a multiple of
    4 are evaluated (PySlowFast's quick validation).
    """
    _engine_checks(cfg)
    from pathlib import Path

    ann = Path(cfg.AVA.ANNOTATION_DIR)
    return {
        "labelmap_path": ann / cfg.AVA.LABEL_MAP_FILE,
        "groundtruth_path": ann / cfg.AVA.GROUNDTRUTH_FILE,
        "exclusions_path": ann / cfg.AVA.EXCLUSION_FILE if use_exclusions else None,
        "keyframe_stride": 4 if during_training and not cfg.AVA.FULL_TEST_ON_VAL else 1,
    }


def prediction_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Scoring options of ``slowfast_det.engine.tester.predict`` / ``run_test``: ``multiply_person_score``
    (``AVA.MULTIPLY_PERSON_SCORE``: action scores times each predicted box's person score)."""
    return {"multiply_person_score": bool(cfg.AVA.MULTIPLY_PERSON_SCORE)}


def weights_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Where a run's weights come from: ``train`` initial weights (``TRAIN.CHECKPOINT_FILE_PATH``), ``test``
    weights (``TEST.CHECKPOINT_FILE_PATH``), ``None`` where empty, and ``auto_resume`` (``TRAIN.AUTO_RESUME``).
    The format is read from the file's content, so ``*.CHECKPOINT_TYPE`` is not needed."""
    return {
        "train": cfg.TRAIN.CHECKPOINT_FILE_PATH or None,
        "test": cfg.TEST.CHECKPOINT_FILE_PATH or None,
        "auto_resume": cfg.TRAIN.AUTO_RESUME,
    }


# ---------------------------------------------------------------------------------------------------------
# video detection (slowfast_det.pipeline.detector / detector / tracking)
# ---------------------------------------------------------------------------------------------------------


def video_detector_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Config-driven keyword arguments of ``slowfast_det.pipeline.detector.VideoActionDetector`` (model and detector
    aside): clip sampling (``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE`` at ``DATA.TARGET_FPS``), test resize
    (``DATA.TEST_CROP_SIZE``), normalisation (``DATA.MEAN``/``STD``, ``AVA.BGR``), pathways
    (``SLOWFAST.ALPHA`` for ``MODEL.ARCH`` slowfast), the score activation (``MODEL.HEAD_ACT``) and
    ``AVA.MULTIPLY_PERSON_SCORE``."""
    from slowfast_det.config import ConfigError

    if not cfg.DETECTION.ENABLE:
        raise ConfigError("detect-video needs an AVA model with an RoI head: DETECTION.ENABLE must be True")
    return {
        "num_frames": cfg.DATA.NUM_FRAMES,
        "sampling_rate": cfg.DATA.SAMPLING_RATE,
        "target_fps": cfg.DATA.TARGET_FPS,
        "crop_size": cfg.DATA.TEST_CROP_SIZE,
        "mean": list(cfg.DATA.MEAN),
        "std": list(cfg.DATA.STD),
        "bgr": cfg.AVA.BGR,
        "alpha": cfg.SLOWFAST.ALPHA if cfg.MODEL.ARCH == "slowfast" else None,
        "head_act": cfg.MODEL.HEAD_ACT,
        "multiply_person_score": bool(cfg.AVA.MULTIPLY_PERSON_SCORE),
    }


def person_detector_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Default detectron2 config, weights and score threshold of ``slowfast_det.detection.person.PersonDetector``
    (``DEMO.DETECTRON2_CFG``, ``DEMO.DETECTRON2_WEIGHTS``, ``DEMO.DETECTRON2_THRESH``); command-line flags
    override them."""
    return {
        "config": cfg.DEMO.DETECTRON2_CFG,
        "weights": cfg.DEMO.DETECTRON2_WEIGHTS,
        "score_threshold": cfg.DEMO.DETECTRON2_THRESH,
    }


__all__ = ["DATASET_BUILDERS", "MODEL_BUILDERS", "build_dataset", "build_model", "register_dataset", "register_model"]


def dataset_report_kwargs(cfg: CfgNode) -> dict[str, Any]:
    """Keyword arguments of ``slowfast_det.report.dataset.write_dataset_report`` (``slowfast-test --report``):
    the test's ``OUTPUT_DIR`` and ``AVA.FRAME_DIR`` for the keyframe thumbnails."""
    return {"output_dir": cfg.OUTPUT_DIR, "frame_dir": cfg.AVA.FRAME_DIR or None}
