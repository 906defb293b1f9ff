"""From a model name (or config and weights given by hand) to local files and a model with weights loaded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slowfast_det.model_zoo.entries import DEFAULT_MODEL, ZooEntry, ZooError, all_entries, get_entry

__all__ = [
    "ResolvedDetector",
    "ResolvedModel",
    "get",
    "get_config",
    "load_label_map",
    "resolve_detector",
    "resolve_model",
    "weights_path",
]


def load_label_map(spec: str | os.PathLike[str]) -> Any:
    """A :class:`ava_tools.labelmap.LabelMap` from a bundled label map name or a ``.pbtxt`` path."""
    from ava_tools.labelmap import BUNDLED_LABELMAPS, load_bundled_labelmap, read_labelmap

    text = os.fspath(spec)
    return load_bundled_labelmap(text) if text in BUNDLED_LABELMAPS else read_labelmap(text)


def weights_path(
    entry: ZooEntry | str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path:
    """The entry's checkpoint as a local file: downloaded once into the cache and verified on every use."""
    from slowfast_det.checkpoint.cache import resolve_trusted

    entry = get_entry(entry) if isinstance(entry, str) else entry
    return resolve_trusted(entry.url, cache_dir=cache_dir, sha256=entry.sha256, offline=offline, progress=progress)


def get_config(name: str, opts: Sequence[str] = ()) -> Any:
    """The config (``CfgNode``) of zoo model ``name``, with ``KEY VALUE`` overrides; for a ``pretrain`` entry,
    the AVA model it initialises. Detectors give their detectron2 config."""
    entry = get_entry(name)
    if entry.kind == "detector":
        from slowfast_det.detection.person import load_detectron2_config

        return load_detectron2_config(entry.config, [*entry.opts, *opts])
    from slowfast_det.config import load_config

    return load_config(entry.config, list(opts))


def get(
    name: str,
    pretrained: bool = True,
    *,
    opts: Sequence[str] = (),
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Build zoo model ``name`` and load its weights; returns ``(model, load report)``.

    An ``action`` entry gives the AVA model in eval mode with every weight loaded strictly; a ``pretrain`` entry
    gives the AVA model of its config with the Kinetics backbone loaded (``backbone_only``: the report lists
    the head as left at init), ready to fine-tune; a ``detector`` gives a
    :class:`slowfast_det.detection.person.PersonDetector` (report None). ``pretrained=False`` skips the weights
    (report None).

    Example::

        model, report = model_zoo.get("SLOWFAST_32x2_R101_50_50")
        print(report.summary())
    """
    entry = get_entry(name)
    if entry.kind == "detector":
        from slowfast_det.detection.person import PersonDetector

        weights = weights_path(entry, cache_dir=cache_dir, offline=offline, progress=progress) if pretrained else None
        return PersonDetector(config=entry.config, weights=weights, opts=[*entry.opts, *opts], device=device), None
    from slowfast_det.checkpoint import load_weights
    from slowfast_det.models import build_model

    model = build_model(get_config(name, opts))
    report = None
    if pretrained:
        path = weights_path(entry, cache_dir=cache_dir, offline=offline, progress=progress)
        report = load_weights(model, path, backbone_only=entry.backbone_only)
    model = model.to(device)
    return (model.eval() if entry.kind == "action" else model), report


@dataclass(frozen=True)
class ResolvedModel:
    """What ``detect-video`` runs: ``config`` (shipped name or path), ``weights`` (path or URL, with the entry's
    pinned ``sha256`` if any), ``label_map`` (bundled name or path) and the zoo entry's name (None when config
    and weights were given by hand). Nothing is read or downloaded until :meth:`fetch_weights` / :meth:`labels`,
    so a bad config is reported before a download starts."""

    name: str | None
    config: str
    weights: str
    label_map: str
    sha256: str | None = None

    def fetch_weights(
        self, *, cache_dir: str | os.PathLike[str] | None = None, offline: bool | None = None, progress: bool = True
    ) -> Path:
        """The weights as a local file (URLs: downloaded once into the verified cache)."""
        from slowfast_det.checkpoint.cache import resolve_trusted

        return resolve_trusted(self.weights, cache_dir=cache_dir, sha256=self.sha256, offline=offline,
                               progress=progress)

    def labels(self) -> Any:
        """The label map (:class:`ava_tools.labelmap.LabelMap`)."""
        return load_label_map(self.label_map)


def resolve_model(
    name: str | None = None,
    *,
    config: str | None = None,
    weights: str | None = None,
    label_map: str | None = None,
) -> ResolvedModel:
    """Config, weights and label map from a zoo name, with hand-given parts taking precedence.

    ``name`` defaults to :data:`DEFAULT_MODEL`. ``config`` and ``weights`` (paths or URLs) replace the entry's;
    a hand-given ``config`` needs hand-given ``weights`` unless ``name`` is given too (the zoo's weights fit
    only the zoo's config). ``label_map`` (bundled name or path) replaces the entry's label map.

    Raises:
        ZooError: unknown name, or ``config`` without ``weights``.
    """
    if config is not None and weights is None and name is None:
        raise ZooError("--config needs --weights (a path or URL); or choose a zoo model with --model NAME")
    entry = get_entry(name or DEFAULT_MODEL, kinds=("action",))
    labels_spec = label_map or entry.label_map
    if labels_spec is None:
        raise ZooError(f"zoo model {entry.name} names no label map: give one with --label-map")
    return ResolvedModel(
        name=entry.name if (config is None and weights is None) else None,
        config=config or entry.config,
        weights=weights or entry.url,
        label_map=labels_spec,
        sha256=entry.sha256 if weights is None else None,
    )


@dataclass(frozen=True)
class ResolvedDetector:
    """The person detector ``detect-video`` builds: detectron2 ``config``, local ``weights``, ``opts``."""

    name: str | None
    config: str
    weights: Path
    opts: tuple[str, ...]


def resolve_detector(
    name: str | None = None,
    *,
    config: str | None = None,
    weights: str | None = None,
    opts: Sequence[str] = (),
    default_config: str,
    default_weights: str,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> ResolvedDetector:
    """The detector from a zoo name, or from the model config's defaults, with hand-given parts on top.

    Without ``name``, ``default_config``/``default_weights`` (the model config's ``DEMO.DETECTRON2_*``) are used;
    when they are a zoo detector's URL (PySlowFast's default is :data:`DEFAULT_DETECTOR`'s), that entry is used,
    with its ``opts``. ``config``/``weights`` replace the chosen ones; ``opts`` are added after the entry's.
    """
    from slowfast_det.checkpoint.cache import resolve_trusted, resolve_url

    entry: ZooEntry | None = None
    if name is not None:
        entry = get_entry(name, kinds=("detector",))
    elif "://" in default_weights:
        canonical = resolve_url(default_weights)[0]
        matches = [e for e in all_entries() if e.kind == "detector" and "://" in e.url
                   and resolve_url(e.url)[0] == canonical]
        entry = matches[0] if matches else None
    det_config = config or (entry.config if entry else default_config)
    det_weights = weights or (entry.url if entry else default_weights)
    sha = entry.sha256 if entry is not None and weights is None else None
    local = resolve_trusted(det_weights, cache_dir=cache_dir, sha256=sha, offline=offline, progress=progress)
    return ResolvedDetector(
        name=entry.name if entry else None, config=det_config, weights=local,
        opts=(*(entry.opts if entry else ()), *opts),
    )
