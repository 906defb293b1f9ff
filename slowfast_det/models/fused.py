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
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

from slowfast_det.models.heads import RoIHead
from slowfast_det.models.resnet import BasicStem, FastToSlowFusion, NonLocal, ResBlock

__all__ = ["FusedConv3d", "Int8Conv3d", "Int8InferenceModel", "optimize_for_inference", "InferenceModel"]


def has_onednn_pointwise() -> bool:
    """True when PyTorch has oneDNN's fused convolution + pointwise op (``mkldnn._convolution_pointwise``)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = has_onednn_pointwise()

# C_in * C_out from which a temporal conv takes the GEMM path (measured: 1024x256 and wider gain 10-40%,
# 512x128 breaks even, thinner layers lose).
_TEMPORAL_GEMM_MIN_MACS_PER_POSITION = 1024 * 256


class FusedConv3d(nn.Module):
    """``act(conv(x) [+ residual])`` for an inference-only Conv3d with its BN folded into weight and bias.

    Args:
        conv: the convolution (its weights are copied).
        bn: the BN that follows it, folded in with its running statistics (None: no BN).
        relu: apply ReLU at the end.
    """

    taps: Tensor

    def __init__(self, conv: nn.Conv3d, bn: nn.Module | None, *, relu: bool):
        super().__init__()
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0, 0])
        # BN with running statistics: (conv(x) - mean) / sqrt(var + eps) * gamma + beta, folded into conv
        if bn is not None:
            if not isinstance(bn, _BatchNorm) or bn.running_mean is None or bn.running_var is None:
                raise TypeError(f"FusedConv3d folds a BatchNorm with running statistics, got {bn!r}")
            # folded in float64 and rounded once: in fp32, weight * gamma / sqrt(var + eps) rounds ~3 times per
            # weight, and a deep random-weight R101 amplifies weight perturbations ~250x at its logits
            dtype = weight.dtype
            weight, bias = fuse_conv_bn_weights(
                weight.double(), bias.double(), bn.running_mean.double(), bn.running_var.double(), bn.eps,
                bn.weight.detach().double(), bn.bias.detach().double(),
            )
            weight, bias = weight.to(dtype), bias.to(dtype)
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride = [int(s) for s in conv.stride]
        self.padding = [int(p) for p in conv.padding]  # type: ignore[union-attr]
        self.dilation = [int(d) for d in conv.dilation]
        self.groups = conv.groups
        self.relu = relu
        self.in_place = True  # whether accumulate_ may be used (off while Int8InferenceModel calibrates)
        # Wide temporal convs [k,1,1] (conv ``a`` of Slow res4/res5) run faster as k shifted GEMMs through
        # MKL than as one oneDNN conv (~82 against ~60 GMAC/s on one AVX-512 core); thin ones do not.
        kt, kh, kw = weight.shape[2:]
        c_out, c_in = weight.shape[:2]
        self.temporal_gemm = (
            kt > 1
            and (kh, kw) == (1, 1)
            and self.stride == [1, 1, 1]
            and self.dilation == [1, 1, 1]
            and self.padding == [kt // 2, 0, 0]
            and kt % 2 == 1
            and self.groups == 1
            and c_in * c_out >= _TEMPORAL_GEMM_MIN_MACS_PER_POSITION
        )
        # (k, C_in, C_out): tap k multiplies frame t + k - k//2; only used on the temporal-GEMM path
        self.register_buffer(
            "taps", self.weight.detach()[:, :, :, 0, 0].permute(2, 1, 0).contiguous() if self.temporal_gemm
            else torch.empty(0, device=weight.device), persistent=False,
        )

    def _temporal_gemm_forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """[k,1,1] conv as k GEMMs over time-shifted row blocks of the channels-last input (N, C, T, H, W)."""
        n, c_in, t, h, w = x.shape
        rows = x.permute(0, 2, 3, 4, 1).reshape(n, t, h * w, c_in)  # a view when x is channels-last
        taps = self.taps.to(x.dtype)
        half = taps.shape[0] // 2
        out = torch.empty(n, t, h, w, taps.shape[2], dtype=x.dtype, device=x.device)
        flat = out.view(n, t, h * w, -1)
        for i in range(n):
            # centre tap with the bias, then the shifted taps accumulated in place (GEMM with beta = 1)
            torch.addmm(bias, rows[i].reshape(t * h * w, c_in), taps[half], out=flat[i].view(t * h * w, -1))
            for k in range(taps.shape[0]):
                shift = k - half
                if k == half or abs(shift) >= t:
                    continue
                dst = flat[i, max(0, -shift) : t - max(0, shift)].reshape(-1, flat.shape[-1])
                src = rows[i, max(0, shift) : t + min(0, shift)].reshape(-1, c_in)
                torch.addmm(dst, src, taps[k], out=dst)
        y = out.permute(0, 4, 1, 2, 3)  # (N, C_out, T, H, W) in channels-last-3d memory
        return F.relu_(y) if self.relu else y

    def can_accumulate(self, x: Tensor, residual: Tensor) -> bool:
        """Whether :meth:`accumulate_` applies: a 1x1x1 conv on CPU with channels-last input and residual."""
        return (
            self.in_place
            and self.weight.shape[2:] == (1, 1, 1)
            and self.stride == [1, 1, 1]
            and self.groups == 1
            and x.device.type == "cpu"
            and x.dtype == residual.dtype == self.weight.dtype
            and x.is_contiguous(memory_format=torch.channels_last_3d)
            and residual.is_contiguous(memory_format=torch.channels_last_3d)
            and residual.shape == (x.shape[0], self.weight.shape[0], *x.shape[2:])
        )

    def accumulate_(self, x: Tensor, residual: Tensor, *, add_bias: bool = True) -> Tensor:
        """``act(conv(x) + residual)`` written into ``residual`` (overwritten, and returned): one GEMM that
        accumulates into the residual's rows. A fresh output would cost page faults on every call, which
        dominate the thin, memory-bound layers (64 -> 256 channels: 2x faster in place). ``add_bias=False``
        when the bias was already added to ``residual`` (a projection shortcut carries it)."""
        rows = _rows(residual).view(-1, residual.shape[1])
        torch.addmm(rows, _rows(x).view(-1, x.shape[1]), self.weight.view(self.weight.shape[0], -1).t(), out=rows)
        if add_bias:
            rows.add_(self.bias)
        if self.relu:
            rows.relu_()
        return residual

    def forward(self, x: Tensor, residual: Tensor | None = None, *, bias: Tensor | None = None) -> Tensor:
        """``x``: (N, C_in, T, H, W); ``residual``: None or the conv output's shape; ``bias``: (C_out,) used
        instead of the folded bias."""
        bias = self.bias if bias is None else bias
        if (
            self.temporal_gemm
            and residual is None
            and x.device.type == "cpu"
            and x.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            return self._temporal_gemm_forward(x, bias)
        if _ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32:
            conv_args = (self.weight, bias, self.padding, self.stride, self.dilation, self.groups)
            unary = "relu" if self.relu else "none"
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(x, *conv_args, unary, [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, *conv_args, "add", None, unary if self.relu else None, [], ""
            )
        y = F.conv3d(x, self.weight, bias, self.stride, self.padding, self.dilation, self.groups)
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
        if self.shortcut is not None:
            # the projection shortcut carries conv c's bias too, so the in-place GEMM of c adds none
            self.shortcut_bias = nn.Parameter(self.shortcut.bias.detach() + self.c.bias.detach(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, H, W) -> (N, C_out, T, H/s, W/s). Consumes ``x``: with an identity shortcut and the
        channels-last CPU path, the output is written into ``x``'s memory (blocks only ever receive
        intermediate features of the fused model, which nothing reads afterwards)."""
        inner = self.b(self.a(x))
        if self.shortcut is None:
            if self.c.can_accumulate(inner, x):
                return self.c.accumulate_(inner, x)
            return self.c(inner, residual=x)
        shortcut = self.shortcut(x, bias=self.shortcut_bias)  # shortcut + c's bias
        if self.c.can_accumulate(inner, shortcut):
            return self.c.accumulate_(inner, shortcut, add_bias=False)
        return self.c(inner, residual=shortcut, bias=torch.zeros_like(self.c.bias))


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
    """``x + bn(conv_out(attention(x)))`` with theta on x, phi and g as one conv on the pooled x, the BN folded
    into ``conv_out``, and the residual added by the last GEMM; everything in channels-last rows (positions x
    channels), so no layout conversion.

    With the ``dot_product`` instantiation, (theta phi^T / P) g = theta (phi^T g / P) and the output
    projection folds into that C_inner x C_inner product: out = x + theta M + b with M = (phi^T g / P) W_out^T.
    Per block that replaces the THW x P affinity (two GEMMs of THW * P * C_inner) and conv_out by one
    C_inner x C_inner product and one GEMM, ~20% fewer FLOPs, and the same result to float rounding.
    """

    def __init__(self, block: NonLocal):
        super().__init__()
        self.instantiation = block.instantiation
        self.inner_channels = block.inner_channels
        self.theta = FusedConv3d(block.conv_theta, None, relu=False)
        like = block.conv_phi.weight  # on the model's device (a CUDA model's fused weights must be CUDA too)
        phi_g = nn.Conv3d(
            block.conv_phi.in_channels, 2 * block.inner_channels, kernel_size=1, device=like.device, dtype=like.dtype
        )
        assert phi_g.bias is not None and block.conv_phi.bias is not None and block.conv_g.bias is not None
        with torch.no_grad():
            phi_g.weight.copy_(torch.cat([block.conv_phi.weight, block.conv_g.weight]))
            phi_g.bias.copy_(torch.cat([block.conv_phi.bias, block.conv_g.bias]))
        self.phi_g = FusedConv3d(phi_g, None, relu=False)
        self.pool = copy.deepcopy(block.pool)
        out = FusedConv3d(block.conv_out, block.bn, relu=False)  # BN folded
        self.out_weight_t = nn.Parameter(out.weight.detach()[:, :, 0, 0, 0].t().contiguous(), requires_grad=False)
        self.out_bias = nn.Parameter(out.bias.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> same shape, channels-last-3d."""
        n, c, t, h, w = x.shape
        ci = self.inner_channels
        x = x.contiguous(memory_format=torch.channels_last_3d)
        theta = _rows(self.theta(x))  # (N, THW, Ci)
        pooled = x if self.pool is None else self.pool(x).contiguous(memory_format=torch.channels_last_3d)
        phi_g = _rows(self.phi_g(pooled))  # (N, P, 2 Ci)
        phi, g = phi_g[..., :ci], phi_g[..., ci:]
        residual = _rows(x)  # (N, THW, C), a view
        weight_t = self.out_weight_t.to(x.dtype)
        if self.instantiation == "dot_product":
            inner = torch.bmm(phi.transpose(1, 2), g).div_(phi.shape[1])  # (N, Ci, Ci)
            out = torch.baddbmm(residual, theta, torch.matmul(inner, weight_t))  # (N, THW, C)
        else:
            affinity = torch.softmax(torch.bmm(theta, phi.transpose(1, 2)) * ci**-0.5, dim=2)  # (N, THW, P)
            out = torch.baddbmm(residual, torch.bmm(affinity, g), weight_t.expand(n, -1, -1))
        out = out.add_(self.out_bias.to(x.dtype))
        return out.view(n, t, h, w, c).permute(0, 4, 1, 2, 3)  # channels-last-3d view


def _rows(x: Tensor) -> Tensor:
    """(N, C, T, H, W) channels-last-3d -> (N, THW, C) view (copies only if ``x`` is not channels-last)."""
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1])


def _is_identity_pool(module: nn.Module) -> bool:
    """A max-pool of kernel 1, stride 1, no padding (the [1,1,1] pathway pools of the AVA models): a copy."""
    if not isinstance(module, nn.MaxPool3d):
        return False
    as_list = [module.kernel_size, module.stride, module.padding, module.dilation]
    values = [v if isinstance(v, tuple | list) else (v,) for v in as_list]
    return all(k == 1 for k in values[0]) and all(k == 1 for k in values[1]) and all(p == 0 for p in values[2])


class _FusedRoIHead(RoIHead):
    """:class:`RoIHead` with the temporal average as a mean over T (AvgPool3d on channels-last features
    copies the whole (C, T, H, W) map first); the same submodules as the original head (still an RoIHead,
    which the model's forward checks)."""

    def __init__(self, head: RoIHead):
        nn.Module.__init__(self)
        self.num_pathways = head.num_pathways
        self.temporal_pool_sizes = list(head.temporal_pool_sizes)
        for name, child in head.named_children():
            self.add_module(name, child)

    def forward(self, features: Sequence[Tensor], boxes: Tensor) -> Tensor:
        """``features[p]``: (B, C_p, T_p, h, w); ``boxes``: (N, 5) -> (N, num_classes) logits."""
        head = self
        pooled = []
        for p, x in enumerate(features):
            if x.shape[2] != head.temporal_pool_sizes[p]:
                raise ValueError(
                    f"RoI head: pathway {p} has {x.shape[2]} frames after the backbone, the head was built "
                    f"for {head.temporal_pool_sizes[p]} (DATA.NUM_FRAMES sets it)"
                )
            x = x.mean(dim=2).contiguous()  # (B, C_p, h, w)
            x = getattr(head, f"s{p}_roi")(x.float(), boxes.float()).to(x.dtype)  # (N, C_p, R, R)
            pooled.append(x.amax(dim=(2, 3)))  # MaxPool2d(R) over the R x R cells
        return head.projection(torch.cat(pooled, dim=1))


_FUSED = {
    RoIHead: _FusedRoIHead,
    BasicStem: _FusedStem,
    ResBlock: _FusedResBlock,
    FastToSlowFusion: _FusedFusion,
    NonLocal: _FusedNonLocal,
}


def _fuse_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        replacement = _FUSED.get(type(child))
        if _is_identity_pool(child):
            setattr(module, name, nn.Identity())
        elif replacement is not None:
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


class Int8Conv3d(nn.Module):
    """A :class:`FusedConv3d` as an int8 convolution (PyTorch's x86 quantized engine: fbgemm with VNNI): the
    input quantised per tensor (quint8, calibrated range), weights per output channel (qint8, symmetric), the
    conv's output requantised to its calibrated range and dequantised to fp32, where the residual add and the
    ReLU run. ~3-5x faster than the fp32 oneDNN conv per layer on this CPU; the quantize / dequantize passes
    around it are memory-bound.

    Args:
        conv: the fp32 fused conv (its folded weight and bias).
        input_range: (min, max) of the conv's input seen in calibration.
        output_range: (min, max) of the conv's output before residual and ReLU (with the bias it is called
            with). With a ReLU and no residual the range starts at 0: the requantisation's clamp is the ReLU,
            and the whole 8 bits cover the values kept.
        residual_input: the conv is called with a residual (its ReLU comes after the add, so its own output
            keeps negative values).
        quantized_output: return the quint8 output itself (only for a ReLU conv called without residual whose
            consumer is another :class:`Int8Conv3d`, e.g. convs a and b of a residual block): saves a
            dequantize and a quantize pass over the tensor.
    """

    def __init__(
        self,
        conv: FusedConv3d,
        *,
        input_range: tuple[float, float],
        output_range: tuple[float, float],
        quantized_output: bool = False,
        residual_input: bool = False,
    ):
        super().__init__()
        from torch.ao.nn.quantized import Conv3d as QuantizedConv3d

        weight = conv.weight.detach().contiguous()
        c_out = weight.shape[0]
        self.relu = conv.relu
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)  # read by the fused blocks
        self.input_scale, self.input_zero_point = _quint8_affine(*input_range)
        qconv = QuantizedConv3d(
            weight.shape[1] * conv.groups, c_out, tuple(weight.shape[2:]), stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
        )
        scales = (weight.abs().amax(dim=(1, 2, 3, 4)).double() / 127).clamp(min=1e-12)
        qweight = torch.quantize_per_channel(weight, scales, torch.zeros(c_out, dtype=torch.long), 0, torch.qint8)
        qconv.set_weight_bias(qweight, self.bias.detach())
        low, high = output_range
        relu_output = conv.relu and not residual_input
        qconv.scale, qconv.zero_point = _quint8_affine(0.0 if relu_output else low, high)
        self.qconv = qconv
        self.quantized_output = quantized_output and relu_output

    def can_accumulate(self, x: Tensor, residual: Tensor) -> bool:
        """Never: the int8 conv writes a fresh output (see :meth:`FusedConv3d.can_accumulate`)."""
        return False

    def forward(self, x: Tensor, residual: Tensor | None = None, *, bias: Tensor | None = None) -> Tensor:
        """As :meth:`FusedConv3d.forward` (``bias``, if given, replaces the folded bias)."""
        if x.is_quantized:  # the quint8 output of the previous int8 conv (it carries its own scale)
            xq = x
        else:
            x = x.contiguous(memory_format=torch.channels_last_3d)
            # a static range: quantize_per_tensor_dynamic (min/max per call) made SlowFast R50 2x slower
            xq = torch.quantize_per_tensor(x, self.input_scale, self.input_zero_point, torch.quint8)
        if self.quantized_output and residual is None and bias is None:
            return self.qconv(xq)  # ReLU by the clamp at zero point 0
        y = self.qconv(xq).dequantize()
        if bias is not None:
            y = y.add_((bias - self.bias).view(1, -1, 1, 1, 1))
        if residual is not None:
            y = y.add_(residual)
        return F.relu_(y) if self.relu else y


# PyTorch 2.1x warns that its quantized tensors are deprecated (pytorch/pytorch#184982); the int8 mode uses
# them while they exist, and the warning says nothing a user of this package can act on
_QUANTIZED_DEPRECATION = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"


def _quint8_affine(low: float, high: float) -> tuple[float, int]:
    """quint8 scale and zero point covering [min(low, 0), max(high, 0)] (0 exactly representable)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255
    return scale, int(round(-low / scale))


class Int8InferenceModel(InferenceModel):
    """An :class:`InferenceModel` whose backbone convs turn int8 after calibration: the first
    ``calibration_calls`` forwards run in fp32 (their outputs are the fp32 model's) while each conv's input
    and output ranges are recorded; then every :class:`FusedConv3d` except the stem's (3 input channels) and
    the non-local blocks' becomes an :class:`Int8Conv3d`. CPU only (x86 quantized engine).

    Calibrate on real clips of the data to be scored: the ranges bound what int8 can represent, and
    activations beyond them are clipped.
    """

    def __init__(self, model: nn.Module, *, calibration_calls: int):
        super().__init__(model, dtype=torch.float32, channels_last=True)
        if calibration_calls < 1:
            raise ValueError(f"int8 calibration needs at least one call, got {calibration_calls}")
        self.calibration_calls = calibration_calls
        self.calls = 0
        self.ranges: dict[str, list[float]] = {}

    def _calibration_targets(self) -> dict[str, FusedConv3d]:
        return {
            name: m for name, m in self.model.named_modules()
            if isinstance(m, FusedConv3d) and "nonlocal" not in name and m.weight.shape[1] * m.groups > 3
        }

    def forward(self, inputs: Sequence[Tensor], boxes: Tensor | None = None) -> Tensor:
        """As :meth:`InferenceModel.forward`; calibrates during the first ``calibration_calls`` calls."""
        if self.calls >= self.calibration_calls:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_QUANTIZED_DEPRECATION)
                return super().forward(inputs, boxes)
        targets = self._calibration_targets()
        hooks = [conv.register_forward_hook(self._record(name), with_kwargs=True) for name, conv in targets.items()]
        for conv in targets.values():
            conv.in_place = False  # every conv through forward, where the hook sees it
        try:
            out = super().forward(inputs, boxes)
        finally:
            for hook in hooks:
                hook.remove()
            for conv in targets.values():
                conv.in_place = True
        self.calls += 1
        if self.calls == self.calibration_calls:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_QUANTIZED_DEPRECATION)
                self._convert()
        return out

    def _record(self, name: str) -> Any:
        def hook(conv: FusedConv3d, args: tuple[Any, ...], kwargs: dict[str, Any], out: Tensor) -> None:
            x = args[0]
            bias = kwargs.get("bias")
            # the conv alone (the fused blocks may add the residual and ReLU inside the same op)
            y = F.conv3d(x, conv.weight, conv.bias if bias is None else bias, conv.stride, conv.padding,
                         conv.dilation, conv.groups)
            r = self.ranges.setdefault(name, [0.0, 0.0, 0.0, 0.0])
            r[0], r[1] = min(r[0], x.min().item()), max(r[1], x.max().item())
            r[2], r[3] = min(r[2], y.min().item()), max(r[3], y.max().item())
        return hook

    def _convert(self) -> None:
        engines = torch.backends.quantized.supported_engines
        engine = next((e for e in ("x86", "fbgemm", "onednn") if e in engines), None)
        if engine is None:
            raise RuntimeError(f"int8 inference needs PyTorch's x86 quantized engine; this build has {engines}")
        torch.backends.quantized.engine = engine
        targets = self._calibration_targets()
        for name, conv in targets.items():
            parent_name, _, child = name.rpartition(".")
            r = self.ranges[name]
            # convs a and b of a residual block feed only the next conv: keep their outputs quint8 if it is int8
            consumer = {"a": "b", "b": "c"}.get(child)
            chained = (
                isinstance(self.model.get_submodule(parent_name), _FusedResBlock)
                and consumer is not None
                and f"{parent_name}.{consumer}" in targets
            )
            in_block = isinstance(self.model.get_submodule(parent_name), _FusedResBlock)
            int8 = Int8Conv3d(
                conv, input_range=(r[0], r[1]), output_range=(r[2], r[3]), quantized_output=chained,
                residual_input=in_block and child == "c",
            )
            setattr(self.model.get_submodule(parent_name), child, int8)


def optimize_for_inference(
    model: nn.Module,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    precision: str = "fp32",
    calibration_calls: int = 8,
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
        precision: ``"fp32"``, or ``"int8"`` (CPU): an :class:`Int8InferenceModel`, int8 backbone convs after
            ``calibration_calls`` fp32 calls that record activation ranges (1.8-2.5x faster than fp32 on CPU;
            scores move by up to ~0.1, see ``tests/benchmarks/bench_model.py --precision int8`` and
            ``tests/benchmarks/bench_int8_synth.py``).
        calibration_calls: forwards calibrated in fp32 before the int8 switch (``precision="int8"``).
    """
    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}")
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
    if precision == "int8":
        if device.type != "cpu" or dtype != torch.float32 or not channels_last:
            raise ValueError("precision 'int8' runs on CPU, from float32, channels-last")
        return Int8InferenceModel(optimized, calibration_calls=calibration_calls)
    return InferenceModel(optimized, dtype=dtype, channels_last=channels_last)
