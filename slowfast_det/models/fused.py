"""A faster inference path for SlowFast models: BN folded into the convs, fused ReLU / residual add,
channels-last-3d, no autograd.

``optimize_for_inference(model)`` returns a new module with the same call signature (``(inputs, boxes=None)``)
and the same fp32 outputs to float rounding; the original model is left untouched. Each conv + BN (+ ReLU)
(+ residual add) of the backbone becomes one :class:`FusedConv3d`. On CPU it runs as one oneDNN primitive
(``torch.ops.mkldnn._convolution_pointwise``, the kernel PyTorch's own compiler uses), which also avoids
PyTorch's slow non-oneDNN Conv3d path that its dispatch heuristic picks for the thin Fast-pathway layers.
On GPU it runs ``conv3d`` then the element-wise ops, optionally in bf16/fp16.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

from slowfast_det.models.resnet import BasicStem, FastToSlowFusion, NonLocal, ResBlock

__all__ = ["FusedConv3d", "optimize_for_inference", "InferenceModel"]


def _has_onednn_pointwise() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _has_onednn_pointwise()


class FusedConv3d(nn.Module):
    """``act(conv(x) [+ residual])`` for an inference-only Conv3d with its BN folded into weight and bias.

    Args:
        conv: the convolution (its weights are copied).
        bn: the BN that follows it, folded in with its running statistics (None: no BN).
        relu: apply ReLU at the end.
    """

    def __init__(self, conv: nn.Conv3d, bn: nn.Module | None, *, relu: bool):
        super().__init__()
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0, 0])
        # BN with running statistics: (conv(x) - mean) / sqrt(var + eps) * gamma + beta, folded into conv
        if bn is not None:
            if not isinstance(bn, _BatchNorm) or bn.running_mean is None or bn.running_var is None:
                raise TypeError(f"FusedConv3d folds a BatchNorm with running statistics, got {bn!r}")
            weight, bias = fuse_conv_bn_weights(
                weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight.detach(), bn.bias.detach()
            )
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride = [int(s) for s in conv.stride]
        self.padding = [int(p) for p in conv.padding]  # type: ignore[union-attr]
        self.dilation = [int(d) for d in conv.dilation]
        self.groups = conv.groups
        self.relu = relu

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``x``: (N, C_in, T, H, W); ``residual``: None or the conv output's shape."""
        if _ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32:
            conv_args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
            unary = "relu" if self.relu else "none"
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(x, *conv_args, unary, [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, *conv_args, "add", None, unary if self.relu else None, [], ""
            )
        y = F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y.add_(residual)
        return F.relu_(y) if self.relu else y


class _FusedStem(nn.Module):
    def __init__(self, stem: BasicStem):
        super().__init__()
        self.conv = FusedConv3d(stem.conv, stem.bn, relu=True)
        self.pool_layer = stem.pool_layer

    def forward(self, x: Tensor) -> Tensor:
        return self.pool_layer(self.conv(x))


class _FusedResBlock(nn.Module):
    def __init__(self, block: ResBlock):
        super().__init__()
        branch = block.branch2
        self.shortcut = None
        if block.branch1 is not None:
            self.shortcut = FusedConv3d(block.branch1, block.branch1_bn, relu=False)  # type: ignore[arg-type]
        self.a = FusedConv3d(branch.a, branch.a_bn, relu=True)
        self.b = FusedConv3d(branch.b, branch.b_bn, relu=True)
        self.c = FusedConv3d(branch.c, branch.c_bn, relu=True)  # relu(c(x) + shortcut)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.c(self.b(self.a(x)), residual=shortcut)


class _FusedFusion(nn.Module):
    def __init__(self, fusion: FastToSlowFusion):
        super().__init__()
        self.conv_f2s = FusedConv3d(fusion.conv_f2s, fusion.bn, relu=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        slow, fast = xs
        fused = self.conv_f2s(fast)
        if fused.shape[2:] != slow.shape[2:]:
            raise ValueError(
                f"fusion: Fast features give {tuple(fused.shape[2:])}, Slow are {tuple(slow.shape[2:])}"
            )
        return [torch.cat([slow, fused], dim=1), fast]


class _FusedNonLocal(nn.Module):
    def __init__(self, block: NonLocal):
        super().__init__()
        self.block = block  # theta / phi / g / pool / attention unchanged; its conv_out and bn unused
        self.conv_out = FusedConv3d(block.conv_out, block.bn, relu=False)  # x + bn(conv_out(y))

    def forward(self, x: Tensor) -> Tensor:
        y = self.block.attend(x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last_3d)
        y = y.contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
        return self.conv_out(y, residual=x)


_FUSED = {
    BasicStem: _FusedStem,
    ResBlock: _FusedResBlock,
    FastToSlowFusion: _FusedFusion,
    NonLocal: _FusedNonLocal,
}


def _fuse_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        replacement = _FUSED.get(type(child))
        if replacement is not None:
            setattr(module, name, replacement(child))  # type: ignore[arg-type]
        else:
            _fuse_children(child)


class InferenceModel(nn.Module):
    """Wraps an optimised model: casts inputs (memory format, dtype), runs under ``torch.inference_mode``,
    returns fp32 logits. Same call signature as the wrapped model."""

    def __init__(self, model: nn.Module, *, dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format

    def forward(self, inputs: Sequence[Tensor], boxes: Tensor | None = None) -> Tensor:
        """``inputs[p]``: (B, 3, T_p, H, W); ``boxes``: (N, 5) or None -> (N or B, classes) fp32 logits."""
        with torch.inference_mode():
            xs = [x.to(dtype=self.dtype, memory_format=self.memory_format) for x in inputs]
            out = self.model(xs) if boxes is None else self.model(xs, boxes)
            return out.float()


def optimize_for_inference(
    model: nn.Module,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> InferenceModel:
    """A copy of ``model`` prepared for fast inference (the original is not modified).

    Steps: deep copy in eval mode; every backbone conv + BN (+ ReLU) (+ residual add) replaced by one
    :class:`FusedConv3d` (BN folded into the conv); weights in ``dtype`` and channels-last-3d memory format
    (what oneDNN and cuDNN prefer for Conv3d); calls under ``torch.inference_mode``. In fp32 the outputs
    match the eval-mode model to float rounding.

    Args:
        model: a :class:`slowfast_det.models.SlowFast` (on the device it will run on).
        dtype: ``torch.float32``; ``torch.bfloat16`` or ``torch.float16`` on GPU for more speed (outputs then
            differ at the 1e-2 level; RoIAlign still runs in fp32).
        channels_last: use channels-last-3d memory format.
    """
    device = next(model.parameters()).device
    if dtype != torch.float32 and device.type == "cpu":
        raise ValueError(f"dtype {dtype} is meant for GPU inference; keep float32 on CPU")
    optimized = copy.deepcopy(model).eval()
    _fuse_children(optimized)
    optimized = optimized.to(dtype=dtype)
    if channels_last:
        optimized = optimized.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    for param in optimized.parameters():
        param.requires_grad_(False)
    return InferenceModel(optimized, dtype=dtype, channels_last=channels_last)
