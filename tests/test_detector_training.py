"""The Detectron2 person detector: training through detectron2's own loop, pycocotools AP, AVA box export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ava_tools.io import read_predicted_boxes
from ava_tools.synth import generate
from slowfast_det.detection import training as dt

TINY = dict(videos=3, seconds=6, seed=3, width=128, height=96, progress=False)
PARAMS = dt.DetectorParams(max_iter=20, base_lr=0.01, warmup_iters=2, ims_per_batch=2, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, **TINY)  # type: ignore[arg-type]
    return root


@pytest.fixture(scope="module")
def trained(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> dt.TrainedDetector:
    return dt.train_detector(synth, tmp_path_factory.mktemp("det"), params=PARAMS)


def test_training_runs_detectron2_loop_and_loss_decreases(trained: dt.TrainedDetector) -> None:
    assert not trained.reused
    assert len(trained.losses) == PARAMS.max_iter
    assert np.isfinite(trained.losses).all()
    terms = trained.loss_terms
    assert set(terms) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}

    def drop(values: list[float]) -> float:
        return float(np.mean(values[-5:]) / np.mean(values[:5]))

    # objectness and classification fall; box regression starts near 0 (no foreground proposal yet) and rises
    # as the RPN begins to find people, so the total is compared over the same windows only loosely
    assert drop(terms["loss_rpn_cls"]) < 0.6, terms["loss_rpn_cls"]
    assert drop(terms["loss_cls"]) < 0.9, terms["loss_cls"]
    assert drop(trained.losses) < 1.0, trained.losses
    assert trained.weights.is_file() and trained.config.is_file()
    state = torch.load(trained.weights, map_location="cpu", weights_only=True)["model"]
    # a small R18-FPN: BasicBlock backbone (conv1/conv2 only), one person class + background
    assert "backbone.bottom_up.res2.0.conv2.weight" in state
    assert not any(".conv3." in k for k in state)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2


def test_cached_weights_are_reused_only_with_same_parameters(
    synth: Path, trained: dt.TrainedDetector
) -> None:
    out = trained.weights.parent
    mtime = trained.weights.stat().st_mtime_ns
    again = dt.train_detector(synth, out, params=PARAMS)
    assert again.reused and again.losses == [] and trained.weights.stat().st_mtime_ns == mtime
    changed = dt.DetectorParams(**{**PARAMS.__dict__, "max_iter": 2})
    other_dir = out.parent / "det_changed"
    other_dir.mkdir()
    for name in (dt.WEIGHTS_NAME, dt.CONFIG_NAME, dt.PARAMS_NAME):
        (other_dir / name).write_bytes((out / name).read_bytes())
    retrained = dt.train_detector(synth, other_dir, params=changed)
    assert not retrained.reused and len(retrained.losses) == 2
    assert json.loads((other_dir / dt.PARAMS_NAME).read_text())["params"]["max_iter"] == 2


def test_coco_metrics_known_answers(synth: Path) -> None:
    json_path = synth / "annotations" / "coco_person_val.json"
    coco = json.loads(json_path.read_text())
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in coco["annotations"]
    ]
    m = dt.coco_box_metrics(json_path, perfect)
    assert m.ap == pytest.approx(100.0) and m.ap50 == pytest.approx(100.0)
    assert m.num_gt_boxes == len(coco["annotations"])
    # every box shifted right by its own width: IoU 0 with its person, so nothing is found
    shifted = [{**d, "bbox": [d["bbox"][0] + d["bbox"][2] * 1.01, *d["bbox"][1:]]} for d in perfect]
    assert dt.coco_box_metrics(json_path, shifted).ap50 < 100.0 / len(perfect) + 1e-6
    assert dt.coco_box_metrics(json_path, []).ap == 0.0


def test_evaluate_and_export_boxes(synth: Path, trained: dt.TrainedDetector) -> None:
    cfg, model = dt.load_detector(trained.config)
    metrics = dt.evaluate_detector(model, cfg, synth)
    for value in (metrics.ap, metrics.ap50, metrics.ap75):
        assert 0.0 <= value <= 100.0
    assert metrics.ap50 >= metrics.ap75

    path = dt.export_predicted_boxes(model, cfg, synth, split="val", min_score=0.0)
    assert path == synth / "annotations" / "ava_detection_val_boxes_and_labels.csv"
    raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    assert raw.shape[1] == 8 and len(raw) > 0
    assert (raw[6] == "").all()  # empty label column, as PySlowFast's predicted-box files
    assert raw[1].str.fullmatch(r"\d{4}").all()
    coords = raw[[2, 3, 4, 5]].astype(float).to_numpy()
    assert ((coords >= 0) & (coords <= 1)).all()
    assert (coords[:, 0] <= coords[:, 2]).all() and (coords[:, 1] <= coords[:, 3]).all()
    scores = raw[7].astype(float).to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    keyframes = {(k.video_id, k.timestamp) for k in dt.keyframe_images(synth, "val")}
    assert {(v, int(t)) for v, t in zip(raw[0], raw[1], strict=True)} <= keyframes
    # the file reads unchanged with the project's AVA reader, threshold applied as PySlowFast does
    table = read_predicted_boxes(path, score_thresh=0.5)
    assert len(table) == int((scores >= 0.5).sum())

    # a second export rewrites the same content (atomic replace, no temp files left behind)
    dt.export_predicted_boxes(model, cfg, synth, split="val", min_score=0.0)
    assert sorted(p.name for p in path.parent.glob(".ava_detection*")) == []


def test_keyframes_match_synth_timeline(synth: Path) -> None:
    kfs = dt.keyframe_images(synth, "train")
    seconds = TINY["seconds"]
    assert sorted({k.timestamp for k in kfs}) == list(range(902, 900 + int(seconds) - 1))  # type: ignore[call-overload]
    for k in kfs:
        assert k.path.name == f"{k.video_id}_{(k.timestamp - 900) * 30 + 1:06d}.jpg" and k.path.is_file()


def test_groundtruth_boxes_round_trip(synth: Path, tmp_path: Path) -> None:
    gt_path = synth / "annotations" / "ava_val_v2.2.csv"
    out = dt.write_groundtruth_boxes(gt_path, tmp_path / "gt_boxes.csv")
    boxes = read_predicted_boxes(out, score_thresh=0.9)
    gt = pd.read_csv(gt_path, header=None)
    expected = {(r[0], int(r[1]), *(round(float(x), 3) for x in r[2:6])) for r in gt.itertuples(index=False)}
    cols = ["video_id", "timestamp", "x1", "y1", "x2", "y2"]
    got = {(v, int(t), *(round(float(x), 3) for x in xs)) for v, t, *xs in boxes[cols].to_numpy().tolist()}
    assert got == expected and len(boxes) == len(expected)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(dt.DetectorDataError, match="coco_person_train.json does not exist"):
        dt.train_detector(tmp_path, tmp_path / "out", params=PARAMS)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "coco_person_val.json").write_text("{not json")
    with pytest.raises(dt.DetectorDataError, match="coco_person_val.json: not valid JSON"):
        dt.keyframe_images(tmp_path, "val")


def test_same_seed_same_detector(synth: Path, trained: dt.TrainedDetector, tmp_path: Path) -> None:
    """Reproducible: the same seed, data and thread count give the same losses and bit-identical weights."""
    again = dt.train_detector(synth, tmp_path, params=PARAMS, force=True)
    assert again.losses == trained.losses
    first = torch.load(trained.weights, map_location="cpu", weights_only=True)["model"]
    second = torch.load(again.weights, map_location="cpu", weights_only=True)["model"]
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
