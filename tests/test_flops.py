"""FLOPs: the SlowFast paper's Table 2 (multiply-adds of one 256x256 view), counted on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slowfast_det.config import load_config
from slowfast_det.models import build_model, count_gflops

KINETICS = Path(__file__).resolve().parents[1] / "configs" / "Kinetics"

# Feichtenhofer et al., "SlowFast Networks for Video Recognition", Table 2 (GFLOPs x views; one view here).
TABLE_2 = {
    "SLOWFAST_4x16_R50.yaml": 36.1,
    "SLOWFAST_8x8_R50.yaml": 65.7,
    "SLOWFAST_8x8_R101_50_50.yaml": 106.0,
    "SLOWFAST_16x8_R101_50_50.yaml": 213.0,
    "SLOW_4x16_R50.yaml": 27.3,
    "SLOW_8x8_R50.yaml": 54.5,
}


@pytest.mark.parametrize("name", sorted(TABLE_2))
def test_gflops_match_the_paper(name: str) -> None:
    cfg = load_config(KINETICS / name)
    frames, size = cfg.DATA.NUM_FRAMES, 256
    with torch.device("meta"):
        model = build_model(cfg).eval()
        fast = torch.empty(1, 3, frames, size, size)
        if cfg.MODEL.ARCH == "slowfast":
            inputs = [fast[:, :, :: cfg.SLOWFAST.ALPHA], fast]
        else:
            inputs = [fast]
    assert count_gflops(model, (inputs,)) == pytest.approx(TABLE_2[name], rel=0.015)


def test_count_gflops_counts_multiply_adds() -> None:
    conv = nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    linear = nn.Linear(10, 4)
    model = nn.Sequential(
        conv, nn.BatchNorm3d(8), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 10), linear
    )
    x = torch.randn(2, 3, 4, 32, 32)
    expected = 2 * 8 * 4 * 16 * 16 * (3 * 3 * 7 * 7) + 2 * (8 * 10 + 10 * 4)  # outputs x kernel MACs; BN free
    assert count_gflops(model, (x,)) * 1e9 == pytest.approx(expected)
