"""Heads on the per-pathway ``s5`` features: the AVA RoI head (per box) and the Kinetics clip head (per clip).

Both return logits; the activation (sigmoid for AVA, softmax for Kinetics) belongs to the loss or to
inference. Names follow PySlowFast (``s{p}_tpool``, ``s{p}_roi``, ``s{p}_spool``, ``projection``), so the one
parameterised layer, ``head.projection``, loads from PySlowFast checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import RoIAlign

from slowfast_det.roi_align import roi_align_gemm

__all__ = ["RoIHead", "ClipHead"]


class RoIHead(nn.Module):
    """Per-box action logits from multi-pathway features, as PySlowFast's ``ResNetRoIHead``.

    Per pathway p: average over the whole clip (``AvgPool3d([T_p,1,1])``), RoIAlign to R x R
    (``torchvision.ops.roi_align`` with ``spatial_scale``, ``sampling_ratio=0``, ``aligned``), max over the
    R x R cells (``MaxPool2d(R)``). The pathways' vectors are concatenated (Slow first), dropped out (training
    only) and projected by ``projection`` (Linear) to ``num_classes`` logits.

    Args:
        in_channels: channels of each pathway's features.
        num_classes: number of outputs.
        temporal_pool_sizes: frames T_p of each pathway's features (the head averages exactly that many).
        resolution: RoIAlign output size R.
        spatial_scale: feature-map pixels per input pixel (1/16 for the AVA backbones).
        aligned: RoIAlign's half-pixel offset (False in PySlowFast's ``configs/AVA/c2``).
        dropout_rate: dropout before the projection (0 disables it).
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        num_classes: int,
        temporal_pool_sizes: Sequence[int],
        resolution: int = 7,
        spatial_scale: float = 1.0 / 16,
        aligned: bool = True,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        if len(in_channels) != len(temporal_pool_sizes):
            raise ValueError("RoIHead: in_channels and temporal_pool_sizes need one entry per pathway")
        self.num_pathways = len(in_channels)
        self.temporal_pool_sizes = list(temporal_pool_sizes)
        for p, frames in enumerate(temporal_pool_sizes):
            self.add_module(f"s{p}_tpool", nn.AvgPool3d((frames, 1, 1), stride=1))
            self.add_module(
                f"s{p}_roi",
                RoIAlign(
                    (resolution, resolution), spatial_scale=spatial_scale, sampling_ratio=0, aligned=aligned
                ),
            )
            self.add_module(f"s{p}_spool", nn.MaxPool2d(resolution, stride=1))
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.projection = nn.Linear(sum(in_channels), num_classes)

    def forward(self, features: Sequence[Tensor], boxes: Tensor) -> Tensor:
        """``features[p]``: (B, C_p, T_p, h, w); ``boxes``: (N, 5) = (batch_index, x1, y1, x2, y2) in input
        pixels.

        Returns (N, num_classes) logits, one row per box in the order given.
        """
        pooled = []
        for p, x in enumerate(features):
            if x.shape[2] != self.temporal_pool_sizes[p]:
                raise ValueError(
                    f"RoI head: pathway {p} has {x.shape[2]} frames after the backbone, the head was built "
                    f"for {self.temporal_pool_sizes[p]} (DATA.NUM_FRAMES sets it)"
                )
            x = getattr(self, f"s{p}_tpool")(x)
            # RoIAlign in fp32 whatever the features' dtype: box coordinates need more than 8 mantissa bits
            x = self._roi_align(getattr(self, f"s{p}_roi"), x.squeeze(2).float(), boxes.float()).to(x.dtype)
            pooled.append(getattr(self, f"s{p}_spool")(x))  # (N, C_p, 1, 1)
        x = torch.cat(pooled, dim=1).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.projection(x)


    def _roi_align(self, roi: RoIAlign, x: Tensor, boxes: Tensor) -> Tensor:
        """(N, C, R, R) RoIAlign of (B, C, h, w) ``x``: torchvision's, except when training on CPU, where the
        same function as matrix products (:func:`slowfast_det.roi_align.roi_align_gemm`) has a 6x faster
        backward; inference keeps torchvision's kernel (PySlowFast's numbers, bit for bit)."""
        if self.training and x.requires_grad and x.device.type == "cpu":
            size = roi.output_size if isinstance(roi.output_size, int) else roi.output_size[0]
            return roi_align_gemm(x, boxes, int(size), roi.spatial_scale, roi.sampling_ratio, roi.aligned)
        return roi(x, boxes)


class ClipHead(nn.Module):
    """Per-clip logits (Kinetics): global average pool per pathway, concatenate, dropout, ``projection``.

    PySlowFast averages with a fixed [T, crop/32, crop/32] window and, at test time, averages the softmax
    over the windows of a larger view; here the average is global (the same at the training crop size) and
    the result stays a logit.
    """

    def __init__(self, *, in_channels: Sequence[int], num_classes: int, dropout_rate: float = 0.0):
        super().__init__()
        self.num_pathways = len(in_channels)
        for p in range(self.num_pathways):
            self.add_module(f"pathway{p}_avgpool", nn.AdaptiveAvgPool3d(1))
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.projection = nn.Linear(sum(in_channels), num_classes)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """``features[p]``: (B, C_p, T_p, h, w) -> (B, num_classes) logits."""
        x = torch.cat(
            [getattr(self, f"pathway{p}_avgpool")(f) for p, f in enumerate(features)], dim=1
        ).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.projection(x)
