"""The demo's pieces on a tiny SynthAVA: a short training run learns; finished steps are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ava_tools.evaluate import evaluate
from ava_tools.synth import SYNTH_CLASSES, generate
from slowfast_det.config import load_config
from slowfast_det.detection.training import write_groundtruth_boxes
from slowfast_det.engine import launch
from slowfast_det.tools import demo

# flat colours (``debug_colors``): what a few dozen from-scratch iterations can learn; the cluttered default
# needs far longer training (tests/benchmarks/bench_synth_claim.py)
EPOCHS = 10
TINY = dict(videos=6, seconds=12, seed=5, width=128, height=96, debug_colors=True, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_short_training_beats_chance(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    generate(data, **TINY)  # type: ignore[arg-type]
    ann = data / "annotations"
    # ground-truth boxes for testing: isolates the action model from the person detector
    write_groundtruth_boxes(ann / "ava_val_v2.2.csv", ann / "val_gt_boxes.csv")
    opts = demo.action_overrides(data, tmp_path / "run", epochs=EPOCHS, detection_thresh=0.5, seed=0) + [
        "AVA.TEST_PREDICT_BOX_LISTS", "['val_gt_boxes.csv']",
        "TRAIN.BATCH_SIZE", "8",
        "SOLVER.BASE_LR", "0.1",
        "SOLVER.WARMUP_EPOCHS", "1.0",
    ]  # fmt: skip
    config = demo.CONFIG_DIR / demo.MODELS["slow"]
    records = launch.train_from_config(load_config(config, opts), progress=False)
    assert len(records) == EPOCHS and records[-1]["loss"] < records[0]["loss"]
    out = launch.test_from_config(load_config(config, opts), progress=False)
    assert out is not None
    labelmap = ann / "ava_action_list_synth_for_eval.pbtxt"
    # chance: the same boxes and classes with scores drawn at random (mean over draws)
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(20):
        shuffled = out.detections.copy()
        shuffled["score"] = rng.random(len(shuffled))
        chance.append(evaluate(out.groundtruth, shuffled, labelmap).mean_ap)
    assert len(out.per_class) == len(SYNTH_CLASSES)
    print(f"trained mAP {out.map:.3f} vs chance {np.mean(chance):.3f} +- {np.std(chance):.3f}")
    assert out.map > max(chance) and out.map > np.mean(chance) + 3 * np.std(chance)


def test_demo_markers_skip_finished_steps(tmp_path: Path) -> None:
    settings = demo.DemoSettings(videos=2, seconds=5, width=64, height=48, seed=1)
    first = demo.run_demo(tmp_path, settings, progress=False, steps_wanted=["synth"])
    marker = tmp_path / "markers" / "synth.json"
    assert first["skipped"] == [] and marker.is_file()
    saved = json.loads(marker.read_text())
    assert saved["params"]["videos"] == 2 and saved["result"]["val_videos"] == first["synth"]["val_videos"]
    frames = tmp_path / "synth" / "frame_lists" / "train.csv"
    mtime = frames.stat().st_mtime_ns

    second = demo.run_demo(tmp_path, settings, progress=False, steps_wanted=["synth"])
    assert second["skipped"] == ["synth"] and second["synth"] == first["synth"]
    assert frames.stat().st_mtime_ns == mtime

    # other parameters: the step runs again
    third = demo.run_demo(tmp_path, demo.DemoSettings(videos=3, seconds=5, width=64, height=48, seed=1),
                          progress=False, steps_wanted=["synth"])  # fmt: skip
    assert (
        third["skipped"] == []
        and len(third["synth"]["train_videos"]) + len(third["synth"]["val_videos"]) == 3
    )
