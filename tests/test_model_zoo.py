"""The model zoo: each entry's config fits its checkpoint format (full size, on the meta device), models load by
name through the loopback zoo, and ``detect-video clip.mp4`` runs with no other flag."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_checkpoint import outputs, write_caffe2
from zoo_server import ZooServer

from slowfast_det import model_zoo
from slowfast_det.checkpoint import c2_to_pytorch_name, pytorch_to_c2_name
from slowfast_det.config import load_config
from slowfast_det.configs import path as config_path
from slowfast_det.model_zoo import ZooError
from slowfast_det.models import STAGE_DEPTHS, build_model, count_gflops

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
HOST = "https://dl.fbaipublicfiles.com/"
MODELS = [e for e in model_zoo.BUILTIN_ENTRIES if e.kind in ("action", "pretrain")]

# Blob shapes of PySlowFast's files, from its architecture (video_model_builder.py), not from our model:
# SlowFast R101 (W=64, beta_inv 8, ratio 2, fusion kernel 5, res4 blocks 0-5 temporal, non-local 6/13/20).
R101_SLOWFAST = {
    "conv1_w": (64, 3, 1, 7, 7),
    "t_conv1_w": (8, 3, 5, 7, 7),
    "t_pool1_subsample_w": (16, 8, 5, 1, 1),
    "res2_0_branch2a_w": (64, 80, 1, 1, 1),
    "res2_0_branch1_w": (256, 80, 1, 1, 1),
    "t_res2_0_branch2a_w": (8, 8, 3, 1, 1),
    "t_res4_22_branch2c_bn_subsample_w": (256, 128, 5, 1, 1),
    "res4_5_branch2a_w": (256, 1024, 3, 1, 1),
    "res4_6_branch2a_w": (256, 1024, 1, 1, 1),
    "res4_22_branch2c_w": (1024, 256, 1, 1, 1),
    "nonlocal_conv4_6_theta_w": (512, 1024, 1, 1, 1),
    "nonlocal_conv4_20_out_w": (1024, 512, 1, 1, 1),
    "res5_0_branch1_w": (2048, 1280, 1, 1, 1),
    "t_res5_2_branch2c_w": (256, 64, 1, 1, 1),
    "pred_w": (80, 2304),
}
SLOW_R50 = {
    "conv1_w": (64, 3, 1, 7, 7),
    "res2_0_branch2a_w": (64, 64, 1, 1, 1),
    "res3_3_branch2a_w": (128, 512, 1, 1, 1),
    "res4_0_branch2a_w": (256, 512, 3, 1, 1),
    "res4_5_branch2c_w": (1024, 256, 1, 1, 1),
    "res5_2_branch2b_w": (512, 512, 1, 3, 3),
    "pred_w": (80, 2048),
}


def _meta_model(config: str) -> tuple[object, torch.nn.Module]:
    cfg = load_config(config)
    with torch.device("meta"):
        return cfg, build_model(cfg).eval()


@pytest.mark.parametrize("entry", [e for e in MODELS if e.kind == "action"], ids=lambda e: e.name)
def test_each_config_fits_its_checkpoint_format_at_full_size(entry: model_zoo.ZooEntry) -> None:
    cfg, model = _meta_model(entry.config)
    depths = STAGE_DEPTHS[cfg.RESNET.DEPTH]
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    # every parameter has one Caffe2 blob and back (Caffe2 files), and the model's names are PySlowFast's
    blobs = {pytorch_to_c2_name(k, depths): shape for k, shape in state.items()}
    assert None not in blobs and len(blobs) == len(state)
    assert {c2_to_pytorch_name(b): s for b, s in blobs.items()} == state
    expected = SLOW_R50 if cfg.MODEL.ARCH == "slow" else R101_SLOWFAST
    assert {b: blobs.get(b) for b in expected} == expected
    assert not any(b.startswith("t_") for b in blobs) if cfg.MODEL.ARCH == "slow" else True
    assert sum(b.startswith("nonlocal") for b in blobs) == (0 if cfg.MODEL.ARCH == "slow" else 3 * 12)
    # the table's GFLOPs: one 256x256 view, one box
    with torch.device("meta"):
        fast = torch.empty(1, 3, cfg.DATA.NUM_FRAMES, 256, 256)
        inputs = [fast[:, :, :: cfg.SLOWFAST.ALPHA], fast] if cfg.MODEL.ARCH == "slowfast" else [fast]
        boxes = torch.tensor([[0.0, 10.0, 10.0, 200.0, 250.0]])
    assert count_gflops(model, (inputs, boxes)) == pytest.approx(entry.gflops, abs=0.05)
    # the pretrain entry initialises this model: same config
    init = model_zoo.get_entry(f"pretrain/{entry.name}")
    assert init.config == entry.config and init.backbone_only and init.url == HOST + (
        f"pyslowfast/model_zoo/ava/pretrain/{entry.name}.pkl")


def test_table() -> None:
    assert model_zoo.list_models("action") == [
        "SLOWFAST_32x2_R101_50_50", "SLOWFAST_64x2_R101_50_50", "SLOWFAST_32x2_R101_50_50_v2.1", "C2D_8x8_R50"]
    published = {e.name: (e.ava_version, e.map, e.url) for e in MODELS if e.kind == "action"}
    assert published == {
        n: (v, m, f"{HOST}pyslowfast/model_zoo/ava/{n}.pkl")
        for n, v, m in [("SLOWFAST_32x2_R101_50_50", "2.2", 29.1), ("SLOWFAST_64x2_R101_50_50", "2.2", 29.4),
                        ("SLOWFAST_32x2_R101_50_50_v2.1", "2.1", 28.2), ("C2D_8x8_R50", "2.2", 19.5)]
    }
    assert model_zoo.get_entry("C2D_8x8_R50").config == "AVA/SLOW_4x16_R50"
    detector = model_zoo.get_entry(model_zoo.DEFAULT_DETECTOR)
    assert detector.url == "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"
    assert model_zoo.get_config("SLOWFAST_64x2_R101_50_50").DATA.NUM_FRAMES == 64
    with pytest.raises(ZooError, match="closest: SLOWFAST_32x2_R101_50_50"):
        model_zoo.get_entry("SLOWFAST_32x2_R101")
    from slowfast_det.tools.detect_video import get_args_parser

    text = "".join(get_args_parser().format_help().split())  # argparse wraps lines (also at hyphens)
    assert all(name in text for name in model_zoo.list_models("action") + model_zoo.list_models("detector"))


# ---------------------------------------------------------------------------------------------------------
# loading by name through the loopback zoo (tiny widths of the same configs, files in PySlowFast's formats)
# ---------------------------------------------------------------------------------------------------------


def _tiny_config(folder: Path, entry: model_zoo.ZooEntry) -> Path:
    """The entry's shipped config at width 8 (SlowFast: 8 frames; everything else inherited through _BASE_)."""
    path = folder / f"{entry.name.replace('/', '_')}.yaml"
    frames = "DATA:\n  NUM_FRAMES: 8\n" if "SLOWFAST" in entry.name else ""
    path.write_text(f"_BASE_: {config_path(entry.config)}\nRESNET:\n  WIDTH_PER_GROUP: 8\n{frames}")
    return path


def _random(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.5 + 0.5 if "var" in name else torch.randn_like(t) * 0.2)
    return model.eval()


@pytest.fixture()
def zoo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ZooServer, Path]]:
    server = ZooServer().start()
    monkeypatch.setenv("SLOWFAST_DET_ZOO_URL", server.url)
    monkeypatch.setenv("SLOWFAST_DET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SLOWFAST_DET_OFFLINE", raising=False)
    yield server, tmp_path
    server.stop()


def test_get_by_name_loads_every_format_strictly(zoo_env: tuple[ZooServer, Path], monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    server, tmp = zoo_env
    overrides, sources = [], {}
    for i, entry in enumerate(e for e in MODELS if e.name in ("SLOWFAST_32x2_R101_50_50", "C2D_8x8_R50",
                                                             "pretrain/SLOWFAST_64x2_R101_50_50")):
        config = _tiny_config(tmp, entry)
        overrides.append({"name": entry.name, "config": config.name})
        cfg = load_config(config)
        rel = entry.url[len(HOST):]
        file = tmp / f"file{i}"
        if entry.kind == "pretrain":  # Kinetics: the same backbone with a 600-class clip head, Caffe2
            source = _random(build_model(load_config(config, ["DETECTION.ENABLE", "False",
                                                              "MODEL.NUM_CLASSES", "600"])), i)
            write_caffe2(file, source, cfg.RESNET.DEPTH)
        elif entry.checkpoint_format == "caffe2":
            source = _random(build_model(cfg), i)
            write_caffe2(file, source, cfg.RESNET.DEPTH)
        else:  # PySlowFast checkpoint, legacy (non-zip) torch serialisation under a .pkl name
            source = _random(build_model(cfg), i)
            torch.save({"epoch": 20, "model_state": source.state_dict(), "optimizer_state": {}, "cfg": "x: 1\n"},
                       file, _use_new_zipfile_serialization=False)
        server.files[rel] = file.read_bytes()
        sources[entry.name] = source
    (tmp / "zoo.json").write_text(json.dumps({"models": overrides}))
    monkeypatch.setenv("SLOWFAST_DET_ZOO_FILE", str(tmp / "zoo.json"))

    model, report = model_zoo.get("SLOWFAST_32x2_R101_50_50", progress=False)
    assert report.source == "pyslowfast" and report.epoch == 20 and not model.training
    assert torch.equal(outputs(model), outputs(sources["SLOWFAST_32x2_R101_50_50"]))
    slow, report = model_zoo.get("C2D_8x8_R50", progress=False)
    assert report.source == "caffe2" and "lr" in report.ignored
    clips = torch.randn(1, 3, 4, 48, 48)
    boxes = torch.tensor([[0.0, 2.0, 3.0, 40.0, 44.0]])
    with torch.no_grad():
        assert torch.equal(slow([clips], boxes), sources["C2D_8x8_R50"]([clips], boxes))
    ava, report = model_zoo.get("pretrain/SLOWFAST_64x2_R101_50_50", progress=False)
    assert sorted(report.skipped) == ["head.projection.bias", "head.projection.weight"]
    assert ava.head.projection.out_features == 80  # the AVA model, backbone from Kinetics
    assert ava.s4.pathway0_nonlocal6.conv_g.weight.equal(
        sources["pretrain/SLOWFAST_64x2_R101_50_50"].s4.pathway0_nonlocal6.conv_g.weight)
    assert [r for r, _ in server.requests] == [e[len(HOST):] for e in (
        model_zoo.get_entry(n).url for n in sources)]
    # cached: a second get asks nothing
    model_zoo.get("SLOWFAST_32x2_R101_50_50", progress=False)
    assert len(server.requests) == 3


def test_zoo_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo_file = tmp_path / "zoo.json"
    zoo_file.write_text(json.dumps({"models": [{"name": "mine", "url": "https://x/y.pkl"}]}))
    monkeypatch.setenv("SLOWFAST_DET_ZOO_FILE", str(zoo_file))
    with pytest.raises(ZooError, match=r"models\[0\] \(mine\): a new model needs \['config'\]"):
        model_zoo.list_models()
    zoo_file.write_text(json.dumps({"models": [{"name": "C2D_8x8_R50", "weights": "x"}]}))
    with pytest.raises(ZooError, match=r"unknown fields \['weights'\]"):
        model_zoo.list_models()
    zoo_file.write_text(json.dumps({"models": [{"name": "C2D_8x8_R50", "sha256": "ab" * 32}]}))
    entry = model_zoo.get_entry("C2D_8x8_R50")
    assert entry.sha256 == "ab" * 32 and entry.config == "AVA/SLOW_4x16_R50" and entry.source == str(zoo_file)


# ---------------------------------------------------------------------------------------------------------
# detect-video with no flags, and slowfast-zoo, against the loopback zoo
# ---------------------------------------------------------------------------------------------------------

DETECTOR_REL = "detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"
MODEL_REL = "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50.pkl"


def _label_map(path: Path) -> dict[int, str]:
    names = {i: f"zoo action {i}" for i in range(1, 81)}
    path.write_text("".join(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in names.items()))
    return names


def test_detect_video_with_no_flags_uses_the_default_zoo_models(
    zoo_env: tuple[ZooServer, Path], bikes_mp4: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from test_detect_video import DETECTOR_CONFIG, DETECTOR_OPTS, TINY_SLOWFAST

    from slowfast_det.detection.person import PersonDetector
    from slowfast_det.tools.detect_video import get_args_parser, main

    server, tmp = zoo_env
    # the site's zoo file (a documented feature: SLOWFAST_DET_ZOO_FILE) swaps in a CPU-sized model, label map
    # and detector under the default names; URLs stay the built-in ones, served by the mirror
    (tmp / "tiny.yaml").write_text(TINY_SLOWFAST)
    names = _label_map(tmp / "labels.pbtxt")
    (tmp / "zoo.json").write_text(json.dumps({"models": [
        {"name": "SLOWFAST_32x2_R101_50_50", "config": "tiny.yaml", "label_map": "labels.pbtxt"},
        {"name": "COCO-Detection/faster_rcnn_R_50_FPN_3x", "opts": DETECTOR_OPTS},
    ]}))
    torch.manual_seed(0)
    model = build_model(load_config(tmp / "tiny.yaml"))
    with torch.no_grad():
        model.head.projection.bias[:3] = 4.0  # actions 1-3 score high whatever the random features
    torch.save({"epoch": 1, "model_state": model.state_dict(), "optimizer_state": {}, "cfg": TINY_SLOWFAST},
               tmp / "model.pkl", _use_new_zipfile_serialization=False)
    server.files[MODEL_REL] = (tmp / "model.pkl").read_bytes()
    torch.manual_seed(0)
    detector = PersonDetector(config=DETECTOR_CONFIG, weights=None, opts=DETECTOR_OPTS)
    with torch.no_grad():  # every proposal is a person with p = 0.996 (above the default threshold 0.8)
        predictor = detector.model.roi_heads.box_predictor
        for t in (predictor.bbox_pred.weight, predictor.bbox_pred.bias, predictor.cls_score.weight,
                  predictor.cls_score.bias):
            t.zero_()
        predictor.cls_score.bias[0] = 10.0
    state = {k: v.numpy() for k, v in detector.model.state_dict().items()}
    server.files[DETECTOR_REL] = pickle.dumps({"model": state, "__author__": "Detectron2 Model Zoo"}, protocol=2)

    work = tmp / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLOWFAST_DET_ZOO_FILE": str(tmp / "zoo.json"),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "slowfast_det.tools.detect_video", str(bikes_mp4)], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(work / "detect_video_out" / "bikes.actions.csv")
    assert sorted(set(table["timestamp"])) == pytest.approx([float(s) for s in range(10)])
    acted = table[table["action_id"].notna()]
    assert len(acted) and {1, 2, 3} <= set(acted["action_id"].astype(int))
    assert all(names[int(a)] == n for a, n in zip(acted["action_id"], acted["action_name"], strict=True))
    assert sorted(r for r, _ in server.requests) == [DETECTOR_REL, MODEL_REL]  # the default names' files
    cache = tmp / "cache"
    assert sorted(json.loads((cache / "cache-lock.json").read_text())["files"]) == [
        "dl.fbaipublicfiles.com/" + DETECTOR_REL, "dl.fbaipublicfiles.com/" + MODEL_REL]

    # --offline: the cached files are enough; with an empty cache, the missing file is named
    monkeypatch.setenv("SLOWFAST_DET_ZOO_FILE", str(tmp / "zoo.json"))
    parser = get_args_parser()
    argv = [str(bikes_mp4), "--offline", "--stride", "5", "--no-progress", "--output-dir", str(tmp / "off")]
    assert main(parser.parse_args(argv)) == 0
    assert len(server.requests) == 2
    assert (tmp / "off" / "bikes.actions.csv").is_file()
    capsys.readouterr()
    from ava_tools.cli import run_cli

    assert run_cli(main, parser, [*argv, "--cache-dir", str(tmp / "empty")]) == 2
    err = capsys.readouterr().err
    assert "offline mode" in err and f"{tmp / 'empty'}/dl.fbaipublicfiles.com/{MODEL_REL}" in err
    assert len(server.requests) == 2


def test_zoo_cli_list_download_verify(zoo_env: tuple[ZooServer, Path], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ava_tools.cli import run_cli
    from slowfast_det.tools.zoo import get_args_parser, main

    server, tmp = zoo_env
    server.files["pyslowfast/model_zoo/ava/C2D_8x8_R50.pkl"] = b"x" * 3000
    (tmp / "zoo.json").write_text(json.dumps({"models": [
        {"name": "gone", "config": "AVA/SLOW_4x16_R50", "url": HOST + "pyslowfast/model_zoo/ava/gone.pkl"}]}))
    monkeypatch.setenv("SLOWFAST_DET_ZOO_FILE", str(tmp / "zoo.json"))

    def zoo(*argv: str) -> int:
        return run_cli(main, get_args_parser(), ["--no-progress", *argv])

    assert zoo("download", "C2D_8x8_R50") == 0
    out = capsys.readouterr().out
    assert "C2D_8x8_R50: " in out and "sha256 " in out and "recorded" in out
    assert zoo("list", "--kind", "action") == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["C2D_8x8_R50"][-3:] == ["3", "KiB", "yes"] and rows["SLOWFAST_32x2_R101_50_50"][-1] == "no"
    assert rows["C2D_8x8_R50"][2:5] == ["2.2", "19.5", "41.6"] and "gone" in rows
    assert zoo("verify") == 0 and "OK" in capsys.readouterr().out
    cached = tmp / "cache" / "dl.fbaipublicfiles.com" / "pyslowfast/model_zoo/ava/C2D_8x8_R50.pkl"
    cached.write_bytes(b"y" * 3000)
    assert zoo("verify") == 1 and "CHANGED" in capsys.readouterr().out
    assert zoo("download", "C2D_8x8_R50") == 2
    assert "changed since it was first downloaded" in capsys.readouterr().err
    assert zoo("download", "--force", "C2D_8x8_R50") == 0 and cached.read_bytes() == b"x" * 3000
    capsys.readouterr()
    assert zoo("download", "gone") == 2
    err = capsys.readouterr().err.splitlines()
    assert "HTTP 404 not found" in err[0] and f"{server.url}/pyslowfast/model_zoo/ava/gone.pkl" in err[0]
    monkeypatch.setenv("SLOWFAST_DET_OFFLINE", "1")
    assert zoo("download", "SLOWFAST_32x2_R101_50_50") == 2
    assert "is not in the cache" in capsys.readouterr().err
