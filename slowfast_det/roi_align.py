"""RoIAlign as small matrix products: the same function as ``torchvision.ops.roi_align``, faster on CPU.

RoIAlign's bilinear sampling is separable: the average over a bin's gh x gw samples of bilinear weights is
``Ay[bin_y, row] * Ax[bin_x, col]`` summed over rows and columns, with torchvision's clamping and out-of-range
rules applied per axis (:func:`roi_axis_weights`). So each RoI's (R, R) output per channel is ``Ay @ crop @ Ax^T``
over the crop of rows and columns its samples touch.

- :func:`roi_align_channels_last`: inference on channels-last maps, two GEMMs per RoI read in place (the fast
  detectron2 path, :mod:`slowfast_det.detection.fused`);
- :func:`roi_align_gemm`: differentiable, batched over RoIs, for training the RoI head on CPU, where
  torchvision's backward is a scalar loop (forward + backward 6x faster at the demo's head sizes: 8 clips,
  24 RoIs, 10x10 maps). Autograd gives the gradient with respect to the features; like torchvision, none flows
  to the boxes. On a detector's large FPN maps the gather of padded crops costs about what it saves (measured:
  a detector training step was not faster), so detectron2 keeps torchvision's op.

Both equal torchvision's results to float rounding (``tests/test_roi_align.py``, ``tests/test_detectron2.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["roi_align_channels_last", "roi_align_gemm", "roi_axis_weights"]


def roi_align_gemm(
    features: Tensor,
    rois: Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """``torchvision.ops.roi_align`` (same arguments, same result to float rounding), differentiable with
    respect to ``features``, as two batched matrix products over all RoIs.

    Args:
        features: (B, C, H, W).
        rois: (N, 5) ``batch_index, x1, y1, x2, y2`` in input pixels (scaled by ``spatial_scale``).
        output_size: R (square output).
        spatial_scale: feature pixels per input pixel.
        sampling_ratio: samples per bin and axis; 0: ``ceil(roi size / R)``, per RoI (adaptive).
        aligned: subtract half a pixel from the scaled box (detectron2's ROIAlignV2).
    Returns:
        (N, C, R, R).
    """
    b, c, h, w = features.shape
    n, r = rois.shape[0], output_size
    if n == 0:
        return features.new_zeros(0, c, r, r)
    with torch.no_grad():
        (ay, y0, _), (ax, x0, _) = _box_axis_weights(rois, r, spatial_scale, sampling_ratio, aligned, h, w)
        sy, sx = ay.shape[2], ax.shape[2]
        # each RoI's crop padded to the largest; the padding rows and columns (clamped into the map) have zero
        # weight
        rows = (y0[:, None] + torch.arange(sy)).clamp(max=h - 1)
        cols = (x0[:, None] + torch.arange(sx)).clamp(max=w - 1)
        batch = rois[:, 0].detach().long()
    crops = features.permute(0, 2, 3, 1)[batch[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, sy, sx, C)
    ay, ax = ay.to(features.dtype), ax.to(features.dtype)
    by_rows = torch.bmm(ay, crops.reshape(n, sy, sx * c)).view(n, r, sx, c)  # (N, R, sx, C)
    return torch.einsum("nsx,nrxc->ncrs", ax, by_rows)


def roi_align_channels_last(
    features: Tensor,
    rois: Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """``torchvision.ops.roi_align`` (same arguments, same result to float rounding) for channels-last features,
    as two small GEMMs per RoI instead of a scalar loop per channel.

    RoIAlign's bilinear sampling is separable: the average over a bin's gh x gw samples of bilinear weights is
    ``Ay[bin_y, row] * Ax[bin_x, col]`` summed over rows and columns, with torchvision's clamping and
    out-of-range rules applied per axis. So each RoI's (R, R, C) output is ``Ay @ crop @ Ax^T`` over the crop
    of rows and columns its samples touch, read in place as a strided matrix of channels-last rows.

    Args:
        features: (B, C, H, W), ideally channels-last (otherwise one copy).
        rois: (N, 5) ``batch_index, x1, y1, x2, y2`` in input pixels (scaled by ``spatial_scale``).
        output_size: R (square output).
        spatial_scale: feature pixels per input pixel.
        sampling_ratio: samples per bin and axis; 0: ``ceil(roi size / R)``, per RoI (adaptive).
        aligned: subtract half a pixel from the scaled box (detectron2's ROIAlignV2).
    Returns:
        (N, C, R, R) in channels-last memory (a permuted view of (N, R, R, C)).
    """
    b, c, h, w = features.shape
    n, r = rois.shape[0], output_size
    out = torch.empty(n, r, r, c, dtype=features.dtype, device=features.device)
    if n == 0:
        return out.permute(0, 3, 1, 2)
    nhwc = features.permute(0, 2, 3, 1)
    if not nhwc.is_contiguous():
        nhwc = nhwc.contiguous()
    batch = rois[:, 0].long()
    (ay, y0, hc), (ax, x0, wc) = _box_axis_weights(rois, r, spatial_scale, sampling_ratio, aligned, h, w)
    ay, ax = ay.to(features.dtype), ax.to(features.dtype)
    rows_l, cols_l, hc_l, wc_l, batch_l = y0.tolist(), x0.tolist(), hc.tolist(), wc.tolist(), batch.tolist()
    for i in range(n):
        y, x, ch, cw = rows_l[i], cols_l[i], hc_l[i], wc_l[i]
        # the crop as a (ch, cw*C) matrix view of the feature map (row stride W*C): no copy
        crop = nhwc[batch_l[i], y : y + ch, x : x + cw].reshape(ch, cw * c)
        tmp = torch.mm(ay[i, :, :ch], crop).view(r, cw, c)  # rows contracted: (R, cw, C)
        torch.bmm(ax[i, :, :cw].expand(r, r, cw), tmp, out=out[i])  # columns: (R, R, C)
    return out.permute(0, 3, 1, 2)


def _box_axis_weights(
    rois: Tensor, r: int, spatial_scale: float, sampling_ratio: int, aligned: bool, h: int, w: int
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """:func:`roi_axis_weights` of the y and x axes of (N, 5) ``rois`` on an h x w map, in fp32 exactly as
    torchvision's kernel samples."""
    rois = rois.detach().to(torch.float32)
    offset = 0.5 if aligned else 0.0
    return (
        roi_axis_weights(rois[:, 2], rois[:, 4], spatial_scale, offset, aligned, r, sampling_ratio, h),
        roi_axis_weights(rois[:, 1], rois[:, 3], spatial_scale, offset, aligned, r, sampling_ratio, w),
    )


def roi_axis_weights(
    lo: Tensor, hi: Tensor, scale: float, offset: float, aligned: bool, r: int, sampling_ratio: int, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One axis of RoIAlign: (N, R, S) weights of the S = largest crop's pixels per output bin (each bin's
    average of bilinear weights over its samples, torchvision's clamping rules), the crop's first pixel (N,)
    and each RoI's crop length (N,)."""
    start = lo * scale - offset
    length = hi * scale - offset - start
    if not aligned:
        length = length.clamp(min=1.0)
    bin_size = length / r
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(length / r).long()
    g = max(int(grid.max()), 1)
    i = torch.arange(g, dtype=torch.float32)
    # (N, R, g) sample coordinates: start + p * bin + (i + 0.5) * bin / grid
    p = torch.arange(r, dtype=torch.float32)
    grid_f = grid.clamp(min=1).to(torch.float32)
    coord = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]) + (i + 0.5)[None, None, :] * (
        bin_size / grid_f
    )[:, None, None]
    used = (i[None, None, :] < grid[:, None, None]) & (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.long()  # floor of a non-negative value
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low
    inv = 1.0 - frac
    weight = used.to(torch.float32) / grid_f[:, None, None]
    big = torch.iinfo(torch.long).max
    first = torch.where(used, low, big).amin(dim=(1, 2))
    first = torch.where(first == big, 0, first)  # no sample: crop of one pixel with zero weights
    last = torch.where(used, high, -1).amax(dim=(1, 2))
    crop = (last - first + 1).clamp(min=1)
    s = int(crop.max())
    out = torch.zeros(lo.shape[0], r, s, dtype=torch.float32)
    out.scatter_add_(2, (low - first[:, None, None]).clamp(0, s - 1), inv * weight)
    out.scatter_add_(2, (high - first[:, None, None]).clamp(0, s - 1), frac * weight)
    return out, first, crop
