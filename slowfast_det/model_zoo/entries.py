"""The zoo's table: PySlowFast's AVA models, their Kinetics initialisations and the detectron2 person detector.

Each :class:`ZooEntry` pairs a checkpoint URL with the shipped config it fits (checked by
``tests/test_model_zoo.py``: the config's model has exactly the keys and shapes of a checkpoint in that
entry's format), the AVA version, the published mAP (PySlowFast ``MODEL_ZOO.md``, AVA val, frame-mAP @ IoU 0.5),
the label map and the GFLOPs of one 256x256 view with one box (counted with
:func:`slowfast_det.models.count_gflops` on the meta device).

No sha256 of the published files is known offline, so the built-in entries pin none: the cache trusts each file
on first use and refuses it afterwards if it changes (:func:`slowfast_det.checkpoint.cache.fetch`). A site can
pin hashes, mirror URLs or add models with a zoo file (``$SLOWFAST_DET_ZOO_FILE``, see :func:`load_zoo_file`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ava_tools.cli import UserError
from ava_tools.labelmap import AVA_V22_ALL

__all__ = [
    "BUILTIN_ENTRIES",
    "DEFAULT_DETECTOR",
    "DEFAULT_MODEL",
    "KINDS",
    "PYSLOWFAST_AVA_URL",
    "ZOO_FILE_ENV",
    "ZooEntry",
    "ZooError",
    "all_entries",
    "get_entry",
    "list_models",
    "load_zoo_file",
]

ZOO_FILE_ENV = "SLOWFAST_DET_ZOO_FILE"
PYSLOWFAST_AVA_URL = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/ava/"
DETECTRON2_URL = "https://dl.fbaipublicfiles.com/detectron2/"
DEFAULT_MODEL = "SLOWFAST_32x2_R101_50_50"
DEFAULT_DETECTOR = "COCO-Detection/faster_rcnn_R_50_FPN_3x"
KINDS = ("action", "pretrain", "detector")
CHECKPOINT_FORMATS = ("pyslowfast-legacy-torch", "caffe2", "detectron2", "other")


class ZooError(UserError, ValueError):
    """An unknown model name, or a zoo file that cannot be used (the message names the file and the entry)."""


@dataclass(frozen=True)
class ZooEntry:
    """One named model.

    Attributes:
        name: what ``--model`` / ``--detector`` / :func:`slowfast_det.model_zoo.get` take.
        kind: ``action`` (an AVA model), ``pretrain`` (a Kinetics checkpoint loaded with ``backbone_only=True``
            into ``config``'s AVA model, to fine-tune) or ``detector`` (a detectron2 person detector).
        config: shipped config name (``AVA/...``) or YAML path; for detectors a detectron2 model-zoo config name
            or YAML path.
        url: checkpoint URL (``detectron2://`` accepted) or local path.
        description: one line.
        ava_version: ``"2.2"`` / ``"2.1"`` (None for detectors).
        map: published AVA val mAP in percent (None where there is none).
        label_map: action names: a label map bundled with ``ava_tools`` or a ``.pbtxt`` path.
        gflops: multiply-adds of one 256x256 view with one box, in 1e9.
        checkpoint_format: ``pyslowfast-legacy-torch`` (a PySlowFast checkpoint, legacy torch serialisation),
            ``caffe2`` (a Python-2 pickle of ``{"blobs": ...}``), ``detectron2`` (detectron2's model-zoo pickle).
        pretrain: name of the entry this model was fine-tuned from.
        sha256: pinned hex sha256, or None (trust on first use).
        size: file size in bytes where known.
        opts: detectron2 ``KEY VALUE`` overrides (detectors).
        source: ``builtin`` or the zoo file that defined or changed the entry.
    """

    name: str
    kind: str
    config: str
    url: str
    description: str
    ava_version: str | None = None
    map: float | None = None
    label_map: str | None = AVA_V22_ALL
    gflops: float | None = None
    checkpoint_format: str = "caffe2"
    pretrain: str | None = None
    sha256: str | None = None
    size: int | None = None
    opts: tuple[str, ...] = ()
    source: str = "builtin"

    @property
    def backbone_only(self) -> bool:
        """Kinetics checkpoints carry a clip head: only their backbone is loaded into the AVA model."""
        return self.kind == "pretrain"


def _ava(name: str, config: str, version: str, mAP: float, gflops: float, fmt: str, pretrain_classes: int,  # noqa: N803
         what: str) -> list[ZooEntry]:
    """An AVA model and its Kinetics initialisation (same backbone, same config; a Kinetics clip head)."""
    model = ZooEntry(
        name=name, kind="action", config=config, url=PYSLOWFAST_AVA_URL + f"{name}.pkl", ava_version=version,
        map=mAP, gflops=gflops, checkpoint_format=fmt, pretrain=f"pretrain/{name}",
        description=f"{what}, AVA v{version} ({mAP} mAP)",
    )
    init = dataclasses.replace(
        model, name=f"pretrain/{name}", kind="pretrain", url=PYSLOWFAST_AVA_URL + f"pretrain/{name}.pkl", map=None,
        checkpoint_format="caffe2", pretrain=None,
        description=f"Kinetics-{pretrain_classes} initialisation of {name}, to fine-tune on AVA (backbone only)",
    )
    return [model, init]


_TABLE: tuple[ZooEntry, ...] = (
    # PySlowFast MODEL_ZOO.md, AVA table. The v2.2 32x2 file is a PyTorch checkpoint (legacy serialisation)
    # under a .pkl name; the others are Caffe2 pickles (PySlowFast's configs say CHECKPOINT_TYPE pytorch/caffe2).
    *_ava("SLOWFAST_32x2_R101_50_50", "AVA/SLOWFAST_32x2_R101_50_50", "2.2", 29.1, 146.5, "pyslowfast-legacy-torch",
          600, "SlowFast R101 8x8, non-local, Kinetics-600 pretraining"),
    *_ava("SLOWFAST_64x2_R101_50_50", "AVA/SLOWFAST_64x2_R101_50_50", "2.2", 29.4, 296.3, "caffe2", 600,
          "SlowFast R101 16x8, non-local, Kinetics-600 pretraining"),
    # AVA v2.1 and v2.2 share the 80-class action list (v2.2 revised the annotations, not the classes)
    *_ava("SLOWFAST_32x2_R101_50_50_v2.1", "AVA/SLOWFAST_32x2_R101_50_50_v2.1", "2.1", 28.2, 146.5, "caffe2", 600,
          "SlowFast R101 8x8, non-local, Kinetics-600 pretraining"),
    # PySlowFast's AVA config for this file is configs/AVA/c2/SLOW_8x8_R50.yaml, which runs 4 frames x 16
    *_ava("C2D_8x8_R50", "AVA/SLOW_4x16_R50", "2.2", 19.5, 41.6, "caffe2", 400,
          "Slow R50 4x16, Kinetics-400 pretraining"),
    ZooEntry(
        name=DEFAULT_DETECTOR, kind="detector", config="COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        url="detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
        label_map=None, checkpoint_format="detectron2",
        description="detectron2 Faster R-CNN R50-FPN 3x, COCO (box AP 40.2); person boxes for detect-video",
    ),
)

# listed as: AVA models, the detector, then the Kinetics initialisations
BUILTIN_ENTRIES: tuple[ZooEntry, ...] = tuple(
    sorted(_TABLE, key=lambda e: ("action", "detector", "pretrain").index(e.kind))
)

_FIELDS = {f.name for f in dataclasses.fields(ZooEntry)} - {"source"}


def load_zoo_file(path: str | os.PathLike[str]) -> list[ZooEntry]:
    """Entries of a zoo file: JSON ``{"models": [{"name": ..., FIELD: VALUE, ...}, ...]}``.

    An entry whose name is built in changes only the fields it lists (e.g. ``url`` for a site mirror,
    ``sha256`` to pin a hash, ``config`` and ``label_map`` for a replacement model); any other entry is a new
    model and needs ``config`` and ``url`` (``kind`` defaults to ``action``). Relative ``config``,
    ``label_map`` and (non-URL) ``url`` paths are relative to the zoo file's folder. Fields are those of
    :class:`ZooEntry`; ``opts`` is a list of strings.

    Raises:
        ZooError: unreadable JSON, unknown fields, missing fields, bad kinds.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZooError(f"zoo file {path} ({ZOO_FILE_ENV}): cannot read it as JSON: {exc}") from exc
    items = data.get("models") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ZooError(f'zoo file {path}: expected {{"models": [ ... ]}} at the top level')
    builtin = {e.name: e for e in BUILTIN_ENTRIES}
    out = []
    for i, item in enumerate(items):
        where = f"zoo file {path}, models[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ZooError(f"{where}: each model is an object with a 'name' string")
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise ZooError(f"{where} ({item['name']}): unknown fields {unknown}; allowed: {sorted(_FIELDS)}")
        fields: dict[str, Any] = dict(item)
        for key in ("config", "label_map", "url"):
            value = fields.get(key)
            if isinstance(value, str) and not _is_name_or_url(key, value) and not Path(value).is_absolute():
                fields[key] = str(path.parent / value)
        if "opts" in fields:
            fields["opts"] = tuple(str(o) for o in fields["opts"])
        base = builtin.get(item["name"])
        if base is not None:
            entry = dataclasses.replace(base, **fields, source=str(path))
        else:
            missing = [k for k in ("config", "url") if k not in fields]
            if missing:
                raise ZooError(f"{where} ({item['name']}): a new model needs {missing}")
            fields.setdefault("kind", "action")
            fields.setdefault("description", f"from {path.name}")
            entry = ZooEntry(**fields, source=str(path))
        if entry.kind not in KINDS:
            raise ZooError(f"{where} ({entry.name}): kind must be one of {KINDS}, got {entry.kind!r}")
        out.append(entry)
    return out


def _is_name_or_url(key: str, value: str) -> bool:
    """Values that are not file paths: URLs, shipped config names, bundled label maps, detectron2 zoo names."""
    from ava_tools.labelmap import BUNDLED_LABELMAPS

    if "://" in value:
        return True
    if key == "label_map":
        return value in BUNDLED_LABELMAPS
    if key == "config":
        from slowfast_det import configs

        return value.removesuffix(".yaml") in configs.list_configs() or value.startswith(
            ("COCO-", "LVIS", "Cityscapes", "PascalVOC", "Misc/")
        )
    return False


def all_entries() -> list[ZooEntry]:
    """Built-in entries, changed or extended by ``$SLOWFAST_DET_ZOO_FILE`` if it is set."""
    entries = {e.name: e for e in BUILTIN_ENTRIES}
    zoo_file = os.environ.get(ZOO_FILE_ENV)
    if zoo_file:
        for entry in load_zoo_file(zoo_file):
            entries[entry.name] = entry
    return list(entries.values())


def list_models(kind: str | None = None) -> list[str]:
    """Names of the zoo's models (of one ``kind``: ``action``, ``pretrain``, ``detector``), in table order."""
    if kind is not None and kind not in KINDS:
        raise ZooError(f"kind must be one of {KINDS}, got {kind!r}")
    return [e.name for e in all_entries() if kind is None or e.kind == kind]


def get_entry(name: str, *, kinds: tuple[str, ...] = KINDS) -> ZooEntry:
    """The entry called ``name`` (of one of ``kinds``).

    Raises:
        ZooError: no such entry (the message lists the closest names).
    """
    entries = [e for e in all_entries() if e.kind in kinds]
    for entry in entries:
        if entry.name == name:
            return entry
    names = [e.name for e in entries]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(names)}"
    raise ZooError(f"no {'/'.join(kinds)} model named {name!r} in the model zoo; {hint} (`slowfast-zoo list`)")
