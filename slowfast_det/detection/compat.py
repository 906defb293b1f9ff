"""Compatibility shims that let detectron2 v0.6 import on a current stack, also when installed before they existed.

``python -m slowfast_det.tools.install_detectron2`` makes the installed detectron2 self-sufficient (it ships the
``_C`` stand-in and fixes the Pillow constant in its sources), so a user's own detectron2 script needs nothing
from here. This module is what the project calls before importing detectron2 (:func:`patch`,
:func:`import_detectron2`); each step acts only when needed, so it also covers detectron2 installs made before
the installer did this, and leaves the official build alone:

* Pillow >= 10 removed ``PIL.Image.LINEAR``, which detectron2 v0.6 uses as a default argument at import time;
  it is aliased to ``PIL.Image.BILINEAR`` (the same filter; upstream made the same change after v0.6).
* ``detectron2.layers`` imports the C++ extension ``detectron2._C``. Unless a compiled extension is found, the
  module :mod:`slowfast_det.detection.ext_standin` is registered as ``detectron2._C`` (the same code the
  installer ships as ``detectron2/_C.py``; using our copy keeps :class:`MissingDetectron2Op` one class). Its
  every op raises :class:`MissingDetectron2Op`, naming the op and the README section. Faster R-CNN uses none
  of these ops (torchvision provides nms and roi_align); rotated boxes, deformable convs and the fast COCO
  evaluator do. A compiled extension (the official build) is never replaced.
* Third-party deprecation warnings that every run would print are filtered, each by its message and the module
  it is attributed to (see :func:`silence_third_party_warnings`); nothing else is filtered.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time served by __getattr__ below, so importing this module stays free of torch
    from slowfast_det.detection.ext_standin import MissingDetectron2Op

__all__ = ["MissingDetectron2Op", "has_real_extension", "import_detectron2", "patch", "silence_third_party_warnings"]

_STANDIN_MODULE = "slowfast_det.detection.ext_standin"

# (message regex, category, module regex the warning is attributed to): why each one is safe to hide.
_THIRD_PARTY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # detectron2 v0.6's model_zoo imports pkg_resources (setuptools < 81 still has it, see setup.cfg)
    (r"pkg_resources is deprecated as an API", Warning, r"detectron2\.model_zoo\.model_zoo"),
    # fvcore.nn.focal_loss and detectron2.modeling.box_regression decorate functions with torch.jit.script at
    # import; torch attributes the warning to its own module (no stacklevel), so that is the module named here.
    # This project never calls torch.jit.script itself.
    (r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit\._script"),
    # detectron2's anchor generator calls torch.meshgrid without `indexing` on every forward; its default ("ij")
    # is what detectron2 means. Attributed to torch.functional; this project always passes `indexing`.
    (r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing argument",
     UserWarning, r"torch\.functional"),
)


def __getattr__(name: str) -> Any:
    """``MissingDetectron2Op`` is the stand-in's class, imported on first use (the stand-in imports torch)."""
    if name == "MissingDetectron2Op":
        return importlib.import_module(_STANDIN_MODULE).MissingDetectron2Op
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def silence_third_party_warnings() -> None:
    """Hide the deprecation warnings that detectron2, fvcore and torch print on every run (idempotent).

    Each filter names the exact message and the module the warning is attributed to, so the same warning from
    other code elsewhere, and every warning of this project, still shows.
    """
    for message, category, module in _THIRD_PARTY_WARNINGS:
        # filterwarnings drops an identical existing filter before inserting, so repeated calls do not pile up
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


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
            "detectron2 is not installed. Run `make detectron2` (or `python -m slowfast_det.tools.install_detectron2`) "
            "to install v0.6 from the PyPI sdist pb1-detectron2; see the 'Detectron2' section of the README"
        )
    spec = importlib.util.find_spec("detectron2._C")
    if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
        return  # the real compiled extension: leave it alone
    # absent (detectron2 installed before the installer shipped detectron2/_C.py) or the installed stand-in
    sys.modules["detectron2._C"] = importlib.import_module(_STANDIN_MODULE)


def patch() -> None:
    """Apply the shims and the warning filters (idempotent)."""
    silence_third_party_warnings()
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
