"""Caffe2 blob names <-> PySlowFast/PyTorch parameter names: pure rename functions, no I/O.

:func:`c2_to_pytorch_name` maps a blob of PySlowFast's Caffe2 checkpoints (``res4_5_branch2b_bn_s``,
``t_pool1_subsample_w``, ``nonlocal_conv4_6_theta_w``, ``pred_w``...) to the parameter or buffer name of
:class:`slowfast_det.models.SlowFast`; :func:`pytorch_to_c2_name` is its inverse (it needs the stage depths to
name the last fast block of a stage). The scheme is PySlowFast's
(https://github.com/facebookresearch/SlowFast/blob/main/slowfast/utils/c2_model_loading.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["c2_to_pytorch_name", "is_c2_bookkeeping_blob", "pytorch_to_c2_name"]


# Blob suffix -> tensor name. BN suffixes are tried first: "_bn_b" also ends in "_b".
_BN_SUFFIXES = {"_bn_s": "weight", "_bn_b": "bias", "_bn_rm": "running_mean", "_bn_riv": "running_var"}
_CONV_SUFFIXES = {"_w": "weight", "_b": "bias"}
_BN_FIELDS = {v: k for k, v in _BN_SUFFIXES.items()}
_CONV_FIELDS = {v: k for k, v in _CONV_SUFFIXES.items()}

_BOOKKEEPING = re.compile(r"(?:^|_)(?:momentum|lr|model_iter|iter)(?:$|_)")


def is_c2_bookkeeping_blob(blob: str) -> bool:
    """True for Caffe2 optimizer / training-state blobs (``*_momentum``, ``lr``, ``*_lr``, ``model_iter``)."""
    return bool(_BOOKKEEPING.search(blob))


def _c2_layer_to_module(layer: str, is_bn: bool) -> str | None:
    """PyTorch module path of a Caffe2 layer name (without its ``_w`` / ``_bn_s`` ... suffix)."""
    pathway = 1 if layer.startswith("t_") else 0  # "t_" marks the Fast pathway
    layer = layer[2:] if pathway else layer
    bn = "_bn" if is_bn else ""
    if re.fullmatch(r"(?:res_)?conv1", layer):  # stem: conv1_w (or res_conv1_w), res_conv1_bn_*
        return f"s1.pathway{pathway}_stem." + ("bn" if is_bn else "conv")
    # Fusions: after the stem, and after res2..res4 (named by that stage's last Fast block).
    match = re.fullmatch(r"pool1_subsample|res(\d)_\d+_branch2c_bn_subsample", layer)
    if match:
        return f"s{match[1] or 1}_fuse." + ("bn" if is_bn else "conv_f2s") if pathway == 1 else None
    match = re.fullmatch(r"res(\d)_(\d+)_branch1", layer)
    if match:
        return f"s{match[1]}.pathway{pathway}_res{match[2]}.branch1{bn}"
    match = re.fullmatch(r"res(\d)_(\d+)_branch2([abc])", layer)
    if match:
        return f"s{match[1]}.pathway{pathway}_res{match[2]}.branch2.{match[3]}{bn}"
    # Non-local (Slow pathway only): convs theta / phi / g / out (with bias), then a BN.
    match = re.fullmatch(r"nonlocal_conv(\d)_(\d+)(?:_(theta|phi|g|out))?", layer)
    if match and pathway == 0 and is_bn == (match[3] is None):
        return f"s{match[1]}.pathway0_nonlocal{match[2]}." + ("bn" if is_bn else f"conv_{match[3]}")
    if layer == "pred" and pathway == 0 and not is_bn:
        return "head.projection"
    return None


def c2_to_pytorch_name(blob: str) -> str | None:
    """PyTorch state-dict name of a Caffe2 blob of PySlowFast's SlowFast/Slow models, or None if it has none.

    Examples: ``res4_22_branch2b_bn_riv`` -> ``s4.pathway0_res22.branch2.b_bn.running_var``;
    ``t_conv1_w`` -> ``s1.pathway1_stem.conv.weight``; ``t_res2_2_branch2c_bn_subsample_w`` ->
    ``s2_fuse.conv_f2s.weight``; ``nonlocal_conv4_6_theta_b`` -> ``s4.pathway0_nonlocal6.conv_theta.bias``;
    ``pred_w`` -> ``head.projection.weight``. ``_bn_riv`` is the running variance (loaded as is).
    """
    for suffixes, is_bn in ((_BN_SUFFIXES, True), (_CONV_SUFFIXES, False)):
        for suffix, tensor_name in suffixes.items():
            if blob.endswith(suffix):
                module = _c2_layer_to_module(blob[: -len(suffix)], is_bn)
                return None if module is None else f"{module}.{tensor_name}"
    return None


def _module_to_c2_layer(module: str, stage_depths: Sequence[int]) -> tuple[str, bool] | None:
    """(Caffe2 layer name, is a BN) of a PyTorch module path; None if it has none."""
    match = re.fullmatch(r"s1\.pathway([01])_stem\.(conv|bn)", module)
    if match:
        t = "t_" if match[1] == "1" else ""
        return (f"{t}conv1", False) if match[2] == "conv" else (f"{t}res_conv1", True)
    match = re.fullmatch(r"s([1-4])_fuse\.(conv_f2s|bn)", module)
    if match:
        stage = int(match[1])
        last_block = stage_depths[stage - 2] - 1 if stage > 1 else 0
        layer = "t_pool1_subsample" if stage == 1 else f"t_res{stage}_{last_block}_branch2c_bn_subsample"
        return layer, match[2] == "bn"
    match = re.fullmatch(r"s([2-5])\.pathway([01])_res(\d+)\.(branch1|branch2\.[abc])(_bn)?", module)
    if match:
        t = "t_" if match[2] == "1" else ""
        return f"{t}res{match[1]}_{match[3]}_{match[4].replace('.', '')}", match[5] is not None
    match = re.fullmatch(r"s([2-5])\.pathway0_nonlocal(\d+)\.(?:conv_(theta|phi|g|out)|bn)", module)
    if match:
        branch = f"_{match[3]}" if match[3] else ""
        return f"nonlocal_conv{match[1]}_{match[2]}{branch}", match[3] is None
    if module == "head.projection":
        return "pred", False
    return None


def pytorch_to_c2_name(name: str, stage_depths: Sequence[int]) -> str | None:
    """Caffe2 blob name of a PyTorch state-dict entry (the inverse of :func:`c2_to_pytorch_name`).

    ``stage_depths`` are the blocks of res2..res5 (e.g. (3, 4, 23, 3)): Caffe2 names the fusion after a stage
    by that stage's last Fast block. Returns None for ``num_batches_tracked`` (Caffe2 has no such blob).

    Raises:
        ValueError: the name has no Caffe2 equivalent (e.g. a non-local block on the Fast pathway).
    """
    module, _, tensor_name = name.rpartition(".")
    if tensor_name == "num_batches_tracked":
        return None
    layer = _module_to_c2_layer(module, stage_depths)
    if layer is not None:
        suffix = (_BN_FIELDS if layer[1] else _CONV_FIELDS).get(tensor_name)
        if suffix is not None:
            return layer[0] + suffix
    raise ValueError(f"{name} has no Caffe2 blob name in PySlowFast's naming scheme")
