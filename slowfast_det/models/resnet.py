"""Building blocks of the SlowFast / Slow ResNet backbones: stem, bottleneck, stage, non-local, fusion.

Module and parameter names are PySlowFast's (``pathway0_stem.conv``, ``pathway1_res3.branch2.b_bn``,
``pathway0_nonlocal6.conv_theta``, ``conv_f2s``, ...), so PySlowFast state dicts load without renaming, and
the op order, padding, pooling, BN eps (1e-5) and momentum (0.1) are PySlowFast's, so outputs agree with it.

Tensors are video feature maps ``(N, C, T, H, W)``; a multi-pathway module takes and returns one tensor per
pathway (Slow first). All modules take explicit keyword arguments; none reads a config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "NormFactory",
    "make_norm",
    "BasicStem",
    "VideoStem",
    "Bottleneck",
    "ResBlock",
    "NonLocal",
    "ResStage",
    "FastToSlowFusion",
]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # PyTorch convention (Caffe2's 0.9)

NormFactory = Callable[[int], nn.Module]
"""Builds a normalisation layer for a given number of channels."""


def make_norm(norm_type: str) -> NormFactory:
    """Normalisation factory: ``"batchnorm"`` (BatchNorm3d) or ``"sync_batchnorm"`` (SyncBatchNorm).

    Both use PySlowFast's eps and momentum and keep the parameter names (weight, bias, running_mean,
    running_var, num_batches_tracked), so checkpoints load into either.
    """
    if norm_type == "batchnorm":
        return partial(nn.BatchNorm3d, eps=BN_EPS, momentum=BN_MOMENTUM)
    if norm_type == "sync_batchnorm":
        return partial(nn.SyncBatchNorm, eps=BN_EPS, momentum=BN_MOMENTUM)
    raise ValueError(f"norm_type must be 'batchnorm' or 'sync_batchnorm', got {norm_type!r}")


def _mark_final_norm(norm: nn.Module) -> nn.Module:
    """Flag the last norm of a residual branch: zero-initialised when ``zero_init_final_bn`` is set."""
    norm.is_final_bn = True  # type: ignore[assignment]
    return norm


class BasicStem(nn.Module):
    """One pathway's stem: conv [t,7,7] stride [1,2,2], BN, ReLU, max-pool [1,3,3] stride [1,2,2].

    ``(N, C_in, T, H, W) -> (N, C_out, T, ceil(H/4), ceil(W/4))`` (each stride-2 step rounds up).
    """

    def __init__(self, *, in_channels: int, out_channels: int, temporal_kernel: int, norm: NormFactory):
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=(temporal_kernel, 7, 7),
            stride=(1, 2, 2),
            padding=(temporal_kernel // 2, 3, 3),
            bias=False,
        )
        self.bn = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoStem(nn.Module):
    """Stage ``s1``: one :class:`BasicStem` per pathway, named ``pathway{p}_stem``."""

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        temporal_kernels: Sequence[int],
        norm: NormFactory,
    ):
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(temporal_kernels):
            raise ValueError(
                "VideoStem: in_channels, out_channels and temporal_kernels need one entry per pathway"
            )
        self.num_pathways = len(in_channels)
        for p in range(self.num_pathways):
            stem = BasicStem(
                in_channels=in_channels[p],
                out_channels=out_channels[p],
                temporal_kernel=temporal_kernels[p],
                norm=norm,
            )
            self.add_module(f"pathway{p}_stem", stem)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [getattr(self, f"pathway{p}_stem")(x) for p, x in enumerate(xs)]


class Bottleneck(nn.Module):
    """Bottleneck branch ``branch2``: conv a [t,1,1] -> conv b [1,3,3] (stride, dilation, groups) -> conv c.

    Each conv is followed by BN; a and b also by ReLU. ``stride_1x1`` moves the spatial stride to conv a.
    ``(N, C_in, T, H, W) -> (N, C_out, T, H/s, W/s)``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        inner_channels: int,
        temporal_kernel: int,
        stride: int,
        dilation: int,
        num_groups: int,
        stride_1x1: bool,
        norm: NormFactory,
    ):
        super().__init__()
        stride_a, stride_b = (stride, 1) if stride_1x1 else (1, stride)
        self.a = nn.Conv3d(
            in_channels,
            inner_channels,
            kernel_size=(temporal_kernel, 1, 1),
            stride=(1, stride_a, stride_a),
            padding=(temporal_kernel // 2, 0, 0),
            bias=False,
        )
        self.a_bn = norm(inner_channels)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(
            inner_channels,
            inner_channels,
            kernel_size=(1, 3, 3),
            stride=(1, stride_b, stride_b),
            padding=(0, dilation, dilation),
            dilation=(1, dilation, dilation),
            groups=num_groups,
            bias=False,
        )
        self.b_bn = norm(inner_channels)
        self.b_relu = nn.ReLU(inplace=True)
        self.c = nn.Conv3d(inner_channels, out_channels, kernel_size=1, bias=False)
        self.c_bn = _mark_final_norm(norm(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """Residual block: ``relu(shortcut(x) + branch2(x))``.

    The shortcut is a projection (``branch1`` 1x1x1 conv with spatial stride + ``branch1_bn``) where the
    channels or the stride change, the identity otherwise.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        inner_channels: int,
        temporal_kernel: int,
        stride: int,
        dilation: int,
        num_groups: int,
        stride_1x1: bool,
        norm: NormFactory,
    ):
        super().__init__()
        self.branch1: nn.Module | None = None
        self.branch1_bn: nn.Module | None = None
        if in_channels != out_channels or stride != 1:
            self.branch1 = nn.Conv3d(
                in_channels, out_channels, kernel_size=1, stride=(1, stride, stride), bias=False
            )
            self.branch1_bn = norm(out_channels)
        self.branch2 = Bottleneck(
            in_channels=in_channels,
            out_channels=out_channels,
            inner_channels=inner_channels,
            temporal_kernel=temporal_kernel,
            stride=stride,
            dilation=dilation,
            num_groups=num_groups,
            stride_1x1=stride_1x1,
            norm=norm,
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))  # type: ignore[misc]
        return self.relu(shortcut + self.branch2(x))


class NonLocal(nn.Module):
    """Non-local block (Wang et al. 2018) as in PySlowFast: ``x + bn(conv_out(attention(x)))``.

    theta = conv_theta(x) on every position; phi and g on ``pool(x)`` (max-pool, kernel = stride =
    ``pool_size``, only where a size exceeds 1). Affinity theta^T phi is divided by the number of pooled
    positions (``"dot_product"``) or scaled by ``C_inner^-0.5`` and soft-maxed (``"softmax"``).
    Shape-preserving.
    """

    def __init__(
        self,
        *,
        channels: int,
        inner_channels: int,
        pool_size: Sequence[int],
        instantiation: str,
        norm: NormFactory,
    ):
        super().__init__()
        if instantiation not in ("dot_product", "softmax"):
            raise ValueError(
                f"non-local instantiation must be 'dot_product' or 'softmax', got {instantiation!r}"
            )
        self.instantiation = instantiation
        self.inner_channels = inner_channels
        self.conv_theta = nn.Conv3d(channels, inner_channels, kernel_size=1)
        self.conv_phi = nn.Conv3d(channels, inner_channels, kernel_size=1)
        self.conv_g = nn.Conv3d(channels, inner_channels, kernel_size=1)
        self.conv_out = nn.Conv3d(inner_channels, channels, kernel_size=1)
        self.bn = _mark_final_norm(norm(channels))
        self.pool: nn.Module | None = None
        if any(size > 1 for size in pool_size):
            self.pool = nn.MaxPool3d(kernel_size=tuple(pool_size), stride=tuple(pool_size))

    def attend(self, x: Tensor) -> Tensor:
        """The attention output before ``conv_out``: (N, C, T, H, W) -> (N, C_inner, T, H, W)."""
        n, _, t, h, w = x.shape
        theta = self.conv_theta(x).flatten(2)  # (N, Ci, THW)
        pooled = x if self.pool is None else self.pool(x)
        phi = self.conv_phi(pooled).flatten(2)  # (N, Ci, P)
        g = self.conv_g(pooled).flatten(2)  # (N, Ci, P)
        affinity = torch.matmul(theta.transpose(1, 2), phi)  # (N, THW, P)
        if self.instantiation == "softmax":
            affinity = torch.softmax(affinity * self.inner_channels**-0.5, dim=2)
        else:
            affinity = affinity / affinity.shape[2]
        y = torch.matmul(g, affinity.transpose(1, 2))  # (N, Ci, THW)
        return y.reshape(n, self.inner_channels, t, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn(self.conv_out(self.attend(x)))


class ResStage(nn.Module):
    """A ResNet stage over every pathway: blocks ``pathway{p}_res{i}``, non-local ``pathway{p}_nonlocal{i}``.

    Per pathway p: ``temporal_kernels[p]`` holds one temporal kernel size per block (so its length is the
    number of blocks); the first block takes ``in_channels[p]`` and ``spatial_strides[p]``, the others keep
    the shape. A non-local block follows block i when ``i in nonlocal_indices[p]``; with
    ``nonlocal_groups[p] > 1`` the time axis is split into that many groups, each attended separately.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        inner_channels: Sequence[int],
        temporal_kernels: Sequence[Sequence[int]],
        spatial_strides: Sequence[int],
        dilations: Sequence[int],
        num_groups: int,
        stride_1x1: bool,
        nonlocal_indices: Sequence[Sequence[int]],
        nonlocal_pools: Sequence[Sequence[int]],
        nonlocal_groups: Sequence[int],
        nonlocal_instantiation: str,
        norm: NormFactory,
    ):
        super().__init__()
        per_pathway = (out_channels, inner_channels, temporal_kernels, spatial_strides, dilations)
        nonlocal_args = (nonlocal_indices, nonlocal_pools, nonlocal_groups)
        if any(len(arg) != len(in_channels) for arg in per_pathway + nonlocal_args):
            raise ValueError("ResStage: every per-pathway argument needs one entry per pathway")
        self.num_pathways = len(in_channels)
        self.num_blocks = [len(kernels) for kernels in temporal_kernels]
        self.nonlocal_groups = list(nonlocal_groups)
        for p in range(self.num_pathways):
            for i, kernel in enumerate(temporal_kernels[p]):
                block = ResBlock(
                    in_channels=in_channels[p] if i == 0 else out_channels[p],
                    out_channels=out_channels[p],
                    inner_channels=inner_channels[p],
                    temporal_kernel=kernel,
                    stride=spatial_strides[p] if i == 0 else 1,
                    dilation=dilations[p],
                    num_groups=num_groups,
                    stride_1x1=stride_1x1,
                    norm=norm,
                )
                self.add_module(f"pathway{p}_res{i}", block)
                if i in nonlocal_indices[p]:
                    nonlocal_block = NonLocal(
                        channels=out_channels[p],
                        inner_channels=out_channels[p] // 2,
                        pool_size=nonlocal_pools[p],
                        instantiation=nonlocal_instantiation,
                        norm=norm,
                    )
                    self.add_module(f"pathway{p}_nonlocal{i}", nonlocal_block)

    def _nonlocal(self, block: nn.Module, x: Tensor, groups: int) -> Tensor:
        if groups == 1:
            return block(x)
        n, c, t, h, w = x.shape
        # Fold time groups into the batch: (N, C, T, H, W) -> (N*G, C, T/G, H, W), and back.
        folded = x.permute(0, 2, 1, 3, 4).reshape(n * groups, t // groups, c, h, w).permute(0, 2, 1, 3, 4)
        y = block(folded)
        return y.permute(0, 2, 1, 3, 4).reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        outputs = []
        for p, x in enumerate(xs):
            for i in range(self.num_blocks[p]):
                x = getattr(self, f"pathway{p}_res{i}")(x)
                nonlocal_block = getattr(self, f"pathway{p}_nonlocal{i}", None)
                if nonlocal_block is not None:
                    x = self._nonlocal(nonlocal_block, x, self.nonlocal_groups[p])
            outputs.append(x)
        return outputs


class FastToSlowFusion(nn.Module):
    """Lateral connection ``s{k}_fuse``: time-strided conv of the Fast features, concatenated to the Slow.

    conv_f2s: Conv3d(C_f -> C_f * channel_ratio, kernel [K,1,1], stride [alpha,1,1], pad [K//2,0,0]), BN,
    ReLU.
    ``[(N, C_s, T_s, H, W), (N, C_f, T_f, H, W)] -> [(N, C_s + C_f * ratio, T_s, H, W), unchanged Fast]``.
    """

    def __init__(
        self, *, fast_channels: int, channel_ratio: int, kernel_size: int, alpha: int, norm: NormFactory
    ):
        super().__init__()
        self.conv_f2s = nn.Conv3d(
            fast_channels,
            fast_channels * channel_ratio,
            kernel_size=(kernel_size, 1, 1),
            stride=(alpha, 1, 1),
            padding=(kernel_size // 2, 0, 0),
            bias=False,
        )
        self.bn = norm(fast_channels * channel_ratio)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        slow, fast = xs
        fused = self.relu(self.bn(self.conv_f2s(fast)))
        if fused.shape[2:] != slow.shape[2:]:
            raise ValueError(
                f"fusion: Fast features {tuple(fast.shape)} give {tuple(fused.shape[2:])} after the "
                f"time-strided conv, but the Slow features are {tuple(slow.shape[2:])}; the Fast clip needs "
                "alpha times the Slow pathway's frames and both pathways the same height and width"
            )
        return [torch.cat([slow, fused], dim=1), fast]
