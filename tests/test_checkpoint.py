"""Checkpoints: Caffe2 names, safe reading, strict loading, backbone-only loading, our own format."""

from __future__ import annotations

import os
import pickle
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from slowfast_det.checkpoint import (
    CheckpointError,
    c2_to_pytorch_name,
    is_c2_bookkeeping_blob,
    load_checkpoint,
    load_weights,
    pytorch_to_c2_name,
    restore_rng_state,
    save_checkpoint,
)
from slowfast_det.config import dump_config, load_config, load_config_from_string
from slowfast_det.models import STAGE_DEPTHS, SlowFast, build_model

REPO = Path(__file__).resolve().parents[1]
AVA_R101 = REPO / "configs/AVA/SLOWFAST_32x2_R101_50_50.yaml"  # non-local blocks, 23 res4 blocks
AVA_R50 = REPO / "configs/AVA/SLOWFAST_32x2_R50.yaml"  # smaller: for the tests that need no Caffe2 names
AVA_SLOW = REPO / "configs/AVA/SLOW_4x16_R50.yaml"
TINY = ["RESNET.WIDTH_PER_GROUP", "8", "MODEL.NUM_CLASSES", "5", "DATA.NUM_FRAMES", "8"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(config: Path = AVA_R50, overrides: list[str] = TINY, seed: int = 0) -> SlowFast:
    """A tiny model with random weights everywhere (BN statistics and zero-initialised BNs included)."""
    torch.manual_seed(seed)
    model = build_model(load_config(config, overrides))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand_like(tensor) * 0.5 + 0.5 if "var" in name else torch.randn_like(tensor) * 0.2
                )
    return model.eval()


def clips_and_boxes() -> tuple[list[Tensor], Tensor]:
    gen = torch.Generator().manual_seed(3)
    fast = torch.randn(2, 3, 8, 48, 48, generator=gen)
    boxes = torch.tensor([[1, 2.0, 3.0, 40.0, 44.0], [0, 0.0, 0.0, 47.0, 47.0]])
    return [fast[:, :, ::4].contiguous(), fast], boxes


def outputs(model: nn.Module) -> Tensor:
    clips, boxes = clips_and_boxes()
    with torch.no_grad():
        return model(clips, boxes)


# ---------------------------------------------------------------------------------------------------------
# Caffe2 names
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "name"),
    [  # PySlowFast's naming (slowfast/utils/c2_model_loading.py)
        ("conv1_w", "s1.pathway0_stem.conv.weight"),
        ("res_conv1_w", "s1.pathway0_stem.conv.weight"),
        ("res_conv1_bn_s", "s1.pathway0_stem.bn.weight"),
        ("t_conv1_w", "s1.pathway1_stem.conv.weight"),
        ("t_res_conv1_bn_riv", "s1.pathway1_stem.bn.running_var"),
        ("t_pool1_subsample_w", "s1_fuse.conv_f2s.weight"),
        ("t_pool1_subsample_bn_b", "s1_fuse.bn.bias"),
        ("t_res4_22_branch2c_bn_subsample_bn_rm", "s4_fuse.bn.running_mean"),
        ("t_res3_3_branch2c_bn_subsample_w", "s3_fuse.conv_f2s.weight"),
        ("res2_0_branch1_w", "s2.pathway0_res0.branch1.weight"),
        ("res2_0_branch1_bn_s", "s2.pathway0_res0.branch1_bn.weight"),
        ("res4_17_branch2b_w", "s4.pathway0_res17.branch2.b.weight"),
        ("t_res5_2_branch2c_bn_b", "s5.pathway1_res2.branch2.c_bn.bias"),
        ("res3_1_branch2a_bn_riv", "s3.pathway0_res1.branch2.a_bn.running_var"),
        ("nonlocal_conv4_13_theta_w", "s4.pathway0_nonlocal13.conv_theta.weight"),
        ("nonlocal_conv4_6_out_b", "s4.pathway0_nonlocal6.conv_out.bias"),
        ("nonlocal_conv4_20_bn_rm", "s4.pathway0_nonlocal20.bn.running_mean"),
        ("pred_w", "head.projection.weight"),
        ("pred_b", "head.projection.bias"),
    ],
)
def test_known_caffe2_names(blob: str, name: str) -> None:
    assert c2_to_pytorch_name(blob) == name


@pytest.mark.parametrize(
    "blob", ["conv1_w_momentum", "res2_0_branch2a_bn_s_momentum", "lr", "model_iter", "pred_w_lr"]
)
def test_optimizer_blobs_have_no_name_and_are_bookkeeping(blob: str) -> None:
    assert c2_to_pytorch_name(blob) is None and is_c2_bookkeeping_blob(blob)


@pytest.mark.parametrize(
    "blob", ["t_nonlocal_conv4_6_g_w", "pool1_subsample_w", "res2_0_branch3a_w", "pred_bn_s", "fc_w"]
)
def test_names_outside_the_scheme_have_no_pytorch_name(blob: str) -> None:
    assert c2_to_pytorch_name(blob) is None and not is_c2_bookkeeping_blob(blob)


def test_every_ava_parameter_maps_to_one_blob_and_back() -> None:
    for config in sorted((REPO / "configs/AVA").glob("*.yaml")):
        cfg = load_config(config)
        with torch.device("meta"):
            state = build_model(cfg).state_dict()
        blobs = {}
        for name in state:
            blob = pytorch_to_c2_name(name, STAGE_DEPTHS[cfg.RESNET.DEPTH])
            if name.endswith("num_batches_tracked"):
                assert blob is None
                continue
            assert blob is not None and c2_to_pytorch_name(blob) == name, (config.name, name, blob)
            blobs[blob] = name
        assert len(blobs) == sum(not n.endswith("num_batches_tracked") for n in state), config.name


def test_names_with_no_caffe2_equivalent_are_refused() -> None:
    with pytest.raises(ValueError, match="no Caffe2 blob name"):
        pytorch_to_c2_name("s4.pathway1_nonlocal6.conv_g.weight", STAGE_DEPTHS[101])


# ---------------------------------------------------------------------------------------------------------
# Caffe2 files
# ---------------------------------------------------------------------------------------------------------


_PurePythonPickler: Any = pickle._Pickler  # type: ignore[attr-defined]


class Py2Pickler(_PurePythonPickler):
    """Writes what Python 2's pickler wrote for Caffe2 blobs: `str` opcodes for bytes and text (read back with
    encoding="latin1"), and numpy's pre-2.0 module names."""

    dispatch = _PurePythonPickler.dispatch.copy()

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)


def write_caffe2(
    path: Path, model: SlowFast, depth: int, extra: dict[str, np.ndarray] | None = None, py2: bool = True
) -> dict:
    """A Caffe2 pickle (protocol 2, latin1-readable) built by inverting the name conversion."""
    blobs: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        blob = pytorch_to_c2_name(name, STAGE_DEPTHS[depth])
        if blob is not None:
            blobs[blob] = tensor.numpy().copy()
            blobs[blob + "_momentum"] = np.zeros_like(blobs[blob])
    blobs["lr"] = np.array([0.1], dtype=np.float32)
    blobs["model_iter"] = np.array([1000], dtype=np.int64)
    blobs.update(extra or {})
    dump_caffe2(path, blobs, py2)
    return blobs


def dump_caffe2(path: Path, blobs: dict[str, np.ndarray], py2: bool) -> None:
    with open(path, "wb") as f:
        if py2:
            Py2Pickler(f, protocol=2).dump({"blobs": blobs})
        else:  # Python 3, protocol 2: bytes go through _codecs.encode(..., "latin1")
            pickle.dump({"blobs": blobs}, f, protocol=2)


@pytest.mark.parametrize("py2", [True, False], ids=["python2-pickle", "python3-protocol2"])
def test_caffe2_checkpoint_reproduces_the_model(tmp_path: Path, py2: bool) -> None:
    source = make_model(AVA_R101, seed=0)
    path = tmp_path / "SLOWFAST_32x2_R101_50_50_v2.1.pkl"
    blobs = write_caffe2(path, source, 101)
    # Caffe2 may store the classifier with trailing singleton dims (a 1x1x1 conv): reshaped on load.
    blobs["pred_w"] = blobs["pred_w"].reshape(*blobs["pred_w"].shape, 1, 1, 1)
    dump_caffe2(path, blobs, py2)
    assert (b"_codecs" in path.read_bytes()) != py2
    target = make_model(AVA_R101, seed=1)
    assert not torch.equal(outputs(target), outputs(source))
    report = load_weights(target, path)
    assert torch.equal(outputs(target), outputs(source))
    assert report.source == "caffe2" and report.reshaped == ["head.projection.weight"]
    assert "conv1_w_momentum" in report.ignored and "lr" in report.ignored and "model_iter" in report.ignored
    assert report.renamed["t_pool1_subsample_w"] == "s1_fuse.conv_f2s.weight"
    assert all(k.endswith("num_batches_tracked") for k in report.left_at_init) and report.left_at_init
    assert len(report.loaded) == sum(not k.endswith("num_batches_tracked") for k in source.state_dict())


def test_unknown_and_duplicate_caffe2_blobs_are_errors(tmp_path: Path) -> None:
    model = make_model()
    path = tmp_path / "c2.pkl"
    write_caffe2(path, model, 50, {"fc7_w": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="no PyTorch name: \\['fc7_w'\\]"):
        load_weights(model, path)
    write_caffe2(
        path, model, 101, {"res_conv1_w": model.state_dict()["s1.pathway0_stem.conv.weight"].numpy()}
    )
    with pytest.raises(CheckpointError, match="both map to s1.pathway0_stem.conv.weight"):
        load_weights(model, path)


class _Payload:
    """Unpickling this would create a file (a stand-in for arbitrary code)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (str(self.target), "w"))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": _Payload(marker)}}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refusing to load global io.open"):
        load_weights(make_model(), path)
    assert not marker.exists()
    with open(path, "wb") as f:  # the same with os.system
        pickle.dump({"blobs": {}, "x": _SystemPayload(marker)}, f, protocol=0)
    with pytest.raises(CheckpointError, match="refusing to load global posix.system"):
        load_weights(make_model(), path)
    assert not marker.exists()


class _SystemPayload:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.pkl"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="neither a PyTorch checkpoint"):
        load_weights(make_model(), path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(make_model(), tmp_path / "missing.pyth")


@pytest.mark.parametrize("kind", ["ours", "legacy-torch", "caffe2"])
@pytest.mark.parametrize("keep", [0.0, 0.002, 0.5, 0.999])
def test_a_truncated_checkpoint_is_called_truncated(tmp_path: Path, kind: str, keep: float) -> None:
    """A checkpoint cut short (an interrupted write or copy) is named "truncated or incomplete", whatever the
    format, not "neither a PyTorch checkpoint nor a Caffe2 pickle ... persistent id instruction"."""
    model = make_model()
    whole = tmp_path / "whole"
    if kind == "ours":
        save_checkpoint(whole, model=model, epoch=3)
    elif kind == "legacy-torch":
        torch.save({"model_state": model.state_dict()}, whole, _use_new_zipfile_serialization=False)
    else:
        write_caffe2(whole, model, 50)
    data = whole.read_bytes()
    cut = tmp_path / "checkpoint_epoch_00004.pyth"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as info:
        load_weights(make_model(), cut)
    message = str(info.value)
    assert message.startswith(f"{cut}: truncated or incomplete file"), message
    assert "persistent" not in message and "neither" not in message


# ---------------------------------------------------------------------------------------------------------
# PySlowFast torch files
# ---------------------------------------------------------------------------------------------------------


def test_legacy_torch_file_named_pkl_loads(tmp_path: Path) -> None:
    source = make_model(seed=0)
    path = tmp_path / "SLOWFAST_32x2_R101_50_50.pkl"
    payload = {"epoch": 7, "model_state": source.state_dict(), "cfg": "MODEL:\n  NUM_CLASSES: 5\n"}
    torch.save(payload, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == b"\x80\x02"  # a pickle stream, not a zip archive
    target = make_model(seed=1)
    report = load_weights(target, path)
    assert torch.equal(outputs(target), outputs(source))
    assert (report.source, report.epoch, report.cfg) == ("pyslowfast", 7, payload["cfg"])
    assert report.left_at_init == []


def test_pyslowfast_pyth_with_ddp_prefix_loads(tmp_path: Path) -> None:
    source = make_model(seed=0)
    path = tmp_path / "checkpoint_epoch_00005.pyth"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 5, "model_state": state, "optimizer_state": {}, "cfg": ""}, path)
    target = make_model(seed=1)
    report = load_weights(target, path)
    assert torch.equal(outputs(target), outputs(source))
    assert report.renamed["module.head.projection.bias"] == "head.projection.bias"


def test_strict_errors_list_every_bad_key_and_load_nothing(tmp_path: Path) -> None:
    source = make_model(seed=0)
    state = dict(source.state_dict())
    del state["s3.pathway1_res2.branch2.b.weight"]
    state["s9.pathway0_res0.branch2.a.weight"] = torch.zeros(1)
    state["s2_fuse.bn.running_mean"] = torch.zeros(3)
    path = tmp_path / "bad.pyth"
    torch.save({"model_state": state}, path)
    target = make_model(seed=1)
    before = outputs(target)
    with pytest.raises(CheckpointError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert "missing (1): s3.pathway1_res2.branch2.b.weight" in message
    assert "unexpected (1): s9.pathway0_res0.branch2.a.weight" in message
    assert "mis-shaped (1): s2_fuse.bn.running_mean: file (3,) vs model (8,)"  # 2 x (4W / 8) in message
    assert torch.equal(outputs(target), before)


def test_kinetics_backbone_into_an_ava_model(tmp_path: Path) -> None:
    # Same backbone, clip head with 400 classes vs RoI head with 5.
    kinetics = make_model(overrides=[*TINY, "DETECTION.ENABLE", "False", "MODEL.NUM_CLASSES", "400"], seed=0)
    path = tmp_path / "kinetics.pyth"
    torch.save({"model_state": kinetics.state_dict(), "epoch": 196}, path)
    ava = make_model(seed=1)
    with pytest.raises(CheckpointError, match="(?s)mis-shaped.*head.projection.weight.*backbone_only=True"):
        load_weights(ava, path)
    head_before = {k: v.clone() for k, v in ava.head.state_dict().items()}
    report = load_weights(ava, path, backbone_only=True)
    assert sorted(report.skipped) == ["head.projection.bias", "head.projection.weight"]
    assert {"head.projection.bias", "head.projection.weight"} <= set(report.left_at_init)
    assert all(torch.equal(v, ava.head.state_dict()[k]) for k, v in head_before.items())
    with torch.no_grad():
        clips, _ = clips_and_boxes()
        for a, b in zip(ava.forward_features(clips), kinetics.forward_features(clips), strict=True):
            assert torch.equal(a, b)
    # still strict for the backbone
    state = dict(kinetics.state_dict())
    del state["s1.pathway0_stem.bn.running_var"]
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError, match="missing \\(1\\): s1.pathway0_stem.bn.running_var"):
        load_weights(ava, path, backbone_only=True)


# ---------------------------------------------------------------------------------------------------------
# our format
# ---------------------------------------------------------------------------------------------------------


def test_save_load_round_trip_with_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    cfg = load_config(AVA_SLOW, ["RESNET.WIDTH_PER_GROUP", "8", "MODEL.NUM_CLASSES", "5"])
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    clip, boxes = [torch.randn(2, 3, 4, 48, 48)], torch.tensor([[0, 1.0, 1.0, 30.0, 30.0]])
    model(clip, boxes).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    path = tmp_path / "run" / "checkpoint_epoch_00003.pyth"
    save_checkpoint(
        path,
        model=model,
        cfg=cfg,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=3,
        extra={"best_map": 0.25},
    )
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left

    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["extra"] == {"best_map": 0.25}
    assert load_config_from_string(state["cfg"]) == cfg and state["cfg"] == dump_config(cfg)
    restore_rng_state(state["rng_state"])
    assert (random.random(), np.random.rand()) == expected_draws[:2] and torch.equal(
        torch.rand(1), expected_draws[2]
    )

    torch.manual_seed(1)
    fresh = build_model(cfg)
    report = load_weights(fresh, path)
    assert report.source == "slowfast_det" and report.epoch == 3
    fresh.eval(), model.eval()
    with torch.no_grad():
        assert torch.equal(fresh(clip, boxes), model(clip, boxes))
    new_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    new_optimizer.load_state_dict(state["optimizer_state"])
    new_scheduler = torch.optim.lr_scheduler.StepLR(new_optimizer, step_size=2, gamma=0.5)
    new_scheduler.load_state_dict(state["scheduler_state"])
    assert new_scheduler.last_epoch == 1
    momentum = next(iter(new_optimizer.state.values()))["momentum_buffer"]
    assert torch.equal(momentum, next(iter(optimizer.state.values()))["momentum_buffer"])


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    path = tmp_path / "last.pyth"
    save_checkpoint(path, model=model, epoch=1)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, model=model, epoch=2, extra={"bad": lambda: None})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pyth"]
    assert load_checkpoint(path)["epoch"] == 1


def test_load_checkpoint_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "pyslowfast.pyth"
    torch.save({"model_state": {}, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="not a slowfast_det checkpoint"):
        load_checkpoint(path)
