"""The project's configuration: PySlowFast key names, PySlowFast YAML files accepted unchanged.

This is the only module that reads config files. :func:`load_config` returns a frozen yacs ``CfgNode``;
``slowfast_det.builders`` maps it to the explicit keyword arguments of the library's modules.

Three kinds of keys:

* **used** keys, defined in :func:`get_default_config` with PySlowFast's own default values (PySlowFast's YAML
  files rely on those defaults, so a different default would silently build a different model);
* **ignored** keys (:data:`IGNORED_KEYS`): PySlowFast keys that mean nothing here (other architectures,
  visualisation, multigrid, ...). They are accepted and listed once, as a warning, at load time;
* anything else is a misspelling: :class:`ConfigError` names the key, the file and the closest valid key.

As in PySlowFast (yacs), string values are read as Python literals when they parse as one, so ``1e-7``
(a string to YAML) becomes a float. Command-line overrides are ``KEY VALUE`` pairs, as in PySlowFast and
detectron2. A YAML file may name a ``_BASE_`` file (relative to itself) to inherit from, as detectron2 does.
"""

from __future__ import annotations

import ast
import difflib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode

from ava_tools.cli import UserError

__all__ = [
    "ConfigError",
    "CfgNode",
    "IGNORED_KEYS",
    "get_default_config",
    "load_config",
    "load_config_from_string",
    "merge_overrides",
    "dump_config",
]

logger = logging.getLogger(__name__)


class ConfigError(UserError, ValueError):
    """A config file or override is invalid (unknown key, wrong type, unreadable file)."""


def get_default_config() -> CfgNode:
    """A fresh copy of every used key with its default (PySlowFast's default where PySlowFast has the key)."""
    c = CfgNode()

    c.BN = CfgNode()
    c.BN.USE_PRECISE_STATS = False
    c.BN.WEIGHT_DECAY = 0.0
    c.BN.NORM_TYPE = "batchnorm"  # "batchnorm" or "sync_batchnorm"
    c.BN.FREEZE = False  # ours: keep BN statistics and affine parameters fixed while training

    c.TRAIN = CfgNode()
    c.TRAIN.DATASET = "ava"  # ours: a key of slowfast_det.builders.DATASET_BUILDERS (PySlowFast: kinetics)
    c.TRAIN.BATCH_SIZE = 64  # global batch over all processes
    c.TRAIN.EVAL_PERIOD = 10
    c.TRAIN.CHECKPOINT_PERIOD = 10
    c.TRAIN.AUTO_RESUME = True
    c.TRAIN.CHECKPOINT_FILE_PATH = ""
    c.TRAIN.MIXED_PRECISION = False

    c.TEST = CfgNode()
    c.TEST.DATASET = "ava"  # ours, as TRAIN.DATASET
    c.TEST.BATCH_SIZE = 8
    c.TEST.CHECKPOINT_FILE_PATH = ""

    c.RESNET = CfgNode()
    c.RESNET.TRANS_FUNC = "bottleneck_transform"
    c.RESNET.NUM_GROUPS = 1
    c.RESNET.WIDTH_PER_GROUP = 64
    c.RESNET.STRIDE_1X1 = False
    c.RESNET.ZERO_INIT_FINAL_BN = False
    c.RESNET.DEPTH = 50
    c.RESNET.NUM_BLOCK_TEMP_KERNEL = [[3], [4], [6], [3]]
    c.RESNET.SPATIAL_STRIDES = [[1], [2], [2], [2]]
    c.RESNET.SPATIAL_DILATIONS = [[1], [1], [1], [1]]

    c.NONLOCAL = CfgNode()
    c.NONLOCAL.LOCATION = [[[]], [[]], [[]], [[]]]
    c.NONLOCAL.GROUP = [[1], [1], [1], [1]]
    c.NONLOCAL.INSTANTIATION = "dot_product"
    c.NONLOCAL.POOL = [[[1, 2, 2], [1, 2, 2]]] * 4

    c.MODEL = CfgNode()
    c.MODEL.ARCH = "slowfast"
    c.MODEL.MODEL_NAME = "SlowFast"
    c.MODEL.NUM_CLASSES = 400
    c.MODEL.LOSS_FUNC = "cross_entropy"
    c.MODEL.DROPOUT_RATE = 0.5
    c.MODEL.FC_INIT_STD = 0.01
    c.MODEL.HEAD_ACT = "softmax"  # applied at inference only: our heads return logits

    c.SLOWFAST = CfgNode()
    c.SLOWFAST.BETA_INV = 8
    c.SLOWFAST.ALPHA = 8
    c.SLOWFAST.FUSION_CONV_CHANNEL_RATIO = 2
    c.SLOWFAST.FUSION_KERNEL_SZ = 5

    c.DATA = CfgNode()
    c.DATA.NUM_FRAMES = 8
    c.DATA.SAMPLING_RATE = 8
    c.DATA.TRAIN_PCA_EIGVAL = [0.225, 0.224, 0.229]
    c.DATA.TRAIN_PCA_EIGVEC = [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ]
    c.DATA.MEAN = [0.45, 0.45, 0.45]
    c.DATA.STD = [0.225, 0.225, 0.225]
    c.DATA.INPUT_CHANNEL_NUM = [3, 3]
    c.DATA.TRAIN_JITTER_SCALES = [256, 320]
    c.DATA.TRAIN_CROP_SIZE = 224
    c.DATA.TEST_CROP_SIZE = 256
    c.DATA.TARGET_FPS = 30
    c.DATA.RANDOM_FLIP = True

    c.SOLVER = CfgNode()
    c.SOLVER.BASE_LR = 0.1
    c.SOLVER.LR_POLICY = "cosine"  # "cosine", "steps_with_relative_lrs", "constant"
    c.SOLVER.COSINE_END_LR = 0.0
    c.SOLVER.COSINE_AFTER_WARMUP = False
    c.SOLVER.STEPS = []
    c.SOLVER.LRS = []
    c.SOLVER.MAX_EPOCH = 300
    c.SOLVER.MOMENTUM = 0.9
    c.SOLVER.DAMPENING = 0.0
    c.SOLVER.NESTEROV = True
    c.SOLVER.WEIGHT_DECAY = 1e-4
    c.SOLVER.WARMUP_FACTOR = 0.1
    c.SOLVER.WARMUP_EPOCHS = 0.0
    c.SOLVER.WARMUP_START_LR = 0.01
    c.SOLVER.OPTIMIZING_METHOD = "sgd"
    c.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    c.SOLVER.ZERO_WD_1D_PARAM = False
    c.SOLVER.CLIP_GRAD_VAL = None  # clip each gradient element to [-v, v]
    c.SOLVER.CLIP_GRAD_L2NORM = None  # clip the global gradient L2 norm

    c.NUM_GPUS = 1
    c.NUM_SHARDS = 1
    c.OUTPUT_DIR = "./tmp"
    c.RNG_SEED = 1
    c.LOG_PERIOD = 10
    c.DIST_BACKEND = "nccl"

    c.DATA_LOADER = CfgNode()
    c.DATA_LOADER.NUM_WORKERS = 8
    c.DATA_LOADER.PIN_MEMORY = True
    # ours: keep each keyframe's decoded clip (uint8) in memory after its first read; augmentation still runs
    # per read. For small datasets with NUM_WORKERS 0 (SynthAVA, make demo); see slowfast_det.data.AvaDataset
    c.DATA_LOADER.CACHE_CLIPS = False

    c.DETECTION = CfgNode()
    c.DETECTION.ENABLE = False
    c.DETECTION.ALIGNED = True
    c.DETECTION.SPATIAL_SCALE_FACTOR = 16
    c.DETECTION.ROI_XFORM_RESOLUTION = 7

    c.AVA = CfgNode()
    c.AVA.FRAME_DIR = "/mnt/fair-flash3-east/ava_trainval_frames.img/"
    c.AVA.FRAME_LIST_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
    c.AVA.ANNOTATION_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
    c.AVA.TRAIN_LISTS = ["train.csv"]
    c.AVA.TEST_LISTS = ["val.csv"]
    c.AVA.TRAIN_GT_BOX_LISTS = ["ava_train_v2.2.csv"]
    c.AVA.TRAIN_PREDICT_BOX_LISTS = []
    c.AVA.TEST_PREDICT_BOX_LISTS = ["ava_val_predicted_boxes.csv"]
    c.AVA.DETECTION_SCORE_THRESH = 0.9
    # ours: test-time action score = sigmoid score x the predicted box's person score, i.e. P(person doing the
    # action) instead of P(action | person); PySlowFast scores P(action | person) alone (False)
    c.AVA.MULTIPLY_PERSON_SCORE = False
    c.AVA.BGR = False
    c.AVA.TRAIN_USE_COLOR_AUGMENTATION = False
    c.AVA.TRAIN_PCA_JITTER_ONLY = True
    c.AVA.TEST_FORCE_FLIP = False
    c.AVA.FULL_TEST_ON_VAL = False
    c.AVA.LABEL_MAP_FILE = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
    c.AVA.EXCLUSION_FILE = "ava_val_excluded_timestamps_v2.2.csv"
    c.AVA.GROUNDTRUTH_FILE = "ava_val_v2.2.csv"
    c.AVA.IMG_PROC_BACKEND = "cv2"
    c.AVA.VIDEO_DIR = ""  # ours: decode clips from `{VIDEO_DIR}/{video_id}.*` instead of JPEG frames

    c.DEMO = CfgNode()
    c.DEMO.DETECTRON2_CFG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
    c.DEMO.DETECTRON2_WEIGHTS = (
        "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"
    )
    # ours: 0.8, as AVA.DETECTION_SCORE_THRESH of PySlowFast's AVA configs (its demo default is 0.9)
    c.DEMO.DETECTRON2_THRESH = 0.8

    c.TENSORBOARD = CfgNode()
    c.TENSORBOARD.ENABLE = False
    c.TENSORBOARD.LOG_DIR = ""
    return c


# PySlowFast keys that are accepted and ignored (listed at load time). Exact dotted names.
IGNORED_KEYS: frozenset[str] = frozenset(
    """
    BN.NUM_SPLITS BN.NUM_SYNC_DEVICES BN.NUM_BATCHES_PRECISE
    TRAIN.ENABLE TEST.ENABLE DEMO.ENABLE SHARD_ID
    TRAIN.CHECKPOINT_TYPE TEST.CHECKPOINT_TYPE TRAIN.CHECKPOINT_EPOCH_RESET
    DATA.PATH_TO_DATA_DIR DATA.DECODING_BACKEND SOLVER.GAMMA SOLVER.STEP_SIZE
    TRAIN.CHECKPOINT_INFLATE TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN
    TEST.NUM_ENSEMBLE_VIEWS TEST.NUM_SPATIAL_CROPS TEST.SAVE_RESULTS_PATH
    RESNET.INPLACE_RELU
    MODEL.SINGLE_PATHWAY_ARCH MODEL.MULTI_PATHWAY_ARCH MODEL.DROPCONNECT_RATE
    DATA.PATH_LABEL_SEPARATOR DATA.PATH_PREFIX DATA.PATH_TO_PRELOAD_IMDB DATA.TRAIN_JITTER_SCALES_RELATIVE
    DATA.TRAIN_JITTER_ASPECT_RELATIVE DATA.USE_OFFSET_SAMPLING DATA.TRAIN_JITTER_MOTION_SHIFT
    DATA.INV_UNIFORM_SAMPLE DATA.MULTI_LABEL DATA.ENSEMBLE_METHOD DATA.REVERSE_INPUT_CHANNEL
    LOG_MODEL_INFO
    DATA_LOADER.ENABLE_MULTI_THREAD_DECODE
    AUG.ENABLE AUG.NUM_SAMPLE AUG.COLOR_JITTER AUG.AA_TYPE AUG.INTERPOLATION AUG.RE_PROB AUG.RE_MODE
    AUG.RE_COUNT AUG.RE_SPLIT
    MIXUP.ENABLE MIXUP.ALPHA MIXUP.CUTMIX_ALPHA MIXUP.PROB MIXUP.SWITCH_PROB MIXUP.LABEL_SMOOTH_VALUE
    X3D.WIDTH_FACTOR X3D.DEPTH_FACTOR X3D.BOTTLENECK_FACTOR X3D.DIM_C5 X3D.DIM_C1 X3D.SCALE_RES2 X3D.BN_LIN5
    X3D.CHANNELWISE_3x3x3
    MVIT.MODE MVIT.POOL_FIRST MVIT.CLS_EMBED_ON MVIT.PATCH_KERNEL MVIT.PATCH_STRIDE MVIT.PATCH_PADDING
    MVIT.PATCH_2D MVIT.EMBED_DIM MVIT.NUM_HEADS MVIT.MLP_RATIO MVIT.QKV_BIAS MVIT.DROPPATH_RATE MVIT.DEPTH
    MVIT.NORM MVIT.DIM_MUL MVIT.HEAD_MUL MVIT.POOL_KV_STRIDE MVIT.POOL_Q_STRIDE MVIT.POOL_KVQ_KERNEL
    MVIT.ZERO_DECAY_POS_CLS MVIT.NORM_STEM MVIT.SEP_POS_EMBED MVIT.DROPOUT_RATE
    BENCHMARK.NUM_EPOCHS BENCHMARK.LOG_PERIOD BENCHMARK.SHUFFLE
    MULTIGRID.EPOCH_FACTOR MULTIGRID.SHORT_CYCLE MULTIGRID.SHORT_CYCLE_FACTORS MULTIGRID.LONG_CYCLE
    MULTIGRID.LONG_CYCLE_FACTORS MULTIGRID.BN_BASE_SIZE MULTIGRID.EVAL_FREQ MULTIGRID.LONG_CYCLE_SAMPLING_RATE
    MULTIGRID.DEFAULT_B MULTIGRID.DEFAULT_T MULTIGRID.DEFAULT_S
    TENSORBOARD.PREDICTIONS_PATH TENSORBOARD.CLASS_NAMES_PATH TENSORBOARD.CATEGORIES_PATH
    TENSORBOARD.CONFUSION_MATRIX.ENABLE TENSORBOARD.CONFUSION_MATRIX.FIGSIZE
    TENSORBOARD.CONFUSION_MATRIX.SUBSET_PATH
    TENSORBOARD.HISTOGRAM.ENABLE TENSORBOARD.HISTOGRAM.SUBSET_PATH TENSORBOARD.HISTOGRAM.TOPK
    TENSORBOARD.HISTOGRAM.FIGSIZE
    TENSORBOARD.MODEL_VIS.ENABLE TENSORBOARD.MODEL_VIS.MODEL_WEIGHTS TENSORBOARD.MODEL_VIS.ACTIVATIONS
    TENSORBOARD.MODEL_VIS.INPUT_VIDEO TENSORBOARD.MODEL_VIS.LAYER_LIST TENSORBOARD.MODEL_VIS.TOPK_PREDS
    TENSORBOARD.MODEL_VIS.COLORMAP TENSORBOARD.MODEL_VIS.TOPK
    TENSORBOARD.MODEL_VIS.GRAD_CAM.ENABLE TENSORBOARD.MODEL_VIS.GRAD_CAM.LAYER_LIST
    TENSORBOARD.MODEL_VIS.GRAD_CAM.USE_TRUE_LABEL TENSORBOARD.MODEL_VIS.GRAD_CAM.COLORMAP
    TENSORBOARD.WRONG_PRED_VIS.ENABLE TENSORBOARD.WRONG_PRED_VIS.TAG TENSORBOARD.WRONG_PRED_VIS.SUBSET_PATH
    DEMO.LABEL_FILE_PATH DEMO.WEBCAM DEMO.INPUT_VIDEO DEMO.DISPLAY_WIDTH DEMO.DISPLAY_HEIGHT DEMO.BUFFER_SIZE
    DEMO.OUTPUT_FILE DEMO.OUTPUT_FPS DEMO.INPUT_FORMAT DEMO.CLIP_VIS_SIZE DEMO.NUM_VIS_INSTANCES
    DEMO.PREDS_BOXES DEMO.THREAD_ENABLE DEMO.NUM_CLIPS_SKIP DEMO.GT_BOXES DEMO.STARTING_SECOND DEMO.FPS
    DEMO.VIS_MODE DEMO.COMMON_CLASS_THRES DEMO.UNCOMMON_CLASS_THRES DEMO.COMMON_CLASS_NAMES DEMO.SLOWMO
    """.split()
)


def _flat_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            keys.extend(_flat_keys(value, full + "."))
        else:
            keys.append(full)
    return keys


def _closest_key(key: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def _decode(value: Any) -> Any:
    """yacs semantics: strings that parse as Python literals become those literals."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list | tuple):
        if isinstance(value, list | tuple):
            return type(default)(value)
    raise ConfigError(
        f"{source}: key {key} expects a {type(default).__name__} (default {default!r}), got {value!r}"
    )


def _merge(cfg: CfgNode, data: dict[str, Any], source: str, ignored: list[str], prefix: str = "") -> None:
    valid = None
    for raw_key, raw_value in data.items():
        key = str(raw_key)
        full = f"{prefix}{key}"
        if key in cfg and isinstance(cfg[key], CfgNode):
            if not isinstance(raw_value, dict):
                raise ConfigError(f"{source}: {full} is a section and needs a mapping, got {raw_value!r}")
            _merge(cfg[key], raw_value, source, ignored, full + ".")
        elif key in cfg:
            cfg[key] = _coerce(full, _decode(raw_value), cfg[key], source)
        elif full in IGNORED_KEYS or _is_ignored_section(full, raw_value):
            ignored.extend(_leaf_names(full, raw_value))
        else:
            if valid is None:
                valid = _flat_keys(get_default_config()) + sorted(IGNORED_KEYS)
            # name a leaf (e.g. RESNETT.DEPTH) so the suggestion can be a full valid key
            full = next((n for n in _leaf_names(full, raw_value) if n not in IGNORED_KEYS), full)
            hint = _closest_key(full, valid)
            suggestion = f"; did you mean {hint}?" if hint else ""
            raise ConfigError(f"{source}: unknown config key {full} (not a slowfast_det or PySlowFast key){suggestion}")


def _leaf_names(full: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [name for k, v in value.items() for name in _leaf_names(f"{full}.{k}", v)]
    return [full]


def _is_ignored_section(full: str, value: Any) -> bool:
    """A mapping whose every leaf is an ignored key (e.g. a whole ``MVIT:`` section)."""
    return isinstance(value, dict) and bool(value) and all(n in IGNORED_KEYS for n in _leaf_names(full, value))


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict[str, Any], str]]:
    """Return [(mapping, source)] from the deepest ``_BASE_`` to ``path`` itself."""
    path = Path(path)
    if not path.is_file():
        if seen:
            raise ConfigError(f"config file {path} does not exist (named by _BASE_ in {seen[-1]})")
        from slowfast_det import configs

        try:
            return _read_yaml(configs.path(str(path)), seen)
        except UserError as exc:
            raise ConfigError(f"config file {path} does not exist, and there is {exc}") from None
    if path.resolve() in seen:
        raise ConfigError(f"{path}: _BASE_ cycle through {[str(p) for p in seen]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
    chain: list[tuple[dict[str, Any], str]] = []
    base = data.pop("_BASE_", None)
    if base is not None:
        chain.extend(_read_yaml(path.parent / str(base), seen + (path.resolve(),)))
    chain.append((data, str(path)))
    return chain


def merge_overrides(cfg: CfgNode, overrides: Sequence[str], ignored: list[str] | None = None) -> CfgNode:
    """Apply ``KEY VALUE`` pairs (e.g. ``["SOLVER.BASE_LR", "0.1"]``) to an unfrozen ``cfg``."""
    if len(overrides) % 2:
        raise ConfigError(f"command-line overrides must be KEY VALUE pairs, got an odd list: {list(overrides)}")
    ignored = [] if ignored is None else ignored
    for key, value in zip(overrides[0::2], overrides[1::2], strict=True):
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _merge(cfg, nested, "command line", ignored)
    return cfg


def _finish(cfg: CfgNode, ignored: list[str], source: str) -> CfgNode:
    if ignored:
        logger.warning("%s: ignored PySlowFast keys (no effect here): %s", source, ", ".join(sorted(set(ignored))))
    cfg.freeze()
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> CfgNode:
    """Load a slowfast_det or PySlowFast YAML file over the defaults, apply overrides, freeze.

    Args:
        path: YAML file (may name a ``_BASE_`` file), or the name of a shipped config
            (``"AVA/SLOWFAST_32x2_R101_50_50"``, :mod:`slowfast_det.configs`).
        overrides: ``KEY VALUE`` pairs applied after the file, values parsed as Python literals.
    Raises:
        ConfigError: unknown key (with the closest valid one), wrong type, unreadable file.
    """
    cfg = get_default_config()
    ignored: list[str] = []
    for data, source in _read_yaml(Path(path)):
        _merge(cfg, data, source, ignored)
    merge_overrides(cfg, overrides, ignored)
    return _finish(cfg, ignored, str(path))


def load_config_from_string(text: str, source: str = "<string>") -> CfgNode:
    """Load a config from YAML text (e.g. the ``cfg`` string stored in a PySlowFast ``.pyth``)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of keys")
    cfg = get_default_config()
    ignored: list[str] = []
    _merge(cfg, data, source, ignored)
    return _finish(cfg, ignored, source)


def dump_config(cfg: CfgNode) -> str:
    """YAML text of ``cfg`` that :func:`load_config_from_string` reads back to an equal config."""
    return str(cfg.dump())
