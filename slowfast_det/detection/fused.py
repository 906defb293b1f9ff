"""A faster inference path for detectron2 detectors on CPU: BN folded into the convolutions, channels-last.

``optimize_detector(model)`` rewrites a detectron2 ``GeneralizedRCNN`` (in eval mode) in place:

- every detectron2 ``Conv2d`` followed by a ``FrozenBatchNorm2d`` (or an eval-mode ``BatchNorm2d``) gets the
  BN folded into its weight and bias, and the BN removed (one pass over each feature map instead of two);
- the backbone (ResNet + FPN) and the RPN head run in channels-last memory format, which oneDNN's 2-D
  convolutions prefer; the FPN outputs go back to the default layout once, before the RoI heads, whose
  RoIAlign reads NCHW.

Outputs equal the original model's to float rounding (boxes within 1e-3 px on real frames). Batching several
keyframes per forward is :class:`slowfast_det.detection.person.PersonDetector`'s ``batch_size``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slowfast_det.models.fused import has_onednn_pointwise

__all__ = ["fold_conv_norms", "fuse_resnet_blocks", "optimize_detector"]


def _frozen_bn_types() -> tuple[type, ...]:
    from detectron2.layers import FrozenBatchNorm2d

    return (FrozenBatchNorm2d, nn.BatchNorm2d)


def fold_conv_norms(model: nn.Module) -> int:
    """Fold each ``norm`` of detectron2 ``Conv2d`` modules (FrozenBatchNorm2d / eval BatchNorm2d) into the
    conv's weight and bias, in place; returns how many were folded. BN with running statistics is affine:
    ``(conv(x) - mean) / sqrt(var + eps) * gamma + beta``."""
    from detectron2.layers import Conv2d

    norm_types = _frozen_bn_types()
    folded = 0
    for module in model.modules():
        norm: Any = getattr(module, "norm", None)
        if not isinstance(module, Conv2d) or not isinstance(norm, norm_types):
            continue
        if isinstance(norm, nn.BatchNorm2d) and (norm.training or norm.running_mean is None):
            continue  # batch statistics: not foldable
        bn: Any = norm  # FrozenBatchNorm2d or BatchNorm2d: weight, bias, running_mean, running_var, eps
        with torch.no_grad():
            scale = bn.weight * (bn.running_var + bn.eps).rsqrt()  # (C_out,)
            bias = bn.bias - bn.running_mean * scale
            if module.bias is not None:
                bias = bias + module.bias * scale
            module.weight.mul_(scale.reshape(-1, 1, 1, 1))
            module.bias = nn.Parameter(bias.to(module.weight.dtype), requires_grad=False)
        module.norm = None
        folded += 1
    return folded


def _onednn_conv(conv: nn.Module, x: Tensor, unary: str = "none", residual: Tensor | None = None) -> Tensor:
    """``conv(x)`` (+ residual) (+ ReLU) as one oneDNN primitive on CPU fp32; PyTorch's own dispatch sends many
    channels-last 1x1 convs to its slow non-oneDNN kernel. Elsewhere: the module's forward + element-wise ops."""
    if _ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and conv.norm is None:
        if isinstance(conv.activation, nn.ReLU):
            unary = "relu"  # the RPN head's conv
        elif conv.activation is not None:
            return conv.__class__.forward(conv, x)  # unknown activation: detectron2's own forward
        args = (conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, unary, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, *args, "add", None, None if unary == "none" else unary, [], ""
        )
    y = conv.__class__.forward(conv, x)
    if residual is not None:
        y = y + residual
    return torch.relu_(y) if unary == "relu" else y


_ONEDNN = has_onednn_pointwise()


def _fast_bottleneck_forward(self: Any, x: Tensor) -> Tensor:
    """detectron2's ``BottleneckBlock.forward`` with each conv, its ReLU and the residual add as one oneDNN op."""
    out = _onednn_conv(self.conv1, x, "relu")
    out = _onednn_conv(self.conv2, out, "relu")
    shortcut = x if self.shortcut is None else _onednn_conv(self.shortcut, x)
    return _onednn_conv(self.conv3, out, "relu", residual=shortcut)


def _fast_stem_forward(self: Any, x: Tensor) -> Tensor:
    """detectron2's ``BasicStem.forward`` with the conv and its ReLU as one oneDNN op."""
    return F.max_pool2d(_onednn_conv(self.conv1, x, "relu"), kernel_size=3, stride=2, padding=1)


def _fast_conv_forward(self: Any, x: Tensor) -> Tensor:
    return _onednn_conv(self, x)


def fuse_resnet_blocks(model: nn.Module) -> None:
    """Route the (BN-folded) ResNet blocks, stem and every remaining detectron2 ``Conv2d`` (FPN, RPN head)
    through oneDNN's fused conv (+ add) (+ ReLU), in place: instance-level forwards, names and weights kept."""
    import types

    from detectron2.layers import Conv2d
    from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock

    for module in model.modules():
        if isinstance(module, BottleneckBlock) and all(
            c.norm is None and c.activation is None for c in (module.conv1, module.conv2, module.conv3)
        ):
            module.forward = types.MethodType(_fast_bottleneck_forward, module)  # type: ignore[method-assign]
        elif isinstance(module, BasicStem) and module.conv1.norm is None:
            module.forward = types.MethodType(_fast_stem_forward, module)  # type: ignore[method-assign]
        elif isinstance(module, Conv2d) and module.norm is None and (
            module.activation is None or isinstance(module.activation, nn.ReLU)
        ):
            module.forward = types.MethodType(_fast_conv_forward, module)  # type: ignore[method-assign]
    for module in model.modules():  # plain nn.Conv2d of the RPN head: oneDNN too
        if type(module) is nn.Conv2d and not isinstance(module.padding, str):
            module.norm, module.activation = None, None  # type: ignore[assignment]
            module.forward = types.MethodType(_fast_conv_forward, module)  # type: ignore[method-assign]


class _ChannelsLastBackbone(nn.Module):
    """Runs the wrapped backbone on channels-last input; returns its feature maps in the default layout
    (the RPN head's convs accept either; RoIAlign wants NCHW and would otherwise copy per RoI level)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.inner = backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.inner(x.contiguous(memory_format=torch.channels_last))
        return {name: f.contiguous() for name, f in features.items()}

    def output_shape(self) -> Any:
        return self.inner.output_shape()  # type: ignore[operator]

    @property
    def size_divisibility(self) -> int:
        return int(getattr(self.inner, "size_divisibility", 0))

    @property
    def padding_constraints(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "padding_constraints", {}))


def optimize_detector(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Prepare a detectron2 ``GeneralizedRCNN`` for inference, in place (see the module docstring); returns it.

    Args:
        model: an eval-mode detectron2 model with its weights loaded (folding copies the current weights:
            load weights before, not after).
        channels_last: run the backbone in channels-last memory format.
    """
    model.eval()
    fold_conv_norms(model)
    fuse_resnet_blocks(model)
    backbone = getattr(model, "backbone", None)
    if channels_last and backbone is not None and not isinstance(backbone, _ChannelsLastBackbone):
        model.backbone = _ChannelsLastBackbone(backbone)
    for param in model.parameters():
        param.requires_grad_(False)
    return model
