"""A faster inference path for detectron2 detectors on CPU: BN folded into the convolutions, channels-last.

``optimize_detector(model)`` rewrites a detectron2 ``GeneralizedRCNN`` (in eval mode) in place:

- every detectron2 ``Conv2d`` followed by a ``FrozenBatchNorm2d`` (or an eval-mode ``BatchNorm2d``) gets the
  BN folded into its weight and bias, and the BN removed (one pass over each feature map instead of two);
- every conv (+ residual add) (+ ReLU) runs as one oneDNN primitive;
- the backbone (ResNet + FPN), the RPN head and the box pooler read channels-last maps, which oneDNN's 2-D
  convolutions prefer;
- RoIAlign runs on the channels-last FPN maps as two small GEMMs per RoI (:func:`roi_align_channels_last`),
  the box head's ``fc1`` reads the pooled (R, R, C) rows directly, and the FPN's top-down sums are done in
  place;
- on CPU, a batch of images runs one image per pass (less CPU time than batched passes).

Outputs equal the original model's to float rounding (boxes within 1e-3 px on real frames).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slowfast_det.models.fused import has_onednn_pointwise
from slowfast_det.roi_align import roi_align_channels_last

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


def _add_upsampled_(lateral: Tensor, coarse: Tensor) -> Tensor:
    """``lateral += F.interpolate(coarse, scale_factor=2, mode="nearest")`` in one pass, in place, without the
    upsampled map: each coarse pixel is broadcast onto its 2x2 block of the channels-last lateral rows."""
    n, c, h, w = lateral.shape
    if (
        (h, w) == (2 * coarse.shape[2], 2 * coarse.shape[3])
        and lateral.is_contiguous(memory_format=torch.channels_last)
        and not lateral.is_contiguous()  # (C = 1 or H = W = 1 would make both layouts "contiguous")
    ):
        blocks = lateral.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c)
        blocks.add_(coarse.permute(0, 2, 3, 1)[:, :, None, :, None, :])
        return lateral
    return lateral.add_(F.interpolate(coarse, scale_factor=2.0, mode="nearest"))


def _fast_fpn_forward(self: Any, x: Tensor) -> dict[str, Tensor]:
    """detectron2's ``FPN.forward`` (``fuse_type`` "sum") with the top-down sum done in place on the lateral
    conv's output (:func:`_add_upsampled_`): the same values, without materialising the upsampled map."""
    bottom_up_features = self.bottom_up(x)
    prev_features = self.lateral_convs[0](bottom_up_features[self.in_features[-1]])
    results = [self.output_convs[0](prev_features)]
    for idx in range(1, len(self.lateral_convs)):
        features = bottom_up_features[self.in_features[-idx - 1]]
        prev_features = _add_upsampled_(self.lateral_convs[idx](features), prev_features)
        results.insert(0, self.output_convs[idx](prev_features))
    if self.top_block is not None:
        if self.top_block.in_feature in bottom_up_features:
            top_block_in_feature = bottom_up_features[self.top_block.in_feature]
        else:
            top_block_in_feature = results[self._out_features.index(self.top_block.in_feature)]
        results.extend(self.top_block(top_block_in_feature))
    return dict(zip(self._out_features, results, strict=True))


def fuse_resnet_blocks(model: nn.Module) -> None:
    """Route the (BN-folded) ResNet blocks, stem and every remaining detectron2 ``Conv2d`` (FPN, RPN head)
    through oneDNN's fused conv (+ add) (+ ReLU), and the FPN's top-down sums in place, in place:
    instance-level forwards, names and weights kept."""
    import types

    from detectron2.layers import Conv2d
    from detectron2.modeling.backbone.fpn import FPN
    from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock

    for module in model.modules():
        if isinstance(module, FPN) and module._fuse_type == "sum":
            module.forward = types.MethodType(_fast_fpn_forward, module)  # type: ignore[method-assign]
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
    """Runs the wrapped backbone on channels-last input. Its feature maps stay channels-last when the box
    pooler reads them with :func:`roi_align_channels_last` (``keep_layout``); otherwise they go back to the
    default layout once (torchvision's RoIAlign wants NCHW and would copy per RoI level)."""

    def __init__(self, backbone: nn.Module, *, keep_layout: bool = False):
        super().__init__()
        self.inner = backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.keep_layout = keep_layout

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.inner(x.contiguous(memory_format=torch.channels_last))
        if self.keep_layout:
            return dict(features)
        return {name: f.contiguous() for name, f in features.items()}

    def output_shape(self) -> Any:
        return self.inner.output_shape()  # type: ignore[operator]

    @property
    def size_divisibility(self) -> int:
        return int(getattr(self.inner, "size_divisibility", 0))

    @property
    def padding_constraints(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "padding_constraints", {}))


def _fast_pooler_forward(self: Any, x: list[Tensor], box_lists: list[Any]) -> Tensor:
    """detectron2's ``ROIPooler.forward`` (same level assignment) with :func:`roi_align_channels_last` per
    level; returns (M, C, R, R) in channels-last memory."""
    from detectron2.modeling.poolers import assign_boxes_to_levels, convert_boxes_to_pooler_format

    r = self.output_size[0]
    if len(box_lists) == 0:
        return torch.zeros((0, x[0].shape[1], r, r), device=x[0].device, dtype=x[0].dtype)
    rois = convert_boxes_to_pooler_format(box_lists)
    if len(self.level_poolers) == 1:
        levels = torch.zeros(rois.shape[0], dtype=torch.long)
    else:
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
    out = torch.empty((rois.shape[0], r, r, x[0].shape[1]), dtype=x[0].dtype, device=x[0].device)
    for level, pooler in enumerate(self.level_poolers):
        inds = torch.nonzero(levels == level).flatten()
        if inds.numel():
            pooled = roi_align_channels_last(
                x[level], rois[inds], r, pooler.spatial_scale, pooler.sampling_ratio, pooler.aligned
            )
            out.index_copy_(0, inds, pooled.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


def _fast_box_head_forward(self: Any, x: Tensor) -> Tensor:
    """detectron2's ``FastRCNNConvFCHead.forward`` without conv layers, for pooled features in channels-last
    memory: flattened in (R, R, C) order (a view) into ``fc1`` whose input columns were permuted to match."""
    n, c, h, w = x.shape
    x = x.permute(0, 2, 3, 1).reshape(n, c * h * w)  # a view for channels-last features
    for name, layer in self.named_children():
        if name != "flatten":
            x = layer(x)
    return x


def _use_channels_last_roi_heads(model: nn.Module) -> bool:
    """Switch the box pooler to :func:`roi_align_channels_last` and the box head to (R, R, C)-ordered ``fc1``
    inputs, in place, when the model has detectron2's ROIAlign pooler and a conv-free FC box head; returns
    whether it did (then the backbone's features may stay channels-last)."""
    import types

    from detectron2.layers import ROIAlign
    from detectron2.modeling.roi_heads.box_head import FastRCNNConvFCHead

    heads = getattr(model, "roi_heads", None)
    pooler = getattr(heads, "box_pooler", None)
    box_head = getattr(heads, "box_head", None)
    if (
        pooler is None
        or not all(type(p) is ROIAlign for p in pooler.level_poolers)
        or not isinstance(box_head, FastRCNNConvFCHead)
        or box_head.conv_norm_relus
        or not box_head.fcs
        or not hasattr(box_head, "flatten")
    ):
        return False
    fc1 = box_head.fcs[0]
    r = pooler.output_size[0]
    with torch.no_grad():
        out_dim = fc1.weight.shape[0]
        channels = fc1.weight.shape[1] // (r * r)
        # columns c * R * R + i * R + j -> (i * R + j) * C + c
        fc1.weight.copy_(fc1.weight.view(out_dim, channels, r, r).permute(0, 2, 3, 1).reshape(out_dim, -1))
    pooler.forward = types.MethodType(_fast_pooler_forward, pooler)
    box_head.forward = types.MethodType(_fast_box_head_forward, box_head)
    return True


def _one_image_at_a_time_forward(self: Any, batched_inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """detectron2's ``GeneralizedRCNN.forward`` in inference, one image per pass on CPU: the same results
    (to float rounding) as one batched pass, ~8% less CPU time per keyframe than batches of 4 at 1333x567
    (the batch's feature maps outgrow the caches; measured by ``tests/benchmarks/bench_detector.py``)."""
    forward = type(self).forward
    if self.training or len(batched_inputs) <= 1 or self.device.type != "cpu":
        return forward(self, batched_inputs)  # type: ignore[no-any-return]
    return [result for single in batched_inputs for result in forward(self, [single])]


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
        model.backbone = _ChannelsLastBackbone(backbone, keep_layout=_use_channels_last_roi_heads(model))
    for param in model.parameters():
        param.requires_grad_(False)
    import types

    model.forward = types.MethodType(_one_image_at_a_time_forward, model)  # type: ignore[method-assign]
    return model
