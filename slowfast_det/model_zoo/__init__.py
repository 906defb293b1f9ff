"""Models by name: PySlowFast's AVA models, their Kinetics initialisations and the detectron2 person detector.

::

    from slowfast_det import model_zoo

    model_zoo.list_models()                        # ['SLOWFAST_32x2_R101_50_50', ..., 'COCO-Detection/...']
    cfg = model_zoo.get_config("SLOWFAST_64x2_R101_50_50")
    model, report = model_zoo.get("SLOWFAST_32x2_R101_50_50")   # downloaded once, verified on every use

Checkpoints go through :func:`slowfast_det.checkpoint.cache.fetch`: one cache (``$SLOWFAST_DET_CACHE``),
atomic and resumable downloads, a lock per file, sha256 pinned or trusted on first use, ``--offline`` /
``$SLOWFAST_DET_OFFLINE=1``, and ``$SLOWFAST_DET_ZOO_URL`` for a mirror of ``https://dl.fbaipublicfiles.com/``.
``$SLOWFAST_DET_ZOO_FILE`` (JSON) adds models or changes built-in entries (mirrors, pinned hashes, replacement
models) for a site: see :func:`load_zoo_file`. ``slowfast-zoo list|download|verify`` is the command line.
"""

from slowfast_det.model_zoo.entries import (
    BUILTIN_ENTRIES,
    DEFAULT_DETECTOR,
    DEFAULT_MODEL,
    ZOO_FILE_ENV,
    ZooEntry,
    ZooError,
    all_entries,
    get_entry,
    list_models,
    load_zoo_file,
)
from slowfast_det.model_zoo.resolve import (
    ResolvedDetector,
    ResolvedModel,
    get,
    get_config,
    load_label_map,
    resolve_detector,
    resolve_model,
    weights_path,
)

__all__ = [
    "BUILTIN_ENTRIES",
    "DEFAULT_DETECTOR",
    "DEFAULT_MODEL",
    "ResolvedDetector",
    "ResolvedModel",
    "ZOO_FILE_ENV",
    "ZooEntry",
    "ZooError",
    "all_entries",
    "get",
    "get_config",
    "get_entry",
    "list_models",
    "load_label_map",
    "load_zoo_file",
    "resolve_detector",
    "resolve_model",
    "weights_path",
]
