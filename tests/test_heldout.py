"""Held-out scoring of detect-video's per-person CSV against the generator's truth, with known answers.

The predictions are written by the project's own writer of detect-video tables
(:func:`slowfast_det.pipeline.tables.person_actions_frame` + :func:`~slowfast_det.pipeline.tables.write_actions_csv`,
with the timestamps ``VideoResult.table`` gives them); the truth is a real SynthAVA (or a hand-made file in its format).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ava_tools.heldout import score_heldout, score_synth_heldout
from ava_tools.labelmap import AvaFormatError
from ava_tools.synth import SYNTH_CLASSES, generate, write_label_map
from slowfast_det.pipeline.tables import person_actions_frame, write_actions_csv

Person = tuple[int, tuple[float, float, float, float], dict[int, float]]  # id, box, {action id: score}


def _write_predictions(path: Path, video_id: str, keyframes: dict[float, list[Person]], num_classes: int) -> Path:
    """A detect-video ``--format csv`` table: ``{time (s, video clock): [(person id, box, scores)]}``."""
    times, ids, boxes, scores = [], [], [], []
    for t in sorted(keyframes):
        for pid, box, acts in keyframes[t]:
            times.append(round(float(t), 6))  # as VideoResult.table
            ids.append(pid)
            boxes.append(box)
            row = np.zeros(num_classes)
            for a, s in acts.items():
                row[a - 1] = s
            scores.append(row)
    table = person_actions_frame(
        video_id=video_id, timestamps=np.asarray(times, np.float64), person_ids=np.asarray(ids, np.int64),
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4), detector_scores=np.ones(len(ids)),
        scores=np.asarray(scores, np.float64).reshape(-1, num_classes), class_names={}, threshold=0.5,
    )
    return write_actions_csv(path, table)


def test_imports_without_torch() -> None:
    code = "import sys, ava_tools.heldout; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ----------------------------------------------------------------------------------------------------------
# A real SynthAVA held-out video
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_heldout")
    generate(out, videos=2, seconds=8, seed=3, width=96, height=72, progress=False)
    return out


def _truth_keyframes(synth: Path) -> dict[int, list[Person]]:
    """{second: [(true person id, box, {action: 1.0})]} of the val video: every annotated person (COCO file),
    with the actions of the AVA CSV."""
    ann = synth / "annotations"
    coco = json.loads((ann / "coco_person_val.json").read_text())
    actions = pd.read_csv(ann / "ava_val_v2.2.csv", header=None,
                          names=["video_id", "second", "x1", "y1", "x2", "y2", "action_id", "person_id"])
    acts: dict[tuple[int, int], dict[int, float]] = {}
    for r in actions.itertuples():
        acts.setdefault((int(r.second), int(r.person_id)), {})[int(r.action_id)] = 1.0
    images = {im["id"]: im for im in coco["images"]}
    out: dict[int, list[Person]] = {}
    for im in coco["images"]:
        out.setdefault(int(im["timestamp"]), [])
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        box = (x / im["width"], y / im["height"], (x + w) / im["width"], (y + h) / im["height"])
        second = int(im["timestamp"])
        out[second].append((a["person_id"], box, acts.get((second, a["person_id"]), {})))
    return out


def test_perfect_predictions_on_a_synth_video_score_one(synth: Path, tmp_path: Path) -> None:
    truth = _truth_keyframes(synth)
    assert sum(len(p) for p in truth.values()) > 5 and any(a for p in truth.values() for _, _, a in p)
    # detect-video's clock: SynthAVA second 902 is t = 2.0; tracker ids are other numbers than the truth's
    predictions: dict[float, list[Person]] = {
        s - 900: [(pid + 100, box, acts) for pid, box, acts in people] for s, people in truth.items()
    }
    # keyframes the truth has no keyframe for (t = 0, 1) are not scored, whatever they hold
    predictions[0.0] = [(555, (0.1, 0.1, 0.5, 0.9), {1: 0.99})]
    predictions[1.0] = [(556, (0.2, 0.1, 0.6, 0.9), {2: 0.99})]
    csv = _write_predictions(tmp_path / "synth001.actions.csv", "synth001", predictions, len(SYNTH_CLASSES))
    score = score_synth_heldout(synth, csv, out_json=tmp_path / "heldout.json")
    excluded = json.loads((synth / "annotations" / "synth_meta.json").read_text())["excluded"]["val"]
    assert score.video_id == "synth001" and score.true_boxes > 5 and score.true_people >= 2
    assert score.keyframes == len(truth) - excluded and score.excluded_keyframes == excluded
    assert score.frame_map == 1.0
    assert score.idf1 == 1.0 and score.id_switches == 0 and score.mota == 1.0
    assert score.precision == 1.0 and score.recall == 1.0 and score.misses == 0 and score.false_positives == 0
    doc = json.loads((tmp_path / "heldout.json").read_text())
    assert doc["frame_map"] == 1.0 and doc["id_switches"] == 0 and doc["idf1"] == 1.0
    assert all(v is None or 0 <= v <= 1 for v in doc["class_ap"].values())  # NaN (no truth) written as null


# ----------------------------------------------------------------------------------------------------------
# Hand-made truth with known answers
# ----------------------------------------------------------------------------------------------------------

A_BOX = (0.05, 0.1, 0.35, 0.9)
B_BOX = (0.6, 0.1, 0.9, 0.9)


@pytest.fixture()
def two_people(tmp_path: Path) -> dict[str, Path]:
    """Video ``v``, keyframes 902..912: A (id 0, action 1) and B (id 1, action 2) at 902..911; at 912 both are
    there but nobody acts (so 912 is only in the COCO file, as SynthAVA writes it)."""
    rows = [("v", f"{s:04d}", *box, action, pid)
            for s in range(902, 912) for pid, box, action in ((0, A_BOX, 1), (1, B_BOX, 2))]
    truth = tmp_path / "truth.csv"
    pd.DataFrame(rows).to_csv(truth, header=False, index=False, float_format="%.3f")
    images, anns = [], []
    for s in range(902, 913):
        images.append({"id": len(images) + 1, "video_id": "v", "timestamp": s, "width": 200, "height": 100})
        for pid, (x1, y1, x2, y2) in ((0, A_BOX), (1, B_BOX)):
            anns.append({"id": len(anns) + 1, "image_id": len(images), "person_id": pid,
                         "bbox": [x1 * 200, y1 * 100, (x2 - x1) * 200, (y2 - y1) * 100]})
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns}))
    labelmap = write_label_map(tmp_path / "labels.pbtxt", SYNTH_CLASSES[:2])
    return {"truth": truth, "coco": coco, "labelmap": labelmap}


def _predict(tmp_path: Path, people: dict[float, list[Person]]) -> Path:
    return _write_predictions(tmp_path / "v.actions.csv", "v", people, 2)


def test_swapped_ids_count_as_switches(two_people: dict[str, Path], tmp_path: Path) -> None:
    # the tracker's ids 7 and 8 swap between the two people halfway (after t = 6, i.e. second 906)
    people = {float(t): [(7 if t < 7 else 8, A_BOX, {1: 0.9}), (8 if t < 7 else 7, B_BOX, {2: 0.9})]
              for t in range(2, 12)}
    people[12.0] = [(8, A_BOX, {}), (7, B_BOX, {})]
    csv = _predict(tmp_path, people)
    score = score_heldout(two_people["truth"], csv, two_people["labelmap"], truth_boxes=two_people["coco"])
    assert score.keyframes == 11 and score.true_boxes == 22 and score.true_people == 2
    assert score.frame_map == 1.0  # the actions are right
    assert score.id_switches == 2  # each person's predicted id changes once
    # best one-to-one id assignment: A <-> 8 and B <-> 7, right at 6 of the 11 keyframes each
    assert score.idf1 == pytest.approx(2 * 12 / (22 + 22))
    assert score.mota == pytest.approx(1 - 2 / 22)
    assert score.recall == 1.0 and score.precision == 1.0


def test_missed_person_lowers_recall(two_people: dict[str, Path], tmp_path: Path) -> None:
    people = {float(t): [(7, A_BOX, {1: 0.9})] for t in range(2, 12)}  # B is never found
    people[12.0] = [(7, A_BOX, {})]
    score = score_heldout(two_people["truth"], _predict(tmp_path, people), two_people["labelmap"],
                          truth_boxes=two_people["coco"])
    assert score.recall == pytest.approx(11 / 22) and score.precision == 1.0
    assert score.misses == 11 and score.false_positives == 0 and score.id_switches == 0
    assert score.idf1 == pytest.approx(2 * 11 / (22 + 11))
    assert score.class_ap == {SYNTH_CLASSES[0].name: 1.0, SYNTH_CLASSES[1].name: 0.0}
    assert score.frame_map == pytest.approx(0.5)  # class 1 found (AP 1), class 2 missed (AP 0)


def test_keyframes_where_nobody_acts_are_scored(two_people: dict[str, Path], tmp_path: Path) -> None:
    """At 912 nobody acts: an action predicted there is a false positive (it outranks the 10 true ones)."""
    people = {float(t): [(7, A_BOX, {1: 0.8}), (8, B_BOX, {2: 0.8})] for t in range(2, 12)}
    people[12.0] = [(7, A_BOX, {1: 0.9}), (8, B_BOX, {})]
    score = score_heldout(two_people["truth"], _predict(tmp_path, people), two_people["labelmap"],
                          truth_boxes=two_people["coco"])
    assert score.class_ap[SYNTH_CLASSES[0].name] == pytest.approx(10 / 11)
    assert score.frame_map == pytest.approx((10 / 11 + 1) / 2)
    assert score.lowest_action_score == pytest.approx(0.8)
    # without the COCO file the truth is the CSV's: 902..911, so 912 is not scored
    plain = score_heldout(two_people["truth"], _predict(tmp_path, people), two_people["labelmap"])
    assert plain.keyframes == 10 and plain.frame_map == 1.0 and plain.idf1 == 1.0


def test_exclusions_and_misaligned_times(two_people: dict[str, Path], tmp_path: Path) -> None:
    excluded = tmp_path / "excluded.csv"
    excluded.write_text("v,0905\nv,0906\nother,0907\n")
    people = {float(t): [(7, A_BOX, {1: 0.9}), (8, B_BOX, {2: 0.9})] for t in range(2, 13)}
    people[5.0] = []  # nothing found at an excluded keyframe: not a miss
    score = score_heldout(two_people["truth"], _predict(tmp_path, people), two_people["labelmap"],
                          truth_boxes=two_people["coco"], exclusions=excluded)
    assert score.keyframes == 9 and score.excluded_keyframes == 2 and score.misses == 0
    # half-second keyframes never line up with the truth's whole seconds: a clear error, not a score of 0
    shifted = {t + 0.5: p for t, p in people.items()}
    with pytest.raises(AvaFormatError, match="no keyframe lines up with the truth of v"):
        score_heldout(two_people["truth"], _predict(tmp_path, shifted), two_people["labelmap"])
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,timestamp,x1\nv,2.0,0.1\n")
    with pytest.raises(AvaFormatError, match="bad.csv: missing columns"):
        score_heldout(two_people["truth"], bad, two_people["labelmap"])
