"""Compatibility shims that let detectron2 v0.6 import on a current stack.

Import this module (or call :func:`import_detectron2`) before importing detectron2. It does two things, each
only when needed:

* Pillow >= 10 removed ``PIL.Image.LINEAR``, which detectron2 v0.6 uses as a default argument at import time;
  it is aliased to ``PIL.Image.BILINEAR`` (the same filter; upstream later made the same change).
* ``detectron2.layers`` imports the C++ extension ``detectron2._C``. When the real extension is absent (the
  Python-only install of ``slowfast_det.detection.install``), a stand-in module is registered whose every
  attribute raises :class:`MissingDetectron2Op`, naming the op and how to get the official build. Faster R-CNN
  uses none of these ops (torchvision provides nms and roi_align), so it runs unchanged; rotated boxes,
  deformable convs and the fast COCO evaluator do not. With the real extension installed nothing is replaced.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

_OFFICIAL_BUILD = (
    "install the official detectron2 build with its C++ extension, e.g. "
    "`pip install 'git+https://github.com/facebookresearch/detectron2.git@v0.6'` (needs internet and a compiler)"
)


class MissingDetectron2Op(RuntimeError):
    """A detectron2 C++ op was used, but only the Python-only detectron2 install is present."""


class _MissingExtension(types.ModuleType):
    """Stand-in for ``detectron2._C``: importable, but any op raises a clear error."""

    is_slowfast_det_stub = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingDetectron2Op(
            f"detectron2 C++ op '{name}' is not available: this detectron2 was installed without its C++ "
            f"extension (rotated boxes, deformable convolution and the fast COCO evaluator need it); {_OFFICIAL_BUILD}"
        )


def _alias_pillow_linear() -> None:
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR  # type: ignore[attr-defined]


def _install_extension_stub() -> None:
    if "detectron2._C" in sys.modules:
        return
    parent = importlib.util.find_spec("detectron2")
    if parent is None:
        raise ImportError(
            "detectron2 is not installed. Run `make detectron2` (or `python -m slowfast_det.detection.install`) "
            f"to install v0.6 from the PyPI sdist pb1-detectron2, or {_OFFICIAL_BUILD}"
        )
    if importlib.util.find_spec("detectron2._C") is not None:
        return  # the real extension is present
    sys.modules["detectron2._C"] = _MissingExtension("detectron2._C")
    _register_missing_torch_ops()


_torch_op_library: Any = None


def _register_missing_torch_ops() -> None:
    """The real extension also registers ``torch.ops.detectron2.nms_rotated``; register a raising one."""
    global _torch_op_library
    if _torch_op_library is not None:
        return
    import torch

    library = torch.library.Library("detectron2", "DEF")
    library.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")

    def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return _MissingExtension("detectron2._C").nms_rotated  # raises MissingDetectron2Op

    library.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
    _torch_op_library = library


def patch() -> None:
    """Apply both shims (idempotent)."""
    _alias_pillow_linear()
    _install_extension_stub()


def import_detectron2() -> types.ModuleType:
    """Apply the shims and return the imported ``detectron2`` package."""
    patch()
    import detectron2

    return detectron2


def has_real_extension() -> bool:
    """True when detectron2's compiled ``_C`` extension (not the stand-in) is loaded or loadable."""
    patch()
    module = importlib.import_module("detectron2._C")
    return not getattr(module, "is_slowfast_det_stub", False)
