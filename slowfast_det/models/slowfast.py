"""The SlowFast and Slow (single-pathway ResNet) video models of PySlowFast, with an RoI or a clip head.

Layout (PySlowFast's names, so its checkpoints load as-is)::

    s1 (stem) [s1_fuse] s2 [s2_fuse] pathway{p}_pool s3 [s3_fuse] s4 [s4_fuse] s5 -> head

``[sK_fuse]`` exists for ``arch="slowfast"`` only. ``forward_features`` returns the per-pathway ``s5``
features; ``forward`` adds the head: per-box logits (``head="roi"``, AVA) or per-clip logits
(``head="clip"``, Kinetics).
:func:`build_model` maps a config to the constructor through ``slowfast_det.builders.model_kwargs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

from slowfast_det.models.heads import ClipHead, RoIHead
from slowfast_det.models.resnet import FastToSlowFusion, ResStage, VideoStem, make_norm

__all__ = ["SlowFast", "STAGE_DEPTHS", "build_model", "init_weights", "freeze_bn", "count_gflops"]

# Residual blocks in res2..res5 for each depth.
# 18 (bottleneck blocks, 2 per stage) as PySlowFast's _MODEL_STAGE_DEPTH: the shallow CPU-sized SynthAVA models
STAGE_DEPTHS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# Temporal kernel of the stem conv and of conv `a` in res2..res5, per pathway (Slow, Fast).
_TEMPORAL_KERNELS: dict[str, tuple[tuple[int, ...], ...]] = {
    "slow": ((1,), (1,), (1,), (3,), (3,)),
    "slowfast": ((1, 5), (1, 3), (1, 3), (3, 3), (3, 3)),
}

# Max-pool (kernel = stride) applied after s2; [1, 1, 1], the identity, for both archs.
_POOL1: dict[str, tuple[tuple[int, int, int], ...]] = {
    "slow": ((1, 1, 1),),
    "slowfast": ((1, 1, 1), (1, 1, 1)),
}


def _per_stage(value: Sequence[Sequence[Any]], pathways: int, name: str) -> list[list[Any]]:
    """A [4 stages][pathways] table (strides, dilations, non-local settings, ...), validated.

    A stage given for one pathway applies to every pathway (PySlowFast's defaults are one-pathway tables).
    """
    if len(value) != 4 or any(len(v) == 0 or 1 < len(v) < pathways for v in value):
        raise ValueError(f"{name} needs 4 stages x {pathways} pathway(s), got {value!r}")
    return [list(v) * pathways if len(v) == 1 else list(v[:pathways]) for v in value]


class SlowFast(nn.Module):
    """SlowFast (two pathways) or Slow (one pathway) ResNet-3D, as in PySlowFast.

    Args:
        arch: ``"slowfast"`` or ``"slow"``.
        depth: 18, 50 or 101 (blocks per stage: STAGE_DEPTHS).
        num_classes: outputs of the head.
        head: ``"roi"`` (per-box logits, AVA) or ``"clip"`` (per-clip logits, Kinetics).
        num_frames: frames of the Fast (SlowFast) or only (Slow) pathway's input; sizes the RoI head's
            temporal average (the Slow pathway of SlowFast has ``num_frames // alpha``).
        input_channels: input channels per pathway.
        width_per_group, num_groups: W and G; stage k has inner width G*W*2^(k-2) and output 4W*2^(k-2).
        stride_1x1: put the block's spatial stride on conv a instead of conv b.
        spatial_strides, spatial_dilations: [stage][pathway] for res2..res5.
        num_block_temp_kernel: [stage][pathway]: how many leading blocks use the temporal kernel (others 1).
        alpha, beta_inv: Fast/Slow frame-rate ratio and Slow/Fast channel ratio.
        fusion_conv_channel_ratio, fusion_kernel_size: the lateral conv's channel multiplier and time kernel.
        nonlocal_locations: [stage][pathway] lists of block indices followed by a non-local block.
        nonlocal_groups: [stage][pathway] time groups for non-local.
        nonlocal_pools: [stage][pathway] max-pool [t,h,w] of phi and g.
        nonlocal_instantiation: ``"dot_product"`` or ``"softmax"``.
        roi_resolution, roi_spatial_scale, roi_aligned: RoIAlign output size, scale and alignment.
        dropout_rate: dropout before the projection (training only).
        fc_init_std: std of the projection's normal init.
        zero_init_final_bn: zero-init the last BN of every residual branch and non-local block.
        norm_type: ``"batchnorm"`` or ``"sync_batchnorm"``.
        bn_frozen: keep every BN in eval mode with fixed affine parameters (see :func:`freeze_bn`).
    """

    def __init__(
        self,
        *,
        arch: str = "slowfast",
        depth: int = 50,
        num_classes: int = 400,
        head: str = "clip",
        num_frames: int = 32,
        input_channels: Sequence[int] = (3, 3),
        width_per_group: int = 64,
        num_groups: int = 1,
        stride_1x1: bool = False,
        spatial_strides: Sequence[Sequence[int]] = ((1, 1), (2, 2), (2, 2), (2, 2)),
        spatial_dilations: Sequence[Sequence[int]] = ((1, 1), (1, 1), (1, 1), (1, 1)),
        num_block_temp_kernel: Sequence[Sequence[int]] = ((3, 3), (4, 4), (6, 6), (3, 3)),
        alpha: int = 8,
        beta_inv: int = 8,
        fusion_conv_channel_ratio: int = 2,
        fusion_kernel_size: int = 5,
        nonlocal_locations: Sequence[Sequence[Sequence[int]]] = (((), ()),) * 4,
        nonlocal_groups: Sequence[Sequence[int]] = ((1, 1),) * 4,
        nonlocal_pools: Sequence[Sequence[Sequence[int]]] = (((1, 2, 2), (1, 2, 2)),) * 4,
        nonlocal_instantiation: str = "dot_product",
        roi_resolution: int = 7,
        roi_spatial_scale: float = 1.0 / 16,
        roi_aligned: bool = True,
        dropout_rate: float = 0.5,
        fc_init_std: float = 0.01,
        zero_init_final_bn: bool = False,
        norm_type: str = "batchnorm",
        bn_frozen: bool = False,
    ):
        super().__init__()
        if arch not in _TEMPORAL_KERNELS:
            raise ValueError(f"arch must be one of {sorted(_TEMPORAL_KERNELS)}, got {arch!r}")
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"depth must be one of {sorted(STAGE_DEPTHS)}, got {depth!r}")
        if head not in ("roi", "clip"):
            raise ValueError(f"head must be 'roi' or 'clip', got {head!r}")
        self.arch = arch
        self.alpha = alpha
        self.num_pathways = len(_POOL1[arch])
        if len(input_channels) != self.num_pathways:
            raise ValueError(
                f"arch {arch!r} has {self.num_pathways} pathway(s), input_channels={list(input_channels)}"
            )
        fast = self.num_pathways == 2
        norm = make_norm(norm_type)
        kernels = _TEMPORAL_KERNELS[arch]
        strides = _per_stage(spatial_strides, self.num_pathways, "spatial_strides")
        dilations = _per_stage(spatial_dilations, self.num_pathways, "spatial_dilations")
        temp_blocks = _per_stage(num_block_temp_kernel, self.num_pathways, "num_block_temp_kernel")
        nl_locations = _per_stage(nonlocal_locations, self.num_pathways, "nonlocal_locations")
        nl_groups = _per_stage(nonlocal_groups, self.num_pathways, "nonlocal_groups")
        nl_pools = _per_stage(nonlocal_pools, self.num_pathways, "nonlocal_pools")

        def per_pathway(slow_channels: int) -> list[int]:
            return [slow_channels, slow_channels // beta_inv][: self.num_pathways]

        self.s1 = VideoStem(
            in_channels=input_channels,
            out_channels=per_pathway(width_per_group),
            temporal_kernels=kernels[0],
            norm=norm,
        )
        self._stage_order = ["s1"]
        in_widths = per_pathway(width_per_group)
        for stage, num_blocks in enumerate(STAGE_DEPTHS[depth]):  # res2..res5
            if fast:  # lateral connection s{k-1}_fuse into stage s{k}; none after s5
                fused = in_widths[1] * fusion_conv_channel_ratio
                if fused != in_widths[0] // (beta_inv // fusion_conv_channel_ratio):
                    raise ValueError(
                        f"width_per_group={width_per_group}, beta_inv={beta_inv}, fusion_conv_channel_ratio="
                        f"{fusion_conv_channel_ratio}: the fusion's {fused} channels differ from "
                        f"PySlowFast's {in_widths[0]} // (beta_inv // ratio)"
                    )
                fusion = FastToSlowFusion(
                    fast_channels=in_widths[1],
                    channel_ratio=fusion_conv_channel_ratio,
                    kernel_size=fusion_kernel_size,
                    alpha=alpha,
                    norm=norm,
                )
                self.add_module(f"s{stage + 1}_fuse", fusion)
                self._stage_order.append(f"s{stage + 1}_fuse")
                in_widths = [in_widths[0] + fused, in_widths[1]]
            if stage == 1:  # the pathway pools sit between s2(_fuse) and s3
                for p, size in enumerate(_POOL1[arch]):
                    self.add_module(f"pathway{p}_pool", nn.MaxPool3d(kernel_size=size, stride=size))
                self._stage_order.append("pools")
            out_widths = per_pathway(width_per_group * 4 * 2**stage)
            res_stage = ResStage(
                in_channels=in_widths,
                out_channels=out_widths,
                inner_channels=per_pathway(num_groups * width_per_group * 2**stage),
                temporal_kernels=[
                    # the first num_block_temp_kernel blocks use the stage's temporal kernel, the rest 1
                    [kernels[stage + 1][p] if i < temp_blocks[stage][p] else 1 for i in range(num_blocks)]
                    for p in range(self.num_pathways)
                ],
                spatial_strides=strides[stage],
                dilations=dilations[stage],
                num_groups=num_groups,
                stride_1x1=stride_1x1,
                nonlocal_indices=nl_locations[stage],
                nonlocal_pools=nl_pools[stage],
                nonlocal_groups=nl_groups[stage],
                nonlocal_instantiation=nonlocal_instantiation,
                norm=norm,
            )
            self.add_module(f"s{stage + 2}", res_stage)
            self._stage_order.append(f"s{stage + 2}")
            in_widths = out_widths

        self.head: RoIHead | ClipHead
        if head == "roi":
            slow_frames = num_frames // alpha if fast else num_frames
            frames = [slow_frames // _POOL1[arch][0][0], num_frames // _POOL1[arch][-1][0]][
                : self.num_pathways
            ]
            self.head = RoIHead(
                in_channels=in_widths,
                num_classes=num_classes,
                temporal_pool_sizes=frames,
                resolution=roi_resolution,
                spatial_scale=roi_spatial_scale,
                aligned=roi_aligned,
                dropout_rate=dropout_rate,
            )
        else:
            self.head = ClipHead(in_channels=in_widths, num_classes=num_classes, dropout_rate=dropout_rate)
        init_weights(self, fc_init_std=fc_init_std, zero_init_final_bn=zero_init_final_bn)
        self.bn_frozen = False
        if bn_frozen:
            freeze_bn(self)

    def train(self, mode: bool = True) -> SlowFast:
        """As ``nn.Module.train``, but frozen BN layers (:func:`freeze_bn`) stay in eval mode."""
        super().train(mode)
        if self.bn_frozen:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        if not isinstance(inputs, list | tuple) or len(inputs) != self.num_pathways:
            raise ValueError(
                f"{self.arch} model takes a list of {self.num_pathways} clip tensor(s) (B, 3, T, H, W), "
                f"got {type(inputs).__name__}"
                + (f" of length {len(inputs)}" if isinstance(inputs, list | tuple) else "")
            )
        for p, x in enumerate(inputs):
            if not isinstance(x, Tensor) or x.dim() != 5:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"pathway {p} input must be a (B, C, T, H, W) tensor, got {shape}")
        if self.num_pathways == 2:
            slow, fast = inputs
            if slow.shape[0] != fast.shape[0] or slow.shape[3:] != fast.shape[3:]:
                raise ValueError(
                    f"Slow {tuple(slow.shape)} and Fast {tuple(fast.shape)} inputs need the same batch size, "
                    "height and width"
                )

    def forward_features(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """Backbone: ``inputs[p]`` (B, C, T_p, H, W) -> per-pathway ``s5`` features (B, C5_p, T_p, H/16, W/16)
        (H/32 with the Kinetics strides). The input list is not modified."""
        self._check_inputs(inputs)
        xs = list(inputs)
        for name in self._stage_order:
            if name == "pools":
                xs = [getattr(self, f"pathway{p}_pool")(x) for p, x in enumerate(xs)]
            else:
                xs = getattr(self, name)(xs)
        return xs

    def forward(self, inputs: Sequence[Tensor], boxes: Tensor | None = None) -> Tensor:
        """Logits: (N, num_classes) per box for the RoI head, (B, num_classes) per clip for the clip head.

        Args:
            inputs: one (B, 3, T_p, H, W) clip tensor per pathway (Slow first; Fast has alpha x the frames).
            boxes: RoI head only: (N, 5) float = (batch_index, x1, y1, x2, y2) in input pixels; batch indices
                in any order; N may be 0.
        """
        features = self.forward_features(inputs)
        if isinstance(self.head, RoIHead):
            if boxes is None:
                raise ValueError("this model has an RoI head: forward(inputs, boxes) needs boxes (N, 5)")
            _check_boxes(boxes, batch_size=features[0].shape[0])
            return self.head(features, boxes)
        if boxes is not None:
            raise ValueError("this model has a clip head (DETECTION.ENABLE False): it takes no boxes")
        return self.head(features)


def _check_boxes(boxes: Tensor, batch_size: int) -> None:
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be an (N, 5) tensor of (batch_index, x1, y1, x2, y2), got {shape}")
    if boxes.numel() and boxes.device.type != "meta":
        index = boxes[:, 0]
        if bool(((index < 0) | (index >= batch_size) | (index != index.round())).any()):
            raise ValueError(
                f"boxes[:, 0] must hold integer batch indices in [0, {batch_size}), "
                f"got {index.unique().tolist()}"
            )


def init_weights(model: nn.Module, *, fc_init_std: float, zero_init_final_bn: bool) -> None:
    """PySlowFast's init: convs Kaiming-normal (fan_out, ReLU gain) with zero bias; BN weight 1 and bias 0,
    weight 0 for the last BN of each residual branch / non-local block when ``zero_init_final_bn``; linear
    layers normal(0, ``fc_init_std``) with zero bias."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and weight.is_meta:
            continue  # meta tensors hold no values (FLOP counting, shape checks)
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _BatchNorm):
            final = getattr(module, "is_final_bn", False) and zero_init_final_bn
            nn.init.constant_(module.weight, 0.0 if final else 1.0)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=fc_init_std)
            nn.init.zeros_(module.bias)


def freeze_bn(model: nn.Module) -> nn.Module:
    """Freeze every BatchNorm of ``model``: eval mode (running statistics used and kept) and no gradient for
    weight and bias. :class:`SlowFast` models keep their BN frozen across later ``.train()`` calls; for other
    modules call this again after ``.train()``. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, SlowFast):
            module.bn_frozen = True
        if isinstance(module, _BatchNorm):
            module.eval()
            for param in (module.weight, module.bias):
                if param is not None:
                    param.requires_grad_(False)
    return model


def build_model(cfg: object) -> SlowFast:
    """The model a config describes (``MODEL.ARCH``, ``RESNET.*``, ``SLOWFAST.*``, ``NONLOCAL.*``,
    ``DETECTION.*``, ``BN.*``), randomly initialised as PySlowFast does; load weights with
    ``slowfast_det.checkpoint.loading.load_weights``."""
    from slowfast_det import builders

    return builders.build_model(cfg)


def count_gflops(model: nn.Module, inputs: Sequence[object]) -> float:
    """GFLOPs of ``model(*inputs)`` counted as multiply-adds, as the SlowFast paper and PySlowFast (fvcore)
    do: convolutions, linear layers and matrix products; BN, pooling, RoIAlign and element-wise ops are free.

    Works on the meta device (build the model under ``torch.device("meta")`` and pass meta inputs) so the
    count costs no compute.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 2 / 1e9  # torch counts a multiply-add as 2 FLOPs
