"""Checkpoints: load PySlowFast weights (Caffe2 ``.pkl``, ``.pyth``) strictly, save and resume our own.

Reading a file (format from its content, never its extension):

* a zip archive -> ``torch.load(weights_only=True)`` (PySlowFast ``.pyth``, our checkpoints, state dicts);
* a legacy (pre-zip) torch serialisation -> the same (the AVA v2.2 ``SLOWFAST_32x2_R101_50_50.pkl`` is one);
* anything else -> a Caffe2 pickle ``{"blobs": {name: ndarray}}`` (Python 2, latin1) read by an unpickler that
  admits only numpy arrays, dtypes and plain containers, so a file cannot run code on load.

Caffe2 blob names are converted by the pure functions of :mod:`slowfast_det.checkpoint.c2_names`.
:func:`load_weights` is strict: a missing, unexpected or mis-shaped key is an error that lists them all; what
was converted, skipped on request or ignored is in the returned
:class:`LoadReport`.

Our format (:func:`save_checkpoint` / :func:`load_checkpoint`) holds the config YAML, model, optimizer,
scheduler, epoch and RNG states as tensors and plain types, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import random
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ava_tools.atomic import atomic_output
from ava_tools.cli import UserError
from slowfast_det.checkpoint.c2_names import c2_to_pytorch_name, is_c2_bookkeeping_blob

__all__ = [
    "CheckpointError",
    "LoadReport",
    "read_checkpoint_file",
    "load_weights",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT_NAME = "slowfast_det"
FORMAT_VERSION = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be read or does not match the model (the message names the file and the keys)."""


# ---------------------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------------------

# A legacy (non-zip) torch.save file is a sequence of pickles, the first of which is this magic number.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _numpy_multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(
            f"Caffe2 checkpoint uses _codecs.encode with {encoding!r}, only latin1 is allowed"
        )
    return text.encode("latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars and plain Python containers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        multiarray = _numpy_multiarray()
        allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "OrderedDict"): dict,
            ("_codecs", "encode"): _latin1_encode,
        }
        for package in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(package, "_reconstruct")] = multiarray._reconstruct
            allowed[(package, "scalar")] = multiarray.scalar
        try:
            return allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the numpy allow-list (unpickling it could run code)."""


def read_checkpoint_file(path: str | Path) -> tuple[str, Any]:
    """Read a checkpoint file safely. Returns ``(kind, object)``, kind ``"torch"`` or ``"caffe2"``.

    Raises:
        CheckpointError: unreadable file (a truncated or empty one is called so), or content that would need
            code execution to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{path}: truncated or incomplete file: it is empty (0 bytes; interrupted write or copy?)"
        )
    if zipfile.is_zipfile(path):
        return "torch", _torch_load(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_LOCAL_HEADER:
        # a zip archive's directory sits at its end: a torch.save file cut short starts right and has none
        raise CheckpointError(
            f"{path}: truncated or incomplete file ({size} bytes): a PyTorch (zip) checkpoint without the "
            "archive directory that ends a complete one (interrupted write or copy?)"
        )
    try:  # the first pickle: a Caffe2 checkpoint, or the magic number of a legacy torch file
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise CheckpointError(
            f"{path}: refusing to load global {exc}: a Caffe2 checkpoint holds only numpy arrays, and "
            "unpickling this object could run code"
        ) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        if _is_truncation(exc):
            raise CheckpointError(
                f"{path}: truncated or incomplete file ({size} bytes): the pickle ends early ({exc})"
            ) from exc
        raise CheckpointError(
            f"{path}: neither a PyTorch checkpoint (zip or legacy) nor a Caffe2 pickle of numpy arrays: {exc}"
        ) from exc
    if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
        return "torch", _torch_load(path)
    return "caffe2", obj


_ZIP_LOCAL_HEADER = b"PK\x03\x04"


def _is_truncation(exc: BaseException) -> bool:
    """Whether a read error means the data stopped early (pickle / torch messages for a short file)."""
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(
        s in text for s in ("truncated", "unexpected eof", "ran out of input", "failed finding central directory")
    )


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, IndexError) as exc:
        # torch's weights-only unpickler indexes past the end of a cut pickle (IndexError) instead of EOFError
        if _is_truncation(exc) or isinstance(exc, IndexError):
            raise CheckpointError(
                f"{path}: truncated or incomplete file ({path.stat().st_size} bytes): {exc}"
            ) from exc
        raise CheckpointError(
            f"{path}: cannot read it as a PyTorch checkpoint with weights_only=True: {exc}"
        ) from exc


# ---------------------------------------------------------------------------------------------------------
# strict loading into a model
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        path: the file.
        source: ``"caffe2"``, ``"pyslowfast"`` (``{"model_state", ...}``), ``"slowfast_det"`` or
            ``"state_dict"``.
        loaded: model keys that received a tensor from the file.
        renamed: file key -> model key where they differ (Caffe2 names, ``module.`` prefixes).
        reshaped: model keys whose tensor was reshaped (dropped or added trailing singleton dimensions).
        skipped: file keys not loaded because the caller asked (``backbone_only``: the ``head.`` keys).
        ignored: Caffe2 optimizer / bookkeeping blobs (momentum, lr, iteration).
        left_at_init: model keys that kept their initial value (the head with ``backbone_only``, and
            ``num_batches_tracked`` counters absent from the file, which matter only when BN momentum is
            None).
        epoch: the epoch stored in the file, if any.
        cfg: the config YAML stored in the file, if any.
    """

    path: str
    source: str
    loaded: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    reshaped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)
    epoch: int | None = None
    cfg: str | None = None

    def summary(self) -> str:
        """One line per category with counts, e.g. for a log."""
        return (
            f"{self.path} ({self.source}): loaded {len(self.loaded)} tensors ({len(self.renamed)} renamed, "
            f"{len(self.reshaped)} reshaped); skipped on request {len(self.skipped)}; ignored "
            f"{len(self.ignored)} optimizer blobs; left at init {len(self.left_at_init)}"
        )


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _to_tensor(value: Any, path: Path, key: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return torch.from_numpy(np.array(value, copy=True))
    raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a numeric tensor or array")


def _state_from_file(path: Path) -> tuple[LoadReport, dict[str, Tensor]]:
    """The file's tensors under PyTorch names, with the report's source/renamed/ignored/epoch/cfg filled."""
    kind, obj = read_checkpoint_file(path)
    if kind == "caffe2":
        blobs = obj.get("blobs", obj) if isinstance(obj, dict) else None
        if not isinstance(blobs, dict):
            raise CheckpointError(f"{path}: a Caffe2 checkpoint must be a dict with a 'blobs' dict")
        report = LoadReport(path=str(path), source="caffe2")
        state: dict[str, Tensor] = {}
        unknown: list[str] = []
        for blob, value in blobs.items():
            name = c2_to_pytorch_name(blob)
            if name is None:
                (report.ignored if is_c2_bookkeeping_blob(blob) else unknown).append(blob)
                continue
            if name in state:
                other = next(b for b, n in report.renamed.items() if n == name)
                raise CheckpointError(f"{path}: blobs {other!r} and {blob!r} both map to {name}")
            state[name] = _to_tensor(value, path, blob)
            report.renamed[blob] = name
        if unknown:
            raise CheckpointError(f"{path}: Caffe2 blobs with no PyTorch name: {sorted(unknown)}")
        return report, state

    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict in the checkpoint, got {type(obj).__name__}")
    if obj.get("format") == FORMAT_NAME:
        report = LoadReport(path=str(path), source="slowfast_det", epoch=obj.get("epoch"), cfg=obj.get("cfg"))
        raw = obj["model_state"]
    elif "model_state" in obj:
        report = LoadReport(path=str(path), source="pyslowfast", epoch=obj.get("epoch"), cfg=obj.get("cfg"))
        raw = obj["model_state"]
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        report, raw = LoadReport(path=str(path), source="state_dict"), obj
    else:
        raise CheckpointError(
            f"{path}: no 'model_state' entry and not a plain state dict; top-level keys: "
            f"{sorted(map(str, obj))}"
        )
    state = {}
    for key, value in raw.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name != key:
            report.renamed[key] = name
        state[name] = _to_tensor(value, path, key)
    return report, state


def _fit_shape(value: Tensor, shape: torch.Size) -> Tensor | None:
    """``value`` reshaped to ``shape`` if they differ only by trailing singleton dimensions, else None."""

    def core(s: Sequence[int]) -> list[int]:
        s = list(s)
        while s and s[-1] == 1:
            s.pop()
        return s

    if core(value.shape) == core(shape) and value.numel() == int(torch.Size(shape).numel()):
        return value.reshape(shape)
    return None


def load_weights(model: nn.Module, path: str | Path, *, backbone_only: bool = False) -> LoadReport:
    """Load a checkpoint's weights into ``model`` strictly; return what was done.

    Accepts PySlowFast Caffe2 ``.pkl`` files, PySlowFast ``.pyth`` files (``model_state``; a DDP ``module.``
    prefix is removed), legacy-serialised torch files, plain state dicts and :func:`save_checkpoint` files.

    Args:
        model: the model (a DDP/DataParallel wrapper is looked through).
        path: the checkpoint file.
        backbone_only: load everything except the head (e.g. a Kinetics checkpoint into an AVA model): the
            file's ``head.*`` keys are reported as skipped and the model's head keeps its initialisation. The
            backbone is still loaded strictly.

    Raises:
        CheckpointError: unreadable file, or any missing, unexpected or mis-shaped key (all listed).
    """
    path = Path(path)
    target = _unwrap(model)
    report, state = _state_from_file(path)
    model_state = target.state_dict()

    def is_head(key: str) -> bool:
        return backbone_only and key.startswith("head.")

    unexpected, mismatched, to_load = [], [], {}
    for key, value in state.items():
        if is_head(key):
            report.skipped.append(key)
        elif key not in model_state:
            unexpected.append(key)
        elif value.shape != model_state[key].shape:
            fitted = _fit_shape(value, model_state[key].shape)
            if fitted is None:
                mismatched.append(
                    f"{key}: file {tuple(value.shape)} vs model {tuple(model_state[key].shape)}"
                )
            else:
                to_load[key] = fitted
                report.reshaped.append(key)
        else:
            to_load[key] = value
    missing = []
    for key in model_state:
        if key in state or is_head(key):
            if is_head(key):
                report.left_at_init.append(key)
        elif key.endswith("num_batches_tracked"):
            report.left_at_init.append(key)
        else:
            missing.append(key)
    if missing or unexpected or mismatched:
        lines = [f"{path} ({report.source}) does not match the model:"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                lines.append(f"  {label} ({len(keys)}): " + ", ".join(keys))
        if any(k.startswith("head.") for k in missing + unexpected) or any(
            m.startswith("head.") for m in mismatched
        ):
            lines.append("  (to fine-tune from a checkpoint with another head, pass backbone_only=True)")
        raise CheckpointError("\n".join(lines))
    full = dict(model_state)
    full.update(to_load)
    target.load_state_dict(full, strict=True)
    report.loaded = sorted(to_load)
    return report


# ---------------------------------------------------------------------------------------------------------
# our own checkpoints: save / load / RNG
# ---------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python ``random``, numpy's global generator, torch CPU and (if present) CUDA generator states, as
    tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    keys = np.asarray(keys)
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`capture_rng_state` (CUDA only when both sides have it)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    cfg: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Stored: ``format``, ``version``, ``model_state`` (the unwrapped model's state dict), ``cfg`` (YAML text
    via ``slowfast_det.config.dump_config``, or None), ``optimizer_state``, ``scheduler_state``, ``epoch``,
    ``rng_state`` (:func:`capture_rng_state`) and ``extra`` (tensors and plain types only). The
    ``model_state`` key makes the file loadable by PySlowFast too.
    """
    path = Path(path)
    cfg_text = None
    if cfg is not None:
        from slowfast_det.config import dump_config

        cfg_text = dump_config(cfg)
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model_state": _unwrap(model).state_dict(),
        "cfg": cfg_text,
        "optimizer_state": None if optimizer is None else optimizer.state_dict(),
        "scheduler_state": None if scheduler is None else scheduler.state_dict(),
        "epoch": epoch,
        "rng_state": capture_rng_state(),
        "extra": dict(extra) if extra is not None else {},
    }
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a :func:`save_checkpoint` file (``weights_only=True``): a dict with the keys listed there.

    Raises:
        CheckpointError: missing or unreadable file, or not one of our checkpoints (use :func:`load_weights`
            for PySlowFast or Caffe2 weights).
    """
    path = Path(path)
    kind, obj = read_checkpoint_file(path)
    if kind != "torch" or not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not a slowfast_det checkpoint (no format={FORMAT_NAME!r}); load PySlowFast or Caffe2 "
            "weights with load_weights(model, path)"
        )
    if obj.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {obj['version']} is newer than this code ({FORMAT_VERSION})"
        )
    return obj
