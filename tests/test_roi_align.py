"""RoIAlign as matrix products (slowfast_det.roi_align): the same function and gradient as torchvision's op,
and where training uses it (the RoI head on CPU, the demo detector's box pooler)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from slowfast_det.models.heads import RoIHead
from slowfast_det.roi_align import roi_align_gemm


def _boxes(n: int, height: int, width: int, scale: float, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Boxes of every size, partly or wholly outside the map, degenerate, on every image of the batch."""
    size = torch.tensor([width / scale, height / scale])
    corner = torch.rand(n, 2, generator=gen) * size * 1.3 - 0.15 * size
    extent = torch.rand(n, 2, generator=gen) ** 2 * size
    boxes = torch.cat([torch.randint(0, batch, (n, 1), generator=gen).float(), corner, corner + extent], dim=1)
    boxes[:3, 3:] = boxes[:3, 1:3]  # zero width and height
    boxes[3] = torch.tensor([batch - 1.0, -40.0, -40.0, -30.0, -30.0])  # wholly outside
    return boxes


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize(("shape", "scale"), [((2, 16, 30, 50), 0.25), ((3, 24, 5, 7), 1 / 16)])
def test_gemm_roi_align_equals_torchvision_with_its_gradient(
    aligned: bool, sampling_ratio: int, shape: tuple[int, int, int, int], scale: float
) -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(*shape, generator=gen)
    boxes = _boxes(150, shape[2], shape[3], scale, shape[0], gen)
    upstream = torch.randn(150, shape[1], 7, 7, generator=gen)
    results = []
    for op in (roi_align, roi_align_gemm):
        x = features.clone().requires_grad_(True)
        out = op(x, boxes, 7, scale, sampling_ratio, aligned)
        out.backward(upstream)
        assert x.grad is not None
        results.append((out.detach(), x.grad))
    (expected, expected_grad), (got, grad) = results
    assert got.shape == expected.shape == (150, shape[1], 7, 7)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-5)
    assert grad.abs().sum() > 0
    assert roi_align_gemm(features, boxes[:0], 7, scale, sampling_ratio, aligned).shape == (0, shape[1], 7, 7)


def test_roi_head_trains_with_the_gemm_path_and_infers_with_torchvision() -> None:
    """Training on CPU takes the matrix-product RoIAlign, inference torchvision's kernel; same logits and
    gradients either way (dropout off)."""
    gen = torch.Generator().manual_seed(1)
    head = RoIHead(in_channels=[16, 4], num_classes=5, temporal_pool_sizes=[2, 8], spatial_scale=1 / 8)
    feats = [torch.randn(3, 16, 2, 10, 10, generator=gen), torch.randn(3, 4, 8, 10, 10, generator=gen)]
    boxes = _boxes(12, 10, 10, 1 / 8, 3, gen)
    calls: list[str] = []
    original = torch.ops.torchvision.roi_align
    outs = {}
    for mode in ("train", "eval"):
        head.train(mode == "train")
        xs = [f.clone().requires_grad_(True) for f in feats]
        torch.ops.torchvision.roi_align = _counting(original, calls, mode)  # type: ignore[attr-defined]
        try:
            logits = head(xs, boxes)
        finally:
            torch.ops.torchvision.roi_align = original  # type: ignore[attr-defined]
        logits.sum().backward()
        outs[mode] = (logits.detach(), [x.grad for x in xs])
    assert calls == ["eval", "eval"]  # one torchvision call per pathway, at inference only
    torch.testing.assert_close(outs["train"][0], outs["eval"][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(outs["train"][1], outs["eval"][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _counting(op: object, calls: list[str], mode: str) -> object:
    def wrapped(*args: object, **kwargs: object) -> object:
        calls.append(mode)
        return op(*args, **kwargs)  # type: ignore[operator]

    return wrapped
