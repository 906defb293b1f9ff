"""Training and testing on SynthAVA with a tiny SlowFast: resume, CSV/metrics outputs, bad samples, pieces."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import slowfast_r50_stages_yaml

from ava_tools.evaluate import evaluate, read_detections_csv, read_groundtruth_csv
from ava_tools.labelmap import AvaFormatError
from ava_tools.synth import generate
from slowfast_det import builders
from slowfast_det.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from slowfast_det.config import ConfigError, load_config
from slowfast_det.data import SampleError
from slowfast_det.engine.launch import load_initial_weights
from slowfast_det.engine.loader import SeededSamples, ShardedSampler, build_loader, set_loader_epoch
from slowfast_det.engine.tester import NonFiniteScoresError, Predictions, merge_predictions
from slowfast_det.engine.trainer import detection_loss_sum, find_last_checkpoint
from slowfast_det.models import build_model
from slowfast_det.pipeline.tables import AVA_DETECTION_COLUMNS, detections_frame, write_detections_csv
from slowfast_det.tools import test_net, train_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]

# A tiny SlowFast (width 4, 8 frames, 48-pixel crops) on SynthAVA (2 train videos x 5 keyframes, 1 val video).
TINY = (
    """
TRAIN: {{DATASET: ava, BATCH_SIZE: 2, EVAL_PERIOD: 100, CHECKPOINT_PERIOD: 1, AUTO_RESUME: True}}
TEST: {{BATCH_SIZE: 2}}
DATA: {{NUM_FRAMES: 8, SAMPLING_RATE: 2, TRAIN_JITTER_SCALES: [48, 56], TRAIN_CROP_SIZE: 48, TEST_CROP_SIZE: 48,
       INPUT_CHANNEL_NUM: [3, 3]}}
DETECTION: {{ENABLE: True, ALIGNED: True}}
AVA:
  FRAME_DIR: {root}/frames
  FRAME_LIST_DIR: {root}/frame_lists
  ANNOTATION_DIR: {root}/annotations
  TRAIN_LISTS: [train.csv]
  TEST_LISTS: [val.csv]
  TRAIN_GT_BOX_LISTS: [ava_train_v2.2.csv]
  TRAIN_PREDICT_BOX_LISTS: []
  TEST_PREDICT_BOX_LISTS: [ava_val_v2.2.csv]   # ground-truth boxes as "detections" (person id as score)
  DETECTION_SCORE_THRESH: 0.0
  LABEL_MAP_FILE: ava_action_list_synth_for_eval.pbtxt
  GROUNDTRUTH_FILE: ava_val_v2.2.csv
  EXCLUSION_FILE: ava_val_excluded_timestamps_v2.2.csv
  FULL_TEST_ON_VAL: True
SLOWFAST: {{ALPHA: 4, BETA_INV: 2, FUSION_CONV_CHANNEL_RATIO: 2, FUSION_KERNEL_SZ: 3}}
"""
    + slowfast_r50_stages_yaml(width_per_group=4)
    + """SOLVER: {{BASE_LR: 0.05, LR_POLICY: cosine, MAX_EPOCH: 2, WARMUP_EPOCHS: 0.5, WARMUP_START_LR: 0.01,
         MOMENTUM: 0.9, WEIGHT_DECAY: 1.0e-4}}
MODEL: {{NUM_CLASSES: 9, ARCH: slowfast, MODEL_NAME: SlowFast, LOSS_FUNC: bce, DROPOUT_RATE: 0.5}}
DATA_LOADER: {{NUM_WORKERS: 0, PIN_MEMORY: False}}
NUM_GPUS: 0
RNG_SEED: 3
"""
)


def run_tool(tool: Any, argv: list[str]) -> None:
    """``tool.cli(argv)`` as its console script runs it, with ``--debug`` so that an error raises here; the
    run must end with exit status 0."""
    with pytest.raises(SystemExit) as info:
        tool.cli(["--debug", *argv])
    assert info.value.code == 0


def make_synth(root: Path) -> Path:
    """SynthAVA: 3 videos x 8 s at 96x72 (keyframes 902..906): 2 train videos, 1 val video (cached)."""
    generate(root, videos=3, seconds=8, seed=0, width=96, height=72, progress=False)
    return root


def write_config(path: Path, synth: Path) -> Path:
    path.write_text(TINY.format(root=synth))
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.getbasetemp() / "synth_engine")


@pytest.fixture(scope="module")
def cfg_file(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", synth)


def iter_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(cfg_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-epoch run; returns its OUTPUT_DIR."""
    out = tmp_path_factory.mktemp("run_full")
    run_tool(train_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out), "TENSORBOARD.ENABLE", "True"])
    return out


# ------------------------------------------------------------------------------------------ training
def test_training_logs_checkpoints_and_schedule(trained: Path, cfg_file: Path) -> None:
    ckpts = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert ckpts == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert find_last_checkpoint(trained) == trained / "checkpoints" / "checkpoint_epoch_00002.pyth"
    rows = iter_rows(trained / "train_iters.csv")
    # 10 training keyframes, global batch 2 -> 5 iterations per epoch
    assert [(int(r["epoch"]), int(r["iter"])) for r in rows] == [(e, i) for e in range(2) for i in range(5)]
    from slowfast_det.engine.solver import LRSchedule

    schedule = LRSchedule(**builders.lr_schedule_kwargs(load_config(cfg_file)))
    for r in rows:  # the rate of every iteration follows the fractional-epoch schedule
        assert float(r["lr"]) == pytest.approx(schedule.lr_at(int(r["epoch"]) + int(r["iter"]) / 5), rel=1e-12)
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    epochs = [json.loads(line) for line in (trained / "train_epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert "eval/mAP" in epochs[1] and 0.0 <= epochs[1]["eval/mAP"] <= 1.0  # the last epoch is evaluated
    state = load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert state["epoch"] == 1 and state["optimizer_state"] is not None and state["cfg"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "runs-ava")).Reload()
    assert [e.step for e in events.Scalars("Train/loss")] == list(range(10))
    assert [e.value for e in events.Scalars("Train/loss")] == pytest.approx([float(r["loss"]) for r in rows])
    assert events.Scalars("Val/mAP")[0].value == pytest.approx(epochs[1]["eval/mAP"])


def test_resume_repeats_the_uninterrupted_run_exactly(trained: Path, cfg_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "checkpoint_epoch_00001.pyth", out / "checkpoints")
    # rows an interrupted run logged for epoch 1 before dying must not survive the resume
    full = iter_rows(trained / "train_iters.csv")
    with open(out / "train_iters.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(full[0]))
        writer.writeheader()
        writer.writerows(full[:5] + [{**full[5], "loss": "123.0"}])
    run_tool(train_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out)])  # TRAIN.AUTO_RESUME

    resumed = iter_rows(out / "train_iters.csv")
    assert [(r["epoch"], r["iter"], r["loss"], r["lr"]) for r in resumed] == [
        (r["epoch"], r["iter"], r["loss"], r["lr"]) for r in full
    ]  # same losses, bit for bit
    a = load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")
    b = load_checkpoint(out / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for key, value in a["optimizer_state"]["state"].items():
        assert torch.equal(value["momentum_buffer"], b["optimizer_state"]["state"][key]["momentum_buffer"])


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` short, as a crash or a full disk during a write or copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def same_run(a: Path, b: Path) -> None:
    """Runs ``a`` and ``b`` logged the same losses and rates, bit for bit, and end with equal weights."""
    rows_a, rows_b = iter_rows(a / "train_iters.csv"), iter_rows(b / "train_iters.csv")
    assert [(r["epoch"], r["iter"], r["loss"], r["lr"]) for r in rows_a] == [
        (r["epoch"], r["iter"], r["loss"], r["lr"]) for r in rows_b
    ]
    wa = load_checkpoint(a / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"]
    wb = load_checkpoint(b / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"]
    assert wa.keys() == wb.keys() and all(torch.equal(v, wb[k]) for k, v in wa.items())


def epoch_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_epochs.jsonl").read_text().splitlines()]


def test_auto_resume_skips_a_truncated_checkpoint(
    trained: Path, cfg_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The newest checkpoint cut short (e.g. a crash while it was copied): auto-resume warns why, resumes from
    the older one and repeats the uninterrupted run exactly; when no checkpoint can be read it stops instead
    of training from scratch."""
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    newest = out / "checkpoints" / "checkpoint_epoch_00002.pyth"
    truncate(newest)
    with caplog.at_level("WARNING"):
        run_tool(train_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out)])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("skipping checkpoint_epoch_00002.pyth" in m and "truncated or incomplete file" in m for m in warned)
    same_run(trained, out)
    assert epoch_records(out)[-1]["eval/mAP"] == epoch_records(trained)[-1]["eval/mAP"]

    for ckpt in (out / "checkpoints").iterdir():
        truncate(ckpt)
    with pytest.raises(CheckpointError, match="no checkpoint in .* can be read .*truncated or incomplete"):
        run_tool(train_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out)])


def test_a_failed_final_evaluation_runs_on_rerun(trained: Path, cfg_file: Path, synth: Path, tmp_path: Path) -> None:
    """The last epoch's evaluation fails (a bad ground-truth row): the rerun after the fix evaluates that
    epoch instead of reporting "next epoch 3 of 2" and doing nothing; the log then reads like an
    uninterrupted run's."""
    gt = tmp_path / "gt.csv"
    good = (synth / "annotations" / "ava_val_v2.2.csv").read_text()
    gt.write_text(good + "synth002,0904,0.5,0.278,1.604,0.750,1,0\n")  # x2 > 1: the evaluator refuses it
    out = tmp_path / "run"
    args = ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out), "AVA.GROUNDTRUTH_FILE", str(gt)]
    with pytest.raises(AvaFormatError, match=f"gt.csv, line {len(good.splitlines()) + 1}: box coordinate outside"):
        run_tool(train_net, args)
    assert (out / "checkpoints" / "checkpoint_epoch_00002.pyth").is_file()  # both epochs were trained
    assert [r["epoch"] for r in epoch_records(out)] == [0]
    gt.write_text(good)
    run_tool(train_net, args)
    same_run(trained, out)
    full, rerun = epoch_records(trained), epoch_records(out)
    assert [r["epoch"] for r in rerun] == [0, 1]
    for a, b in zip(full, rerun, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    before = (out / "train_epochs.jsonl").read_bytes()
    run_tool(train_net, args)  # finished and evaluated: nothing to do
    assert (out / "train_epochs.jsonl").read_bytes() == before


def test_training_checks_the_test_inputs_before_the_first_epoch(cfg_file: Path, tmp_path: Path) -> None:
    """A missing test box file, or a label map with more classes than the model, stops the run before any
    epoch is trained (not after the last one)."""
    out = tmp_path / "run"
    base = ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out)]
    with pytest.raises(OSError, match="missing_boxes.csv"):
        run_tool(train_net, [*base, "AVA.TEST_PREDICT_BOX_LISTS", "['missing_boxes.csv']"])
    with pytest.raises(OSError, match="missing_gt.csv"):
        run_tool(train_net, [*base, "AVA.GROUNDTRUTH_FILE", "missing_gt.csv"])
    from ava_tools.labelmap import AVA_V22_ALL, bundled_labelmap_path

    with pytest.raises(ConfigError, match=r"class ids up to 80 .* the model has 9 classes \(MODEL.NUM_CLASSES 9\)"):
        run_tool(train_net, [*base, "AVA.LABEL_MAP_FILE", str(bundled_labelmap_path(AVA_V22_ALL))])
    assert not (out / "checkpoints").exists() and iter_rows(out / "train_iters.csv") == []


def test_resume_rejects_a_weights_only_file(trained: Path, cfg_file: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "checkpoint_epoch_00001.pyth"
    with pytest.raises(CheckpointError, match=f"{ckpt}: does not fit the model of this config .*size mismatch"):
        run_tool(train_net, ["--cfg", str(cfg_file), "--no-progress", "--resume", str(ckpt), "OUTPUT_DIR",
                             str(tmp_path / "wider"), "RESNET.WIDTH_PER_GROUP", "8"])
    cfg = load_config(cfg_file)
    weights = save_checkpoint(tmp_path / "weights.pyth", model=build_model(cfg))
    with pytest.raises(ValueError, match="cannot resume"):
        run_tool(
            train_net,
            [
                "--cfg",
                str(cfg_file),
                "--no-progress",
                "--resume",
                str(weights),
                "OUTPUT_DIR",
                str(tmp_path / "out"),
            ]
        )


def test_initial_weights_load_the_backbone_of_a_classifier(cfg_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    kinetics = build_model(load_config(cfg_file, ["MODEL.NUM_CLASSES", "400"]))
    path = save_checkpoint(tmp_path / "k400.pyth", model=kinetics)
    torch.manual_seed(1)
    ava = build_model(load_config(cfg_file))
    head_before = ava.head.projection.weight.detach().clone()
    load_initial_weights(ava, path)
    src = kinetics.state_dict()
    for key, value in ava.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, src[key]), key
    assert torch.equal(ava.head.projection.weight, head_before)  # 400-class head not loaded
    same = build_model(load_config(cfg_file))
    load_initial_weights(same, save_checkpoint(tmp_path / "ava.pyth", model=ava))
    assert torch.equal(same.head.projection.weight, ava.head.projection.weight)  # fitting head: loaded


def test_bad_frame_names_video_second_and_file(synth: Path, tmp_path: Path) -> None:
    broken = tmp_path / "synth_broken"
    shutil.copytree(synth, broken)
    victim = broken / "frames" / "synth000" / "synth000_000061.jpg"  # frame 60 = keyframe second 902
    victim.unlink()
    cfg_file = write_config(tmp_path / "broken.yaml", broken)
    with pytest.raises(SampleError) as info:
        run_tool(
            train_net,
            [
                "--cfg",
                str(cfg_file),
                "--no-progress",
                "OUTPUT_DIR",
                str(tmp_path / "out"),
                "TRAIN.BATCH_SIZE",
                "10",
            ]
        )
    text = str(info.value) + "".join(getattr(info.value, "__notes__", []))
    assert "synth000" in text and "902" in text and "synth000_000061.jpg" in text
    assert "epoch 1" in text


def console_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script ``name`` on this checkout's code (PYTHONPATH first)."""
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        pytest.skip(f"console script {name} is not installed next to {sys.executable}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_user_errors_of_slowfast_train_are_one_line(synth: Path, cfg_file: Path, tmp_path: Path) -> None:
    """A bad config key, a missing frame file (read in a DataLoader worker) and a truncated checkpoint: one
    line naming the file, exit status 2, no traceback (``--debug`` shows it: tests/test_entry_points.py)."""
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(cfg_file.read_text() + "TEST_SPLIT_TYPO: 3\n")
    r = console_script("slowfast-train", "--cfg", str(bad_cfg), "OUTPUT_DIR", str(tmp_path / "a"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{bad_cfg}: unknown config key TEST_SPLIT_TYPO" in r.stderr

    broken = tmp_path / "synth_broken"
    shutil.copytree(synth, broken, ignore=shutil.ignore_patterns("videos"))
    victim = broken / "frames" / "synth000" / "synth000_000061.jpg"  # frame 60 = keyframe second 902
    victim.unlink()
    r = console_script("slowfast-train", "--cfg", str(write_config(tmp_path / "broken.yaml", broken)), "--no-progress",
                       "OUTPUT_DIR", str(tmp_path / "b"), "TRAIN.BATCH_SIZE", "10", "DATA_LOADER.NUM_WORKERS", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line.endswith(f"keyframe 0 (video synth000, second 902): {victim}: frame file not found"), line

    ckpt = tmp_path / "checkpoint_epoch_00001.pyth"
    save_checkpoint(ckpt, model=build_model(load_config(cfg_file)), epoch=0)
    truncate(ckpt, 0.7)
    args = ["--cfg", str(cfg_file), "--no-progress", "--resume", str(ckpt), "OUTPUT_DIR", str(tmp_path / "c")]
    r = console_script("slowfast-train", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"slowfast-train: error: {ckpt}: truncated or incomplete file" in r.stderr


# ------------------------------------------------------------------------------------------- testing
def test_test_net_writes_ava_csvs_and_metrics(trained: Path, cfg_file: Path, synth: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "checkpoint_epoch_00002.pyth"
    out = tmp_path / "test"
    run_tool(
            test_net,
        [
            "--cfg",
            str(cfg_file),
            "--no-progress",
            "OUTPUT_DIR",
            str(out),
            "TEST.CHECKPOINT_FILE_PATH",
            str(ckpt),
        ]
    )
    ann = synth / "annotations"
    det = pd.read_csv(out / "detections.csv", header=None, names=AVA_DETECTION_COLUMNS, dtype={"video_id": str})
    assert (out / "groundtruth.csv").read_bytes() == (ann / "ava_val_v2.2.csv").read_bytes()

    # reference scores: the model on each test keyframe, one at a time, without any loader
    cfg = load_config(cfg_file)
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(ckpt)["model_state"])
    model.eval()
    dataset = builders.build_dataset(cfg, "test")
    rows = []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            boxes = torch.cat([torch.zeros(len(item["boxes"]), 1), torch.from_numpy(item["boxes"]).float()], 1)
            scores = torch.sigmoid(model([x[None] for x in item["inputs"]], boxes)).numpy()
            for box, s in zip(item["ori_boxes"], scores, strict=True):
                for cid in range(1, 10):
                    rows.append((item["video_id"], item["metadata"][0, 1], *box, cid, s[cid - 1]))
    ref = pd.DataFrame(rows, columns=AVA_DETECTION_COLUMNS)
    gt = pd.read_csv(ann / "ava_val_v2.2.csv", header=None, dtype=str)
    n_boxes = len(gt.iloc[:, :6].drop_duplicates())  # one test box per distinct (video, second, box)
    assert len(det) == len(ref) == n_boxes * 9  # one row per box and class
    assert (det["video_id"] == ref["video_id"]).all() and (det["timestamp"] == ref["timestamp"]).all()
    assert (det["action_id"] == ref["action_id"]).all()
    np.testing.assert_allclose(det[["x1", "y1", "x2", "y2"]].to_numpy(), ref[["x1", "y1", "x2", "y2"]].to_numpy())
    np.testing.assert_allclose(det["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-5, atol=1e-6)

    metrics = json.loads((out / "metrics.json").read_text())
    lm = ann / "ava_action_list_synth_for_eval.pbtxt"
    again = evaluate(out / "groundtruth.csv", out / "detections.csv", lm)
    assert metrics["mAP"] == pytest.approx(again.mean_ap, abs=1e-12)
    assert metrics["metrics"]["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(again.mean_ap, abs=1e-12)
    assert metrics["semantics"] == "current" and metrics["num_boxes"] == n_boxes

    # --use-exclusions: the earlier evaluator with the exclusion file
    run_tool(
            test_net,
        [
            "--cfg",
            str(cfg_file),
            "--no-progress",
            "--use-exclusions",
            "OUTPUT_DIR",
            str(out / "excl"),
            "TEST.CHECKPOINT_FILE_PATH",
            str(ckpt),
        ]
    )
    excl = json.loads((out / "excl" / "metrics.json").read_text())
    legacy = evaluate(
        ann / "ava_val_v2.2.csv",
        out / "detections.csv",
        lm,
        exclusions=ann / "ava_val_excluded_timestamps_v2.2.csv",
    )
    assert excl["semantics"] == "earlier-with-exclusions"
    assert excl["mAP"] == pytest.approx(legacy.mean_ap, abs=1e-12)


def test_test_net_without_weights_refuses(cfg_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no weights to test"):
        run_tool(test_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(tmp_path)])


def val_box_count(synth: Path) -> int:
    """Boxes the tiny config tests: one per distinct (video, second, box) of the val ground truth."""
    gt = pd.read_csv(synth / "annotations" / "ava_val_v2.2.csv", header=None, dtype=str)
    return len(gt.iloc[:, :6].drop_duplicates())


def nan_head_checkpoint(cfg_file: Path, path: Path) -> Path:
    """A real checkpoint (the project's own format) whose classifier bias is NaN."""
    model = build_model(load_config(cfg_file))
    with torch.no_grad():
        model.head.projection.bias.fill_(float("nan"))
    return save_checkpoint(path, model=model)


def test_test_net_stops_on_nonfinite_scores(cfg_file: Path, synth: Path, tmp_path: Path) -> None:
    """NaN scores stop the test with a message naming the checkpoint, the first video and keyframe and the
    count, and nothing is written; --allow-nonfinite writes them (as nan) and evaluates without them."""
    ckpt = nan_head_checkpoint(cfg_file, tmp_path / "nan_head.pyth")
    out = tmp_path / "test"
    args = ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out), "TEST.CHECKPOINT_FILE_PATH", str(ckpt)]
    with pytest.raises(NonFiniteScoresError) as info:
        run_tool(test_net, args)
    message = str(info.value)
    n = val_box_count(synth)
    assert f"checkpoint {ckpt}: {n * 9} of {n * 9} scores ({n} of {n} boxes) in the test set are NaN" in message
    assert "the first at video synth002, keyframe 902" in message and "--allow-nonfinite" in message
    assert not (out / "detections.csv").exists() and not (out / "metrics.json").exists()

    run_tool(test_net, ["--allow-nonfinite", *args])
    det = pd.read_csv(out / "detections.csv", header=None, names=AVA_DETECTION_COLUMNS, dtype={"video_id": str})
    assert len(det) == n * 9 and det["score"].isna().all()
    assert "nan" in (out / "detections.csv").read_text().splitlines()[0].split(",")[-1]
    assert (out / "groundtruth.csv").read_bytes() == (synth / "annotations" / "ava_val_v2.2.csv").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nonfinite_detection_rows"] == n * 9 and metrics["mAP"] == 0.0
    assert metrics["model"] == f"checkpoint {ckpt}"


def test_test_net_writes_detections_before_evaluating(trained: Path, cfg_file: Path, synth: Path,
                                                       tmp_path: Path) -> None:
    """An evaluation that fails (a bad ground-truth row) keeps the computed detections and ground truth."""
    gt = tmp_path / "gt.csv"
    good = (synth / "annotations" / "ava_val_v2.2.csv").read_text()
    gt.write_text(good + "synth002,0904,0.5,0.2,1.6,0.7,1,0\n")  # x2 > 1: the evaluator refuses it
    out = tmp_path / "test"
    ckpt = trained / "checkpoints" / "checkpoint_epoch_00002.pyth"
    with pytest.raises(AvaFormatError, match=f"gt.csv, line {len(good.splitlines()) + 1}: box coordinate outside"):
        run_tool(test_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out),
                            "TEST.CHECKPOINT_FILE_PATH", str(ckpt), "AVA.GROUNDTRUTH_FILE", str(gt)])
    det = read_detections_csv(out / "detections.csv")
    assert len(det) == val_box_count(synth) * 9 and det["score"].between(0, 1).all()
    assert (out / "groundtruth.csv").read_bytes() == gt.read_bytes()
    assert not (out / "metrics.json").exists()


def test_test_net_label_map_must_fit_the_model(cfg_file: Path, tmp_path: Path) -> None:
    """A 9-class model with AVA's 80-class label map fails naming both, before any weights load or model
    runs (the checkpoint named here does not even exist)."""
    from ava_tools.labelmap import AVA_V22_ALL, bundled_labelmap_path

    labelmap = bundled_labelmap_path(AVA_V22_ALL)
    with pytest.raises(ConfigError) as info:
        run_tool(test_net, ["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(tmp_path),
                            "TEST.CHECKPOINT_FILE_PATH", str(tmp_path / "absent.pyth"),
                            "AVA.LABEL_MAP_FILE", str(labelmap)])
    assert f"label map {labelmap} has class ids up to 80" in str(info.value)
    assert "the model has 9 classes (MODEL.NUM_CLASSES 9)" in str(info.value)


def test_quick_validation_keeps_every_fourth_second(trained: Path, cfg_file: Path, synth: Path) -> None:
    """Evaluation during training without AVA.FULL_TEST_ON_VAL: keyframes whose second % 4 == 0 only."""
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.launch import build_split_loader
    from slowfast_det.engine.tester import evaluate_predictions, gather_predictions, predict

    cfg = load_config(cfg_file, ["AVA.FULL_TEST_ON_VAL", "False"])
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"])
    ctx = init_distributed(use_gpu=False)
    preds = gather_predictions(predict(model, build_split_loader(cfg, "val", ctx), device=ctx.device, progress=False))
    assert set(preds.timestamps.tolist()) == {904}  # the val split (902..906) keeps second 904 only
    kw = builders.evaluation_kwargs(cfg, during_training=True)
    assert kw["keyframe_stride"] == 4
    out = evaluate_predictions(preds, **kw)
    gt = read_groundtruth_csv(kw["groundtruth_path"])
    mini = gt[gt["timestamp"].astype(int) % 4 == 0]
    assert len(out.groundtruth) == len(mini) > 0
    assert out.map == pytest.approx(evaluate(mini, out.detections, kw["labelmap_path"]).mean_ap, abs=1e-12)


class _ToyItems(torch.utils.data.Dataset):
    """Items in the AVA dataset's layout: one (3, 2, 4, 4) clip, 1-3 boxes with random multi-hot labels."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        k = 1 + i % 3
        return {
            "inputs": [torch.randn(3, 2, 4, 4, generator=g)],
            "boxes": np.random.rand(k, 4),
            "ori_boxes": np.zeros((k, 4)),
            "labels": (torch.rand(k, 5, generator=g) > 0.5).float().numpy(),
            "metadata": np.zeros((k, 2), np.int64),
            "video_id": "v",
            "index": i,
        }


class _ToyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 5)

    def forward(self, inputs: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        feats = inputs[0].mean(dim=(2, 3, 4))  # (B, 3)
        return self.fc(feats[boxes[:, 0].long()] * (1 + boxes[:, 1:2]))  # (N, 5)


@pytest.mark.parametrize("clip", [("value", 1e-3), ("l2norm", 1e-3), (None, None)])
def test_trainer_step_is_mean_bce_gradient_with_clipping(clip: tuple, tmp_path: Path) -> None:
    from slowfast_det.data import ava_collate
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.solver import LRSchedule, build_optimizer
    from slowfast_det.engine.trainer import Trainer

    torch.manual_seed(0)
    model = _ToyModel()
    loader = build_loader(_ToyItems(), collate_fn=ava_collate, train=True, global_batch_size=4, seed=2)
    set_loader_epoch(loader, 0)
    (batch,) = list(loader)  # the one batch the trainer will see
    ref = _ToyModel()
    ref.load_state_dict(model.state_dict())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(ref(batch["inputs"], batch["boxes"]), batch["labels"])
    loss.backward()  # PySlowFast's loss: the mean over every box and class
    grads: dict[str, torch.Tensor] = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    kind, c = clip
    if kind == "value":
        expected = {n: ref.state_dict()[n] - g.clamp(-c, c) for n, g in grads.items()}
    elif kind == "l2norm":
        norm = torch.cat([g.flatten() for g in grads.values()]).norm()
        assert norm > c
        expected = {n: ref.state_dict()[n] - g * (c / norm) for n, g in grads.items()}
    else:
        expected = {n: ref.state_dict()[n] - g for n, g in grads.items()}
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(model, base_lr=1.0, momentum=0.0, weight_decay=0.0, nesterov=False),
        schedule=LRSchedule(policy="constant", base_lr=1.0, max_epoch=1),
        train_loader=loader,
        ctx=init_distributed(use_gpu=False),
        output_dir=tmp_path,
        max_epoch=1,
        progress=False,
        clip_grad_val=c if kind == "value" else None,
        clip_grad_l2norm=c if kind == "l2norm" else None,
    )
    (record,) = trainer.fit()
    assert record["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- pieces
def test_loss_is_pyslowfast_mean_bce() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 9) * 3, (torch.rand(5, 9) > 0.7).float()
    naive = (
        sum(
            -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
            for x, y in zip(logits.flatten().tolist(), labels.flatten().tolist(), strict=True)
        )
        / labels.numel()
    )
    assert float(detection_loss_sum(logits, labels)) / labels.numel() == pytest.approx(naive, rel=1e-5)
    assert float(detection_loss_sum(logits, labels)) / labels.numel() == pytest.approx(
        float(torch.nn.BCELoss()(torch.sigmoid(logits), labels)), rel=1e-5
    )


@pytest.mark.parametrize("n,batch,world", [(10, 4, 2), (13, 6, 3), (8, 2, 1)])
def test_sharded_batches_equal_the_single_process_batches(n: int, batch: int, world: int) -> None:
    for epoch in range(2):
        single = ShardedSampler(n, seed=5, global_batch_size=batch, drop_last=True)
        single.set_epoch(epoch)
        order = single.indices()
        assert len(order) == (n // batch) * batch and len(set(order)) == len(order)
        ranks = []
        for r in range(world):
            s = ShardedSampler(n, rank=r, world_size=world, seed=5, global_batch_size=batch, drop_last=True)
            s.set_epoch(epoch)
            ranks.append(s.indices())
        per = batch // world
        for step in range(n // batch):
            union = sorted(i for idx in ranks for i in idx[step * per : (step + 1) * per])
            assert union == sorted(order[step * batch : (step + 1) * batch])
    a, b = ShardedSampler(n, seed=5), ShardedSampler(n, seed=5)
    b.set_epoch(1)
    assert a.indices() != b.indices() and sorted(a.indices()) == sorted(b.indices())


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> dict:
        return {"x": float(torch.rand(())), "y": float(np.random.rand()), "i": i}


def test_seeded_samples_depend_only_on_seed_epoch_and_index() -> None:
    ds = SeededSamples(_RandomItems(), seed=1)
    forward = [ds[i] for i in range(6)]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    backward = [ds[i] for i in reversed(range(6))][::-1]
    assert torch.equal(torch.rand(3), before)  # the caller's RNG is untouched
    assert forward == backward
    ds.set_epoch(1)
    assert ds[0] != forward[0] and ds[0][0] == 0


def test_loader_test_batches_keep_groups_apart() -> None:
    def collate(items: Sequence) -> dict:
        return {
            "boxes": torch.tensor([[float(b), 0, 0, 1, 1] for b in range(len(items))]),
            "i": [it["i"] for it in items],
        }

    groups = np.array([0, 0, 0, 1, 1, 2])
    seen = []
    for r in range(2):
        loader = build_loader(
            _RandomItems(),
            collate_fn=collate,
            train=False,
            global_batch_size=4,
            rank=r,
            world_size=2,
            group_ids=groups,
        )
        set_loader_epoch(loader, 0)
        for batch in loader:
            assert len(set(groups[batch["i"]])) == 1 and batch["sample_index"].tolist() == batch["i"]
            seen.extend(batch["i"])
    assert sorted(seen) == list(range(6))


def _preds(samples: list[int], boxes_per: int = 2) -> Predictions:
    idx = np.repeat(np.asarray(samples, np.int64), boxes_per)
    return Predictions(
        sample_index=idx,
        video_ids=np.asarray([f"v{i}" for i in idx], dtype=object),
        timestamps=902 + idx,
        boxes=np.tile(np.arange(boxes_per, dtype=np.float64)[:, None] / 10, (len(samples), 4)),
        scores=(idx[:, None] + np.arange(3)[None] / 10).astype(np.float32),
    )


def test_merge_predictions_drops_padding_duplicates_and_restores_order() -> None:
    rank0, rank1 = _preds([0, 2, 4]), _preds([1, 3, 0])  # sample 0 padded onto rank 1
    merged = merge_predictions([rank0, rank1])
    single = _preds([0, 1, 2, 3, 4])
    for field in ("sample_index", "timestamps", "boxes", "scores"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(single, field))
    assert merged.video_ids.tolist() == single.video_ids.tolist()


def test_detections_frame_rows_and_round_trip(tmp_path: Path) -> None:
    scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    frame = detections_frame(video_ids=["a", "b"], timestamps=[902, 903], boxes=boxes, scores=scores, class_ids=[3, 1])
    assert frame.values.tolist() == [
        ["a", 902, 0.1, 0.2, 0.3, 0.4, 1, pytest.approx(0.1)],
        ["a", 902, 0.1, 0.2, 0.3, 0.4, 3, pytest.approx(0.3)],
        ["b", 903, 0.5, 0.6, 0.7, 0.8, 1, pytest.approx(0.4)],
        ["b", 903, 0.5, 0.6, 0.7, 0.8, 3, pytest.approx(0.6)],
    ]
    path = write_detections_csv(tmp_path / "d.csv", frame)
    back = read_detections_csv(path)
    assert back["video_id"].tolist() == ["a", "a", "b", "b"] and back["action_id"].tolist() == [1, 3, 1, 3]
    np.testing.assert_array_equal(back["score"].to_numpy().astype(np.float32), frame["score"].to_numpy())
    with pytest.raises(ValueError, match="class ids"):
        detections_frame(video_ids=["a", "b"], timestamps=[902, 903], boxes=boxes, scores=scores, class_ids=[4])



def test_autocast_precisions_are_checked() -> None:
    """fp16/bf16 autocast is refused on CPU (slower than float32 there), unknown names are refused."""
    from slowfast_det.engine.tester import autocast_dtype

    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    assert autocast_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="precision bf16 is for CUDA devices"):
        autocast_dtype("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision 'fp8': expected one of fp32, fp16, bf16"):
        autocast_dtype("fp8", torch.device("cuda"))


PRECISIONS = ("fp32", "fp16", "bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the device machine)")
def test_autocast_predictions_on_gpu_stay_close_to_fp32(trained: Path, cfg_file: Path) -> None:
    """On a GPU, fp16 and bf16 autocast predictions give the fp32 rows with scores within 2e-2."""
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.launch import build_split_loader
    from slowfast_det.engine.tester import predict

    cfg = load_config(cfg_file, ["NUM_GPUS", "1"])
    ctx = init_distributed(**builders.distributed_kwargs(cfg))
    model = build_model(cfg).to(ctx.device)
    model.load_state_dict(load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"])
    loader = build_split_loader(cfg, "test", ctx)
    preds = {p: predict(model, loader, device=ctx.device, precision=p, progress=False) for p in PRECISIONS}
    for precision in ("fp16", "bf16"):
        np.testing.assert_array_equal(preds[precision].boxes, preds["fp32"].boxes)
        assert np.abs(preds[precision].scores - preds["fp32"].scores).max() < 2e-2


def test_multiply_person_score_scales_each_box_by_its_file_score(trained: Path, cfg_file: Path) -> None:
    """``AVA.MULTIPLY_PERSON_SCORE``: every score of a box is its plain score times the box's score column in
    the predicted-box file (here the val ground truth with the person id as score: 0, 1, 2, ...)."""
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.launch import build_split_loader
    from slowfast_det.engine.tester import predict

    cfg = load_config(cfg_file)
    ctx = init_distributed(**builders.distributed_kwargs(cfg))
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"])
    loader = build_split_loader(cfg, "test", ctx)
    plain = predict(model, loader, device=ctx.device, progress=False)
    joint = predict(model, loader, device=ctx.device, multiply_person_score=True, progress=False)
    assert builders.prediction_kwargs(load_config(cfg_file, ["AVA.MULTIPLY_PERSON_SCORE", "True"])) == {
        "multiply_person_score": True
    }
    assert builders.prediction_kwargs(cfg) == {"multiply_person_score": False}  # PySlowFast's scoring by default
    # the person score of each row, looked up in the CSV itself
    table = pd.read_csv(
        Path(cfg.AVA.ANNOTATION_DIR) / "ava_val_v2.2.csv", header=None,
        names=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"],
    )  # fmt: skip
    lookup = table.groupby(["video_id", "timestamp", "x1", "y1", "x2", "y2"])["score"].max().to_dict()
    rows = zip(plain.video_ids, plain.timestamps, plain.boxes, strict=True)
    person = np.array([lookup[(v, int(t), *map(float, b))] for v, t, b in rows])
    assert len(set(person.tolist())) > 1  # several different person scores, 0 included
    np.testing.assert_array_equal(joint.boxes, plain.boxes)
    np.testing.assert_allclose(joint.scores, plain.scores * person[:, None], rtol=1e-6, atol=0)
