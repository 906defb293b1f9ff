"""SlowFast / Slow models: configs, PySlowFast layout, RoI head against a naive per-box reference, batching,
modes, BN freezing, init, input errors, and the optimised inference path."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn

from slowfast_det.builders import model_kwargs
from slowfast_det.config import ConfigError, get_default_config, load_config
from slowfast_det.models import RoIHead, SlowFast, build_model, freeze_bn
from slowfast_det.models.fused import FusedConv3d, optimize_for_inference

REPO = Path(__file__).resolve().parents[1]
AVA_R101 = REPO / "configs/AVA/SLOWFAST_32x2_R101_50_50.yaml"
AVA_SLOW = REPO / "configs/AVA/SLOW_4x16_R50.yaml"
TINY = ["RESNET.WIDTH_PER_GROUP", "8", "MODEL.NUM_CLASSES", "5"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(config: Path, *extra: str, seed: int = 0) -> SlowFast:
    """A full-depth model at width 8 with random, non-trivial BN statistics (eval mode)."""
    cfg = load_config(config, [*TINY, *extra])
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomize_bn(model, seed)
    return model.eval()


def randomize_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            assert m.running_mean is not None and m.running_var is not None
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.4 + 0.2)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def slowfast_clips(
    batch: int, frames: int = 8, alpha: int = 4, size: int = 48, seed: int = 1
) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    fast = torch.randn(batch, 3, frames, size, size, generator=gen)
    return [fast[:, :, ::alpha].contiguous(), fast]


# ---------------------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------------------


def test_every_yaml_in_configs_loads() -> None:
    files = sorted((REPO / "configs").rglob("*.yaml"))
    assert len(files) >= 11
    for path in files:
        load_config(path)


def test_model_zoo_configs_list_only_keys_that_differ_from_the_defaults() -> None:
    defaults = get_default_config()
    for path in sorted((REPO / "configs").glob("AVA/*.yaml")) + sorted(
        (REPO / "configs").glob("Kinetics/*.yaml")
    ):
        cfg = load_config(path)
        for dotted in leaf_keys(yaml.safe_load(path.read_text())):
            node_d, node_c = defaults, cfg
            for part in dotted.split("."):
                node_d, node_c = node_d[part], node_c[part]
            assert node_d != node_c, f"{path.name}: {dotted} repeats the default {node_d!r}"


def leaf_keys(raw: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in raw.items():
        keys.extend(leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return keys


def test_every_config_builds(pyslowfast_configs: Path) -> None:
    files = sorted((REPO / "configs").rglob("*.yaml")) + sorted(pyslowfast_configs.rglob("*.yaml"))
    built = set()
    for path in files:
        cfg = load_config(path)
        kwargs = model_kwargs(cfg)
        key = repr(sorted(kwargs.items()))
        if key in built:  # the same model as a config already built (e.g. PySlowFast's c2/ copies)
            continue
        built.add(key)
        with torch.device("meta"):
            model = SlowFast(**kwargs)
        assert isinstance(model.head, RoIHead) == cfg.DETECTION.ENABLE, path
        assert model.head.projection.out_features == cfg.MODEL.NUM_CLASSES, path
    assert len(built) >= 15


def test_mismatched_model_name_and_arch_is_a_config_error() -> None:
    cfg = load_config(AVA_SLOW, ["MODEL.MODEL_NAME", "SlowFast"])
    with pytest.raises(ConfigError, match="MODEL_NAME 'SlowFast' with MODEL.ARCH 'slow'"):
        build_model(cfg)


# ---------------------------------------------------------------------------------------------------------
# PySlowFast layout (facts from PySlowFast's model builder, slowfast/models/video_model_builder.py)
# ---------------------------------------------------------------------------------------------------------


def test_r101_ava_model_has_pyslowfast_names_and_shapes() -> None:
    with torch.device("meta"):
        model: Any = build_model(load_config(AVA_R101))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "s1.pathway0_stem.conv.weight": (64, 3, 1, 7, 7),
        "s1.pathway1_stem.conv.weight": (8, 3, 5, 7, 7),
        "s1_fuse.conv_f2s.weight": (16, 8, 5, 1, 1),  # kernel FUSION_KERNEL_SZ, C_f -> 2 C_f
        "s2.pathway0_res0.branch1.weight": (256, 80, 1, 1, 1),  # 64 + 16 fused channels in
        "s2.pathway0_res0.branch2.a.weight": (64, 80, 1, 1, 1),  # Slow res2: temporal kernel 1
        "s2.pathway1_res0.branch2.a.weight": (8, 8, 3, 1, 1),  # Fast res2: temporal kernel 3
        "s3.pathway0_res0.branch2.a.weight": (128, 320, 1, 1, 1),
        "s4.pathway0_res0.branch2.a.weight": (256, 640, 3, 1, 1),
        "s4.pathway0_res5.branch2.a.weight": (256, 1024, 3, 1, 1),  # blocks 0-5 temporal ...
        "s4.pathway0_res6.branch2.a.weight": (256, 1024, 1, 1, 1),  # ... 6-22 not
        "s4.pathway0_res22.branch2.c_bn.running_var": (1024,),
        "s4.pathway0_nonlocal6.conv_theta.weight": (512, 1024, 1, 1, 1),
        "s4.pathway0_nonlocal13.conv_out.bias": (1024,),
        "s4.pathway0_nonlocal20.bn.weight": (1024,),
        "s4_fuse.conv_f2s.weight": (256, 128, 5, 1, 1),
        "s5.pathway0_res0.branch1.weight": (2048, 1280, 1, 1, 1),
        "s5.pathway1_res2.branch2.c.weight": (256, 64, 1, 1, 1),  # Fast inner width 8W / 8
        "head.projection.weight": (80, 2048 + 256),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, name
    assert not any("s5_fuse" in k or "pathway1_nonlocal" in k for k in shapes)
    assert sum("nonlocal" in k and k.endswith("conv_theta.weight") for k in shapes) == 3
    # Spatial stride 16, dilation 2 in res5, no bias in backbone convs outside non-local blocks.
    b = model.s5.pathway0_res0.branch2.b
    assert b.stride == (1, 1, 1) and b.dilation == (1, 2, 2) and b.padding == (0, 2, 2) and b.bias is None
    assert model.s3.pathway0_res0.branch2.b.stride == (1, 2, 2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)
    roi = model.head.s0_roi
    assert (roi.output_size, roi.spatial_scale, roi.sampling_ratio, roi.aligned) == ((7, 7), 1 / 16, 0, False)
    assert model.head.s0_tpool.kernel_size == (8, 1, 1) and model.head.s1_tpool.kernel_size == (32, 1, 1)


def test_pathway_pools_are_the_identity() -> None:
    model = tiny_model(AVA_R101, "DATA.NUM_FRAMES", "8")
    for p in range(2):
        pool = getattr(model, f"pathway{p}_pool")
        assert isinstance(pool, nn.MaxPool3d) and pool.kernel_size == (1, 1, 1)


# ---------------------------------------------------------------------------------------------------------
# RoI head against a naive per-box reference
# ---------------------------------------------------------------------------------------------------------


def bilinear(feature: Tensor, y: float, x: float) -> Tensor:
    """torchvision's roi_align sampling: zero outside [-1, size], clamped at the borders. (C, H, W) -> (C,)"""
    height, width = feature.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0], dtype=feature.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y0, x0 = min(y0, height - 1), min(x0, width - 1)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    y = float(y0) if y0 == height - 1 else y
    x = float(x0) if x0 == width - 1 else x
    ly, lx = y - y0, x - x0
    return (
        feature[:, y0, x0] * (1 - ly) * (1 - lx)
        + feature[:, y0, x1] * (1 - ly) * lx
        + feature[:, y1, x0] * ly * (1 - lx)
        + feature[:, y1, x1] * ly * lx
    )


def naive_roi_max(feature: Tensor, box: list[float], scale: float, resolution: int, aligned: bool) -> Tensor:
    """RoIAlign (adaptive sampling, average per bin) followed by the max over bins. (C, H, W) -> (C,)"""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (c * scale - offset for c in box)
    w, h = x2 - x1, y2 - y1
    if not aligned:
        w, h = max(w, 1.0), max(h, 1.0)
    bin_h, bin_w = h / resolution, w / resolution
    grid_h, grid_w = max(math.ceil(h / resolution), 1), max(math.ceil(w / resolution), 1)
    bins = []
    for ph in range(resolution):
        for pw in range(resolution):
            samples = [
                bilinear(
                    feature,
                    y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h,
                    x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w,
                )
                for iy in range(grid_h)
                for ix in range(grid_w)
            ]
            bins.append(torch.stack(samples).mean(0))
    return torch.stack(bins).max(0).values


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_head_matches_a_per_box_reference(aligned: bool) -> None:
    torch.manual_seed(0)
    head = RoIHead(
        in_channels=[4, 3],
        num_classes=6,
        temporal_pool_sizes=[2, 8],
        resolution=3,
        spatial_scale=0.25,
        aligned=aligned,
        dropout_rate=0.5,
    ).eval()
    features = [torch.randn(3, 4, 2, 6, 7), torch.randn(3, 3, 8, 6, 7)]
    boxes = torch.tensor(
        [
            [2, 1.0, 2.0, 20.0, 17.5],
            [0, 0.0, 0.0, 27.9, 23.9],
            [1, 5.3, 4.1, 6.0, 4.6],
            [0, -3.0, 10.0, 35.0, 30.0],
            [2, 12.2, 0.7, 25.1, 22.2],
        ]
    )
    out = head(features, boxes)
    for n, row in enumerate(boxes.tolist()):
        b, box = int(row[0]), row[1:]
        vectors = [naive_roi_max(f[b].mean(1), box, 0.25, 3, aligned) for f in features]
        expected = head.projection(torch.cat(vectors))
        torch.testing.assert_close(out[n], expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# the full model: batching, zero boxes, modes, BN freezing
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def r101() -> SlowFast:
    return tiny_model(AVA_R101, "DATA.NUM_FRAMES", "8")


def test_batch_indices_are_respected_in_any_order(r101: SlowFast) -> None:
    clips = slowfast_clips(3)
    boxes = torch.tensor(
        [
            [2, 4.0, 4.0, 40.0, 44.0],
            [0, 0.0, 0.0, 47.0, 47.0],
            [2, 10.0, 20.0, 30.0, 46.0],
            [1, 8.0, 2.0, 22.0, 30.0],
        ]
    )
    with torch.no_grad():
        batched = r101(clips, boxes)
        assert batched.shape == (4, 5)
        for n, row in enumerate(boxes):
            b = int(row[0])
            single = r101([c[b : b + 1] for c in clips], torch.cat([torch.zeros(1), row[1:]])[None])
            torch.testing.assert_close(batched[n : n + 1], single, atol=1e-4, rtol=1e-4)
        # a box's score depends on its own clip only
        other = r101([c[[2, 0, 2]] for c in clips], boxes[:1].clone())
        torch.testing.assert_close(other, batched[:1], atol=1e-4, rtol=1e-4)


def test_zero_boxes_give_an_empty_result(r101: SlowFast) -> None:
    with torch.no_grad():
        out = r101(slowfast_clips(2), torch.zeros(0, 5))
    assert out.shape == (0, 5)


def test_forward_features_returns_s5_per_pathway_and_keeps_the_input_list(r101: SlowFast) -> None:
    clips = slowfast_clips(2)
    before = list(clips)
    with torch.no_grad():
        slow, fast = r101.forward_features(clips)
    assert clips == before  # not modified in place
    assert slow.shape == (2, 256, 2, 3, 3) and fast.shape == (2, 32, 8, 3, 3)  # 32W and 32W/8, stride 16


def test_train_mode_uses_dropout_and_batch_statistics_and_backpropagates() -> None:
    model: Any = tiny_model(AVA_R101, "DATA.NUM_FRAMES", "8").train()
    clips, boxes = slowfast_clips(2), torch.tensor([[0, 1.0, 1.0, 30.0, 40.0], [1, 5.0, 5.0, 45.0, 45.0]])
    running = model.s2.pathway0_res0.branch2.a_bn.running_mean.clone()
    torch.manual_seed(1)
    first = model(clips, boxes)
    torch.manual_seed(2)
    second = model(clips, boxes)
    assert not torch.allclose(first, second)  # dropout
    assert not torch.equal(running, model.s2.pathway0_res0.branch2.a_bn.running_mean)  # BN statistics moved
    first.sum().backward()
    assert model.head.projection.weight.grad is not None
    assert (
        model.s1.pathway1_stem.conv.weight.grad is not None and model.s1.pathway1_stem.conv.weight.grad.any()
    )
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(clips, boxes), model(clips, boxes))  # no dropout at eval


def test_freeze_bn_survives_train_and_blocks_gradients() -> None:
    model = tiny_model(AVA_SLOW)
    freeze_bn(model)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(not m.training and not m.weight.requires_grad and not m.bias.requires_grad for m in bns)
    state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model([torch.randn(2, 3, 4, 48, 48)], torch.tensor([[0, 1.0, 1.0, 30.0, 40.0]])).sum().backward()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(m.weight.grad is None for m in bns)
    assert model.head.projection.weight.grad is not None  # the rest still trains
    from_config = build_model(load_config(AVA_SLOW, [*TINY, "BN.FREEZE", "True"])).train()
    assert all(not m.training for m in from_config.modules() if isinstance(m, nn.BatchNorm3d))


def test_sync_batchnorm_norm_type() -> None:
    with torch.device("meta"):
        model = build_model(load_config(AVA_SLOW, [*TINY, "BN.NORM_TYPE", "sync_batchnorm"]))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)


def test_init_follows_pyslowfast() -> None:
    cfg = load_config(AVA_R101, ["MODEL.NUM_CLASSES", "5", "MODEL.FC_INIT_STD", "0.05"])
    torch.manual_seed(0)
    model: Any = build_model(cfg)
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm3d):
            final = name.endswith(".c_bn") or "nonlocal" in name  # ZERO_INIT_FINAL_BN True in this config
            assert torch.all(m.weight == (0.0 if final else 1.0)) and torch.all(m.bias == 0), name
    conv = model.s4.pathway0_res3.branch2.b.weight  # Kaiming normal, fan_out = 256 * 3 * 3
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    assert model.head.projection.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert torch.all(model.head.projection.bias == 0)
    assert torch.all(model.s4.pathway0_nonlocal6.conv_theta.bias == 0)


# ---------------------------------------------------------------------------------------------------------
# other heads and archs, input errors
# ---------------------------------------------------------------------------------------------------------


def test_slow_model_takes_a_one_element_list() -> None:
    model = tiny_model(AVA_SLOW)
    clip = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        out = model([clip], torch.tensor([[1, 0.0, 0.0, 20.0, 20.0]]))
    assert out.shape == (1, 5)
    with pytest.raises(ValueError, match="list of 1 clip tensor"):
        model([clip, clip], torch.zeros(0, 5))


def test_kinetics_model_gives_per_clip_logits() -> None:
    model = tiny_model(REPO / "configs/Kinetics/SLOWFAST_8x8_R50.yaml")
    with torch.no_grad():
        out = model(slowfast_clips(2, frames=8, alpha=4, size=64))
    assert out.shape == (2, 5)
    with pytest.raises(ValueError, match="takes no boxes"):
        model(slowfast_clips(1), torch.zeros(0, 5))


def test_bad_inputs_raise_clear_errors(r101: SlowFast) -> None:
    clips = slowfast_clips(2)
    with pytest.raises(ValueError, match="needs boxes"):
        r101(clips)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        r101(clips, torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"batch indices in \[0, 2\)"):
        r101(clips, torch.tensor([[2, 0.0, 0.0, 5.0, 5.0]]))
    with pytest.raises(ValueError, match="alpha times"):
        r101([clips[0], torch.cat([clips[1], clips[1][:, :, :4]], 2)], torch.zeros(0, 5))
    with pytest.raises(ValueError, match="built for 2"):
        r101([clips[1][:, :, ::2], torch.cat([clips[1], clips[1]], 2)], torch.zeros(0, 5))


# ---------------------------------------------------------------------------------------------------------
# optimised inference path
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the device machine)")
def test_optimized_inference_on_gpu_matches_eval_mode(r101: SlowFast) -> None:
    """On CUDA (fp32, TF32 off): the optimised model equals the eval model to float rounding; fp16/bf16 close."""
    model = copy.deepcopy(r101).cuda()
    clips = [c.cuda() for c in slowfast_clips(2)]
    boxes = torch.tensor([[1, 3.0, 4.0, 40.0, 30.0], [0, 0.0, 0.0, 47.0, 47.0]], device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            expected = model(clips, boxes)
        torch.testing.assert_close(optimize_for_inference(model)(clips, boxes), expected, atol=1e-4, rtol=0)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    for dtype in (torch.float16, torch.bfloat16):
        got = optimize_for_inference(model, dtype=dtype)(clips, boxes).float()
        assert (torch.sigmoid(got) - torch.sigmoid(expected)).abs().max() < 5e-2


def test_optimized_model_stays_on_the_model_device(r101: SlowFast) -> None:
    """Every tensor of the optimised model lives where the model's do (a CUDA model's fused non-local phi+g
    conv was once built on the CPU); checked with the meta device, which any CPU-built tensor would miss."""
    meta = copy.deepcopy(r101).to("meta")
    fused = optimize_for_inference(meta)
    devices = {t.device.type for t in [*fused.parameters(), *fused.buffers()]}
    assert devices == {"meta"}


@pytest.mark.parametrize("channels_last", [True, False])
def test_optimized_inference_matches_eval_mode(r101: SlowFast, channels_last: bool) -> None:
    clips, boxes = slowfast_clips(2), torch.tensor([[1, 3.0, 4.0, 40.0, 30.0], [0, 0.0, 0.0, 47.0, 47.0]])
    fast = optimize_for_inference(r101, channels_last=channels_last)
    with torch.no_grad():
        expected = r101(clips, boxes)
    torch.testing.assert_close(fast(clips, boxes), expected, atol=1e-4, rtol=0)
    assert (
        type(r101.get_submodule("s1.pathway0_stem.bn")) is nn.BatchNorm3d
    )  # the original model is untouched
    slow = tiny_model(AVA_SLOW)
    clip = [torch.randn(1, 3, 4, 48, 48)]
    with torch.no_grad():
        torch.testing.assert_close(
            optimize_for_inference(slow)(clip, boxes[1:]), slow(clip, boxes[1:]), atol=1e-4, rtol=0
        )


def test_fused_conv_matches_conv_bn_relu_on_both_paths() -> None:
    # float32 on CPU runs oneDNN's fused kernel; float64 the plain conv3d path (the one GPUs use).
    torch.manual_seed(0)
    conv = nn.Conv3d(6, 8, (3, 3, 3), stride=(1, 2, 2), padding=(1, 2, 2), dilation=(1, 2, 2), groups=2)
    bn = nn.BatchNorm3d(8).eval()
    randomize_bn(bn, 1)
    x, residual = torch.randn(2, 6, 4, 9, 9), torch.randn(2, 8, 4, 5, 5)
    with torch.no_grad():
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            c, b = copy.deepcopy(conv).to(dtype), copy.deepcopy(bn).to(dtype)
            xd, rd = x.to(dtype), residual.to(dtype)
            fused = FusedConv3d(c, b, relu=True)
            torch.testing.assert_close(fused(xd, residual=rd), torch.relu(b(c(xd)) + rd), atol=tol, rtol=tol)
            torch.testing.assert_close(FusedConv3d(c, b, relu=False)(xd), b(c(xd)), atol=tol, rtol=tol)


def test_int8_inference_calibrates_in_fp32_then_runs_int8_convs(r101: SlowFast) -> None:
    # precision "int8": the first calls are the fp32 model's (ranges recorded), then every backbone conv but
    # the stem's and the non-local blocks' is an int8 conv, and the scores stay close to fp32
    from slowfast_det.models.fused import Int8Conv3d

    boxes = torch.tensor([[1, 3.0, 4.0, 40.0, 30.0], [0, 0.0, 0.0, 47.0, 47.0]])
    fp32 = optimize_for_inference(r101)
    int8 = optimize_for_inference(r101, precision="int8", calibration_calls=2)
    for seed in (2, 3):
        clips = slowfast_clips(2, seed=seed)
        # calibrating: fp32 (only the in-place residual GEMM is off, so the rounding differs)
        torch.testing.assert_close(int8(clips, boxes), fp32(clips, boxes), atol=1e-5, rtol=0)
    kinds = {name: type(m).__name__ for name, m in int8.model.named_modules()
             if isinstance(m, FusedConv3d | Int8Conv3d)}
    assert kinds["s1.pathway0_stem.conv"] == "FusedConv3d" and kinds["s4.pathway0_nonlocal6.theta"] == "FusedConv3d"
    assert kinds["s4.pathway0_res0.c"] == kinds["s2_fuse.conv_f2s"] == "Int8Conv3d"
    assert sum(kind == "Int8Conv3d" for kind in kinds.values()) > 100
    clips = slowfast_clips(2, seed=4)
    scores, expected = int8(clips, boxes).sigmoid(), fp32(clips, boxes).sigmoid()
    assert not torch.equal(scores, expected)
    torch.testing.assert_close(scores, expected, atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(r101, precision="int4")


AVA_CONFIG_NAMES = sorted(p.stem for p in (REPO / "configs/AVA").glob("*.yaml"))


@pytest.mark.parametrize(
    ("config", "extra"),
    [(name, ()) for name in AVA_CONFIG_NAMES]
    + [
        ("SHORT", ()),  # PySlowFast's SLOWFAST_32x2_R50_SHORT (aligned RoIAlign)
        ("SLOWFAST_32x2_R101_50_50", ("NONLOCAL.INSTANTIATION", "softmax")),
        ("SLOWFAST_32x2_R101_50_50", ("NONLOCAL.GROUP", "[[1, 1], [1, 1], [2, 1], [1, 1]]")),
    ],
)
def test_optimized_inference_matches_eval_mode_on_every_ava_config(
    config: str, extra: tuple[str, ...], pyslowfast_configs: Path
) -> None:
    # every shipped AVA config, non-local blocks included, at width 8: logits within 1e-4 of the eval model
    path = pyslowfast_configs / "configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml" if config == "SHORT" else (
        REPO / f"configs/AVA/{config}.yaml"
    )
    model = tiny_model(path, *extra)
    cfg = load_config(path, [*TINY, *extra])
    alpha = cfg.SLOWFAST.ALPHA if cfg.MODEL.ARCH == "slowfast" else 1
    clips = slowfast_clips(2, frames=cfg.DATA.NUM_FRAMES, alpha=alpha, size=32)
    if cfg.MODEL.ARCH != "slowfast":
        clips = clips[1:]
    before = [c.clone() for c in clips]
    boxes = torch.tensor([[1, 3.0, 4.0, 30.0, 20.0], [0, 0.0, 0.0, 31.0, 31.0], [1, 8.0, 2.0, 17.5, 29.0]])
    with torch.no_grad():
        expected = model(clips, boxes)
    got = optimize_for_inference(model)(clips, boxes)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=0)
    for c, b in zip(clips, before, strict=True):
        assert torch.equal(c, b)  # the fused blocks work in place on their own features, never on the inputs


@pytest.mark.parametrize(("frames", "batch"), [(8, 2), (2, 1), (1, 1)])
def test_wide_temporal_conv_runs_as_shifted_gemms_and_matches(frames: int, batch: int) -> None:
    # conv a of Slow res4/res5 ([3,1,1], 1024 -> 256): the temporal-GEMM path, incl. clips shorter than k
    torch.manual_seed(0)
    conv = nn.Conv3d(1024, 256, (3, 1, 1), padding=(1, 0, 0), bias=False)
    bn = nn.BatchNorm3d(256).eval()
    randomize_bn(bn, 2)
    fused = FusedConv3d(conv, bn, relu=True)
    assert fused.temporal_gemm
    x = torch.randn(batch, 1024, frames, 3, 5).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), torch.relu(bn(conv(x))), atol=1e-4, rtol=1e-4)
