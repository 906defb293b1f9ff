"""Pure-Python stand-in for detectron2's C++ extension ``detectron2._C``.

``python -m slowfast_det.tools.install_detectron2`` copies this file into the installed detectron2 package as
``detectron2/_C.py``, so that detectron2 imports on its own (a user's script needs no ``slowfast_det``
import). ``slowfast_det.detection.compat`` registers this same module as ``detectron2._C`` for detectron2 installs made
before that (no ``_C`` at all). A real compiled extension always wins: Python's import system prefers an
extension module over a ``.py`` file of the same name, and ``compat`` leaves a compiled ``_C`` alone.

Faster R-CNN needs none of the C++ ops (torchvision provides nms and roi_align). Every op attribute raises
:class:`MissingDetectron2Op`, naming the op and where the README explains the two install routes. The three
build-information functions that ``detectron2.utils.collect_env`` (and so ``detectron2.engine.default_setup``)
calls answer truthfully instead of raising.

This file must stay self-contained (standard library and torch only): it runs inside detectron2 without
``slowfast_det`` on the path, possibly under another interpreter (``--python``).
"""

from __future__ import annotations

from typing import Any

# Read by ``slowfast_det.detection.compat.has_real_extension`` and by the installer (to tell an outdated copy).
is_slowfast_det_stub = True
STANDIN_VERSION = 2

_HELP = (
    "see the 'Detectron2' section of the slowfast_det README: this detectron2 is the Python-only install of "
    "`python -m slowfast_det.tools.install_detectron2` (rotated boxes, deformable convolution and the fast COCO "
    "evaluator need the C++ extension); for those ops install the official detectron2 build with its C++ "
    "extension, e.g. `pip install 'git+https://github.com/facebookresearch/detectron2.git@v0.6'` "
    "(needs internet and a compiler)"
)


class MissingDetectron2Op(RuntimeError):
    """A detectron2 C++ op was used, but only the Python-only detectron2 install is present."""


def _missing(name: str) -> MissingDetectron2Op:
    hint = ""
    if name.startswith("COCOeval"):
        hint = " (detectron2.evaluation.COCOEvaluator runs without it when given use_fast_impl=False)"
    return MissingDetectron2Op(f"detectron2 C++ op '{name}' is not available{hint}; {_HELP}")


def __getattr__(name: str) -> Any:
    """Module attribute hook (PEP 562): any op of the real extension raises a clear error when looked up."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise _missing(name)


def get_compiler_version() -> str:
    """Build information read by ``detectron2.utils.collect_env``: there is no compiled extension."""
    return "none (Python-only detectron2 install, no C++ extension)"


def get_cuda_version() -> str:
    """Build information read by ``detectron2.utils.collect_env``: there is no compiled extension."""
    return "none (Python-only detectron2 install, no C++ extension)"


def has_cuda() -> bool:
    """False: no CUDA kernels were built (``collect_env`` then skips the arch flags of a shared library)."""
    return False


_torch_library: Any = None


def _register_torch_ops() -> None:
    """The real extension also registers ``torch.ops.detectron2.nms_rotated``; register one that raises.

    Skipped when the op exists already (the real extension, or another copy of this module in the process).
    """
    global _torch_library
    import torch

    try:
        torch.ops.detectron2.nms_rotated  # noqa: B018 (existence check)
        return
    except (AttributeError, RuntimeError):
        pass
    library = torch.library.Library("detectron2", "FRAGMENT")
    library.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")

    def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        raise _missing("nms_rotated")

    library.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
    _torch_library = library  # the registration lives as long as this object


_register_torch_ops()
