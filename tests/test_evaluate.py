"""Tests of ava_tools.evaluate: hand-computed cases, a naive reference of the official semantics, bad input, CLI.

The reference below (``reference_metrics``) follows ActivityNet's get_ava_performance.py + ava/ semantics
literally with plain Python loops, dicts and heapq (numpy only where the official result *is* a numpy call:
the unstable ``np.argsort`` of a class's scores, ``np.sum`` of the AP terms and ``np.nanmean``).
"""

from __future__ import annotations

import csv
import decimal
import heapq
import json
import math
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ava_tools.evaluate import (
    MAP_KEY,
    AvaFormatError,
    evaluate,
    metric_key,
    read_detections_csv,
    read_groundtruth_csv,
)
from ava_tools.labelmap import AVA_V22_ACTIVITYNET, bundled_labelmap_path

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------
# Naive reference of the official evaluator
# ------------------------------------------------------------------------------------------------------
def reference_metrics(
    labelmap: Path, groundtruth: Path, detections: Path, exclusions: Path | None = None
) -> dict[str, float]:
    legacy = exclusions is not None
    categories, whitelist, name = [], set(), ""
    for line in labelmap.read_text().splitlines(keepends=True):
        if line.startswith("  name:"):
            name = line.split('"')[1]
        elif line.startswith("  id:") or line.startswith("  label_id:"):
            cid = int(line.strip().split(" ")[-1])
            categories.append((cid, name))
            whitelist.add(cid)
    num_classes = max(c for c, _ in categories)

    def make_key(video: str, ts: str) -> str:
        if legacy:
            return "%s,%04d" % (video, int(ts))  # noqa: UP031 - the official formula
        return "%s,%.6f" % (video, decimal.Decimal(ts))  # noqa: UP031 - goes through float, unlike format()

    def read(path: Path, capacity: int) -> tuple[dict[str, list[tuple]], set[str]]:
        entries: dict[str, list[tuple]] = {}
        all_keys = set()
        with open(path, newline="") as f:
            for row in csv.reader(f):
                assert len(row) in ((7, 8) if legacy else (2, 7, 8))
                key = make_key(row[0], row[1])
                all_keys.add(key)
                if len(row) == 2:
                    continue
                x1, y1, x2, y2 = (float(v) for v in row[2:6])
                action = int(row[6])
                if action not in whitelist:
                    continue
                score = float(row[7]) if len(row) == 8 else 1.0
                heap = entries.setdefault(key, [])
                item = (score, action, y1, x1, y2, x2)
                if capacity < 1 or len(heap) < capacity:
                    heapq.heappush(heap, item)
                elif score > heap[0][0]:
                    heapq.heapreplace(heap, item)
        return {k: sorted(h, key=lambda t: -t[0]) for k, h in entries.items()}, all_keys

    excluded = set()
    if exclusions is not None:
        with open(exclusions, newline="") as f:
            excluded = {make_key(r[0], r[1]) for r in csv.reader(f)}
    gt, gt_keys = read(groundtruth, 0)
    gt = {k: v for k, v in gt.items() if k not in excluded}
    n_gt = [0] * (num_classes + 1)
    for items in gt.values():
        for item in items:
            n_gt[item[1]] += 1
    det, _ = read(detections, 50)
    scores: list[list[float]] = [[] for _ in range(num_classes + 1)]
    labels: list[list[bool]] = [[] for _ in range(num_classes + 1)]
    for key, items in det.items():
        if key in excluded or (not legacy and key not in gt_keys):
            continue
        valid = [t for t in items if t[2] < t[4] and t[3] < t[5]]
        gt_items = gt.get(key, [])
        for c in range(1, num_classes + 1):
            d = [t for t in valid if t[1] == c]
            g = [t for t in gt_items if t[1] == c]
            matched = [False] * len(g)
            for t in d:
                best, best_iou = -1, -math.inf
                for j, u in enumerate(g):
                    ih = max(0.0, min(t[4], u[4]) - max(t[2], u[2]))
                    iw = max(0.0, min(t[5], u[5]) - max(t[3], u[3]))
                    inter = ih * iw
                    union = ((t[4] - t[2]) * (t[5] - t[3]) + (u[4] - u[2]) * (u[5] - u[3])) - inter
                    iou = inter / union
                    if best < 0 or iou > best_iou:  # first maximum, like np.argmax
                        best, best_iou = j, iou
                tp = best >= 0 and best_iou >= 0.5 and not matched[best]
                if tp:
                    matched[best] = True
                scores[c].append(t[0])
                labels[c].append(tp)
    aps = np.full(num_classes, np.nan)
    for c in range(1, num_classes + 1):
        if n_gt[c] == 0:
            continue
        if not scores[c]:
            aps[c - 1] = 0.0
            continue
        order = np.argsort(np.array(scores[c], dtype=float))[::-1]
        tp_seq = [int(labels[c][i]) for i in order]
        precision, recall, cum = [], [], 0
        for i, v in enumerate(tp_seq):
            cum += v
            precision.append(cum / (i + 1))
            recall.append(cum / n_gt[c])
        recall = [0.0, *recall, 1.0]
        precision = [0.0, *precision, 0.0]
        for i in range(len(precision) - 2, -1, -1):
            precision[i] = max(precision[i], precision[i + 1])
        terms = [
            (recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall)) if recall[i] != recall[i - 1]
        ]
        aps[c - 1] = np.sum(np.array(terms, dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN mean
        mean_ap = float(np.nanmean(aps))
    metrics = {MAP_KEY: mean_ap}
    index = {}
    for cid, nm in categories:
        index[cid] = nm
    for c in range(1, num_classes + 1):
        if c in index:
            metrics[metric_key(index[c])] = float(aps[c - 1])
    return metrics


def same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    return list(a) == list(b) and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


# ------------------------------------------------------------------------------------------------------
# Helpers for tiny CSVs
# ------------------------------------------------------------------------------------------------------
LABELMAP3 = 'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 2\n}\nitem {\n  name: "c"\n  id: 4\n}\n'


def write(path: Path, rows: list[list[Any]]) -> Path:
    path.write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


@pytest.fixture
def labelmap3(tmp_path: Path) -> Path:
    p = tmp_path / "lm.pbtxt"
    p.write_text(LABELMAP3)
    return p


# ------------------------------------------------------------------------------------------------------
# Random comparison against the reference
# ------------------------------------------------------------------------------------------------------
GRID = [i / 8 for i in range(9)]  # exact binary fractions: IoU ties and IoU == 0.5 happen often


def _rand_box(rng: random.Random, invalid: float = 0.0) -> tuple[float, float, float, float]:
    if rng.random() < invalid:
        x = rng.choice(GRID)
        return x, rng.choice(GRID), x, rng.choice(GRID)  # x1 == x2: invalid detection
    x1, x2 = sorted(rng.sample(GRID, 2))
    y1, y2 = sorted(rng.sample(GRID, 2))
    return x1, y1, x2, y2


def _random_case(tmp: Path, rng: random.Random, legacy: bool) -> tuple[Path, Path, Path | None]:
    videos = ["v1", "v2"]
    seconds = [902, 903, 904, 905, 906]
    spellings = {
        902: ["902", "0902", "902.0"],
        903: ["903"],
        904: ["0904", "904"],
        905: ["905", "905.000001"],
        906: ["906", "906.0000001"],
        907: ["907"],
    }

    def ts(s: int) -> str:
        return str(s) if legacy else rng.choice(spellings[s])

    classes = [1, 2, 3, 4, 5]  # 3 and 5 are not in the label map
    gt_rows: list[list[object]] = []
    people: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    for v in videos:
        for s in seconds:
            if rng.random() < 0.2:
                if not legacy:
                    gt_rows.append([v, ts(s)])  # empty keyframe
                continue
            boxes = [_rand_box(rng) for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.3:
                boxes.append(boxes[0])  # duplicate person box
            people[(v, s)] = boxes
            for pid, box in enumerate(boxes):
                for c in rng.sample(classes, rng.randint(1, 3)):
                    person = rng.choice([pid, pid, 0]) if rng.random() < 0.3 else pid
                    gt_rows.append([v, ts(s), *box, c, person])
    rng.shuffle(gt_rows) if rng.random() < 0.5 else None
    det_rows: list[list[object]] = []
    score_pool = [0.1, 0.2, 0.3, 0.5, 0.5, 0.9, 1.0]
    for v in videos + ["v3"]:
        for s in seconds + [907]:
            if rng.random() < 0.15:
                continue
            boxes = list(people.get((v, s), []))
            boxes += [_rand_box(rng, invalid=0.15) for _ in range(rng.randint(0, 3))]
            if not boxes:
                continue
            n = rng.choice([3, 10, 30, 55, 70])
            if not legacy and rng.random() < 0.1:
                det_rows.append([v, ts(s)])
            for _ in range(n):
                box = rng.choice(boxes)
                c = rng.choice(classes)
                score = rng.choice(score_pool) if rng.random() < 0.7 else round(rng.random(), 2)
                det_rows.append([v, ts(s), *box, c, score])
    rng.shuffle(det_rows) if rng.random() < 0.3 else None
    gt = write(tmp / "gt.csv", gt_rows)
    det = write(tmp / "det.csv", det_rows)
    excl = None
    if legacy:
        excl = write(tmp / "excl.csv", [[rng.choice(videos), rng.choice(seconds)] for _ in range(2)])
    return gt, det, excl


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
def test_random_inputs_match_naive_reference(tmp_path: Path, labelmap3: Path, legacy: bool) -> None:
    """Many small random inputs with tied scores, duplicate GT, IoU exactly 0.5, >50 detections per keyframe,
    invalid boxes, 2-column rows and odd timestamp spellings: metrics equal the naive reference exactly,
    with both the pyarrow and the line-by-line reader."""
    rng = random.Random(1234 + legacy)
    replayed = 0
    for case in range(30):
        d = tmp_path / f"c{case}"
        d.mkdir()
        gt, det, excl = _random_case(d, rng, legacy)
        want = reference_metrics(labelmap3, gt, det, excl)
        for engine in ("pyarrow", "python"):
            got = evaluate(gt, det, labelmap3, excl, engine=engine, legacy=legacy)
            assert same_metrics(got.metrics, want), (case, engine, got.metrics, want)
            replayed += got.stats["keyframes_replayed_exact_heap"]
    assert replayed > 0  # the exact heap replay path was exercised


# ------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------------------
def ev(tmp_path: Path, labelmap: Path, gt: list[list[Any]], det: list[list[Any]], **kw: Any) -> Any:
    g = write(tmp_path / "g.csv", gt)
    d = write(tmp_path / "d.csv", det)
    excl = kw.pop("exclusions", None)
    e = write(tmp_path / "e.csv", excl) if excl is not None else None
    result = evaluate(g, d, labelmap, e, **kw)
    if not kw:
        assert same_metrics(result.metrics, reference_metrics(labelmap, g, d, e))
    return result


def ap_of(result: Any, name: str) -> float:
    return result.metrics[metric_key(name)]


def test_basic_ap_and_class_rules(tmp_path: Path, labelmap3: Path) -> None:
    """Class a: 2 GT on 902, 1 on 903. Detections by score: 0.9 TP (902), 0.8 FP (902, no overlap),
    0.7 TP (903). precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3 -> AP = 1/3*1 + 1/3*2/3 = 5/9.
    Class b has GT but no detections -> 0. Class c (id 4) has no GT -> NaN, left out: mAP = (5/9 + 0)/2.
    Metric keys: the mAP, then one per label-map class in id order, nothing else."""
    gt = [
        ["v", 902, 0, 0, 0.5, 0.5, 1, 0],
        ["v", 902, 0.5, 0.5, 1, 1, 1, 1],
        ["v", 903, 0, 0, 1, 1, 1, 0],
        ["v", 903, 0, 0, 1, 1, 2, 0],
    ]
    det = [
        ["v", 902, 0, 0, 0.5, 0.5, 1, 0.9],
        ["v", 902, 0.6, 0, 0.9, 0.3, 1, 0.8],
        ["v", 903, 0, 0, 1, 1, 1, 0.7],
        ["v", 903, 0, 0, 1, 1, 4, 0.6],
    ]
    r = ev(tmp_path, labelmap3, gt, det)
    assert list(r.metrics) == [MAP_KEY, metric_key("a"), metric_key("b"), metric_key("c")]
    assert ap_of(r, "a") == pytest.approx(5 / 9, abs=1e-15)
    assert ap_of(r, "b") == 0.0
    assert math.isnan(ap_of(r, "c"))
    assert r.mean_ap == pytest.approx(5 / 18, abs=1e-15)
    table = r.per_class.set_index("name")
    assert table.loc["a", "n_gt"] == 3 and table.loc["a", "n_det"] == 3 and table.loc["c", "n_det"] == 1


def test_iou_exactly_half_is_a_match(tmp_path: Path, labelmap3: Path) -> None:
    """GT (0,0)-(1,1); detection (0,0)-(1,0.5): IoU = 0.5/1 = 0.5 exactly -> TP, AP 1. A detection
    (0,0)-(1,0.49) has IoU 0.49 -> FP, AP 0."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0]]
    assert ap_of(ev(tmp_path, labelmap3, gt, [["v", 902, 0, 0, 1, 0.5, 1, 0.5]]), "a") == 1.0
    assert ap_of(ev(tmp_path, labelmap3, gt, [["v", 902, 0, 0, 1, 0.49, 1, 0.5]]), "a") == 0.0


def test_no_fallback_to_the_second_best_box(tmp_path: Path, labelmap3: Path) -> None:
    """GT A = (0,0)-(1,0.5), B = (0,0.5)-(1,1). Detection 1 (0.9) = A -> TP. Detection 2 (0.8) =
    (0,0)-(1,0.6): IoU with A = 0.5/0.6 = 0.83, with B = 0.1/0.9 = 0.11; its arg-max A is taken -> FP (not
    re-matched to B). Detection 3 (0.7) = B -> TP. precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> AP =
    1/2*1 + 1/2*2/3 = 5/6."""
    gt = [["v", 902, 0, 0, 1, 0.5, 1, 0], ["v", 902, 0, 0.5, 1, 1, 1, 1]]
    det = [
        ["v", 902, 0, 0, 1, 0.5, 1, 0.9],
        ["v", 902, 0, 0, 1, 0.6, 1, 0.8],
        ["v", 902, 0, 0.5, 1, 1, 1, 0.7],
    ]
    assert ap_of(ev(tmp_path, labelmap3, gt, det), "a") == pytest.approx(5 / 6, abs=1e-15)


@pytest.mark.parametrize(("pid_a", "pid_b", "want"), [(1, 0, 0.5), (0, 1, 1.0)])
def test_gt_order_by_person_id_breaks_iou_ties(
    tmp_path: Path, labelmap3: Path, pid_a: int, pid_b: int, want: float
) -> None:
    """Detection 1 (0.9) = (0,0)-(1,1) has IoU 0.75 with both GT A = (0,0)-(1,0.75) and B = (0,0.25)-(1,1);
    arg-max takes the first GT in the official order, which is descending person_id. Detection 2 (0.8) = A
    (IoU 1 with A, 0.5 with B). A first: det 1 takes A, det 2 is FP -> precision 1, 1/2, recall 1/2, 1/2 ->
    AP 0.5. B first: det 1 takes B, det 2 takes A -> AP 1."""
    gt = [["v", 902, 0, 0, 1, 0.75, 1, pid_a], ["v", 902, 0, 0.25, 1, 1, 1, pid_b]]
    det = [["v", 902, 0, 0, 1, 1, 1, 0.9], ["v", 902, 0, 0, 1, 0.75, 1, 0.8]]
    assert ap_of(ev(tmp_path, labelmap3, gt, det), "a") == want


def test_cap_evicts_the_smallest_tuple_on_ties(tmp_path: Path, labelmap3: Path) -> None:
    """50 class-a rows score 0.5 on disjoint horizontal strips y1 = 0.00, 0.02, ... fill the heap; a later
    class-a row at 0.5 is rejected (not strictly above the minimum); a class-b row at 0.6 then evicts the
    smallest tuple (0.5, 1, y1=0.00, ...). GT of class a is exactly that evicted strip -> no TP -> AP 0.
    With GT on the largest tuple's strip (y1 = 0.98) that detection survives -> AP > 0. Both equal the
    reference (which replays the literal heap)."""
    rows = [["v", 902, 0, i / 50, 1, (i + 1) / 50, 1, 0.5] for i in range(50)]
    rows += [["v", 902, 0, 0, 1, 0.02, 1, 0.5], ["v", 902, 0, 0, 0.1, 0.1, 2, 0.6]]
    evicted = ev(tmp_path, labelmap3, [["v", 902, 0, 0, 1, 0.02, 1, 0]], rows)
    assert ap_of(evicted, "a") == 0.0
    kept = ev(tmp_path, labelmap3, [["v", 902, 0, 0.98, 1, 1.0, 1, 0]], rows)
    assert ap_of(kept, "a") > 0.0
    assert evicted.per_class.set_index("name").loc["a", "n_det"] == 49


def test_invalid_detection_boxes_use_a_cap_slot(tmp_path: Path, labelmap3: Path) -> None:
    """50 inverted/empty boxes at 0.9 fill the cap, so the matching box at 0.5 is cut: AP 0 and the invalid
    boxes are not false positives (n_det 0). With 49 invalid boxes the match survives: AP 1."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0]]
    bad = [["v", 902, 0.5, 0, 0.5, 1, 1, 0.9]] * 50
    good = [["v", 902, 0, 0, 1, 1, 1, 0.5]]
    r = ev(tmp_path, labelmap3, gt, bad + good)
    assert ap_of(r, "a") == 0.0 and r.per_class.set_index("name").loc["a", "n_det"] == 0
    assert ap_of(ev(tmp_path, labelmap3, gt, bad[:49] + good), "a") == 1.0


def test_out_of_map_rows_are_dropped_before_the_cap(tmp_path: Path, labelmap3: Path) -> None:
    """60 rows of class 3 (not in the map) at 0.99 do not take cap slots: the class-a match at 0.1 -> AP 1."""
    det = [["v", 902, 0, 0, 1, 1, 3, 0.99]] * 60 + [["v", 902, 0, 0, 1, 1, 1, 0.1]]
    assert ap_of(ev(tmp_path, labelmap3, [["v", 902, 0, 0, 1, 1, 1, 0]], det), "a") == 1.0


def test_timestamps_normalised_like_the_official_key(tmp_path: Path, labelmap3: Path) -> None:
    """Keys are "%s,%.6f" % (video, Decimal(ts)): 0902.0 = 902 and 906.0000001 = 906 (TP, AP 1), but
    905.000001 != 905 (detection ignored: the GT keyframe has no detection, AP 0)."""
    assert (
        ap_of(
            ev(tmp_path, labelmap3, [["v", 902, 0, 0, 1, 1, 1, 0]], [["v", "0902.0", 0, 0, 1, 1, 1, 0.5]]),
            "a",
        )
        == 1.0
    )
    assert (
        ap_of(
            ev(
                tmp_path,
                labelmap3,
                [["v", 906, 0, 0, 1, 1, 1, 0]],
                [["v", "906.0000001", 0, 0, 1, 1, 1, 0.5]],
            ),
            "a",
        )
        == 1.0
    )
    assert (
        ap_of(
            ev(tmp_path, labelmap3, [["v", 905, 0, 0, 1, 1, 1, 0]], [["v", "905.000001", 0, 0, 1, 1, 1, 0.5]]),
            "a",
        )
        == 0.0
    )


def test_which_keyframes_are_scored(tmp_path: Path, labelmap3: Path) -> None:
    """GT: 1 class-a box on 902. Detections: a match on 902 (0.5) and a box on 903 (0.9).
    Current: 903 is not in the GT file -> ignored -> AP 1. If 903 appears as a 2-column GT row, it is scored:
    0.9 FP then 0.5 TP -> precision 0, 1/2; recall 0, 1 -> AP 0.5. Legacy (-e, exclusions empty of these):
    every detection keyframe is scored -> AP 0.5 too."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0]]
    det = [["v", 902, 0, 0, 1, 1, 1, 0.5], ["v", 903, 0, 0, 1, 1, 1, 0.9]]
    assert ap_of(ev(tmp_path, labelmap3, gt, det), "a") == 1.0
    assert ap_of(ev(tmp_path, labelmap3, gt + [["v", 903]], det), "a") == 0.5
    legacy = ev(tmp_path, labelmap3, gt, det, exclusions=[["other", 902]])
    assert legacy.legacy and ap_of(legacy, "a") == 0.5
    g, d = write(tmp_path / "g.csv", gt), write(tmp_path / "d.csv", det)
    assert same_metrics(legacy.metrics, reference_metrics(labelmap3, g, d, write(tmp_path / "x.csv", [["o", 1]])))


def test_legacy_exclusions_and_int_keys(tmp_path: Path, labelmap3: Path) -> None:
    """-e: keys use int(ts) ("0903" = "903"); the excluded keyframe 903 is dropped from GT and detections:
    n_gt 1 (902 only); the 903 detection (0.9, no overlap: a FP if 903 were kept) is gone -> only the 902
    match remains -> AP 1."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0], ["v", "0903", 0, 0, 1, 1, 1, 0]]
    det = [["v", 902, 0, 0, 1, 1, 1, 0.5], ["v", 903, 0.5, 0.5, 0.6, 0.6, 1, 0.9]]
    r = ev(tmp_path, labelmap3, gt, det, exclusions=[["v", "0903"]])
    assert ap_of(r, "a") == 1.0 and r.per_class.set_index("name").loc["a", "n_gt"] == 1


def test_legacy_rejects_two_column_rows(tmp_path: Path, labelmap3: Path) -> None:
    """The earlier release asserted 7 or 8 columns: a 2-column row is an error naming its line."""
    with pytest.raises(AvaFormatError, match=r"g\.csv, line 2: expected 7 or 8 columns, got 2"):
        ev(tmp_path, labelmap3, [["v", 902, 0, 0, 1, 1, 1, 0], ["v", 903]], [], exclusions=[])


def test_duplicate_gt_rows_count_twice(tmp_path: Path, labelmap3: Path) -> None:
    """The same GT row twice: n_gt 2; one matching detection is 1 TP -> recall 1/2, precision 1 -> AP 0.5."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0]] * 2
    assert ap_of(ev(tmp_path, labelmap3, gt, [["v", 902, 0, 0, 1, 1, 1, 0.5]]), "a") == 0.5


def test_seven_column_detections_score_one_and_empty_detection_file(tmp_path: Path, labelmap3: Path) -> None:
    """7-column detection rows get score 1.0 (one TP -> AP 1); an empty detection file gives 0.0 for every
    class with GT and NaN elsewhere; mAP 0."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0], ["v", 902, 0, 0, 1, 1, 2, 0]]
    assert ap_of(ev(tmp_path, labelmap3, gt, [["v", 902, 0, 0, 1, 1, 1]]), "a") == 1.0
    r = ev(tmp_path, labelmap3, gt, [])
    assert ap_of(r, "a") == 0.0 and ap_of(r, "b") == 0.0 and math.isnan(ap_of(r, "c")) and r.mean_ap == 0.0


def test_duplicate_label_names_share_one_key(tmp_path: Path) -> None:
    """Ids 1 and 2 both named "x": one metric key, holding the AP of the larger id (2: no detections -> 0.0),
    while the mean still averages both ids (1.0 and 0.0 -> 0.5)."""
    lm = tmp_path / "dup.pbtxt"
    lm.write_text('item {\n  name: "x"\n  id: 1\n}\nitem {\n  name: "x"\n  id: 2\n}\n')
    gt = [["v", 902, 0, 0, 1, 1, 1, 0], ["v", 902, 0, 0, 1, 1, 2, 0]]
    r = ev(tmp_path, lm, gt, [["v", 902, 0, 0, 1, 1, 1, 0.5]])
    assert list(r.metrics) == [MAP_KEY, metric_key("x")]
    assert r.metrics[metric_key("x")] == 0.0 and r.mean_ap == 0.5


def test_groups_and_other_iou_thresholds(tmp_path: Path) -> None:
    """Not-official extras. Bundled 60-class map. Class 1 (pose) TP -> 1; class 17 (person-object) detection
    with IoU 0.4 -> 0 at 0.5 but 1 at IoU 0.3; class 80 (person-person) no detection -> 0.
    group_ap: pose 1, person-object 0, person-person 0; iou_metrics[0.3] mAP = (1 + 1 + 0)/3."""
    gt = [["v", 902, 0, 0, 1, 1, c, 0] for c in (1, 17, 80)]
    det = [["v", 902, 0, 0, 1, 1, 1, 0.9], ["v", 902, 0, 0, 1, 0.4, 17, 0.8]]
    lm = bundled_labelmap_path(AVA_V22_ACTIVITYNET)
    g, d = write(tmp_path / "g.csv", gt), write(tmp_path / "d.csv", det)
    r = evaluate(g, d, lm, iou_thresholds=[0.3, 0.75])
    assert r.group_ap == {"pose": 1.0, "person-object": 0.0, "person-person": 0.0}
    assert r.iou_metrics[0.3]["mAP"] == pytest.approx(2 / 3, abs=1e-15)
    assert r.iou_metrics[0.75]["mAP"] == pytest.approx(1 / 3, abs=1e-15)
    assert r.mean_ap == pytest.approx(1 / 3, abs=1e-15) and len(r.metrics) == 61


def test_no_ava_groups_for_other_label_maps(tmp_path: Path, labelmap3: Path) -> None:
    """AVA's category groups are id ranges of AVA's classes: a custom label map (names a, b, c) gets none."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0]]
    r = ev(tmp_path, labelmap3, gt, [["v", 902, 0, 0, 1, 1, 1, 0.9]])
    assert r.group_ap == {} and r.mean_ap == 1.0


# ------------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------------
def _distinct_case(rng: random.Random) -> tuple[list[list[object]], list[list[object]]]:
    """GT with distinct boxes per class and keyframe; detections with distinct scores, <= 50 per keyframe."""
    gt, det, scores = [], [], rng.sample(range(1, 10**6), 400)
    for s in range(902, 912):
        boxes = rng.sample([(x / 8, y / 8, x / 8 + 0.25, y / 8 + 0.5) for x in range(6) for y in range(4)], 4)
        for pid, box in enumerate(boxes):
            for c in rng.sample([1, 2, 4], 2):
                gt.append(["v", s, *box, c, pid])
                if rng.random() < 0.7:
                    det.append(["v", s, *box, c, scores.pop() / 10**6])
            det.append(["v", s, *_rand_box(rng), rng.choice([1, 2, 4]), scores.pop() / 10**6])
    return gt, det


def test_perfect_detections_give_ap_one(tmp_path: Path, labelmap3: Path) -> None:
    """Every in-map GT box detected once with its class: AP 1 for every class with GT (distinct boxes), up to
    the rounding of the official sum of recall steps (k/n - (k-1)/n need not be exactly 1/n)."""
    gt, _ = _distinct_case(random.Random(5))
    det = [[*r[:7], 1.0] for r in gt]
    r = ev(tmp_path, labelmap3, gt, det)
    with_gt = r.per_class[r.per_class["n_gt"] > 0]
    assert len(with_gt) == 3 and with_gt["ap"].tolist() == pytest.approx([1.0] * 3, abs=1e-12)


def test_row_order_and_foreign_keyframes_change_nothing(tmp_path: Path, labelmap3: Path) -> None:
    """Without score ties or cap boundaries the result does not depend on row order; detections on keyframes
    absent from the GT file change nothing (current semantics)."""
    rng = random.Random(7)
    gt, det = _distinct_case(rng)
    base = ev(tmp_path, labelmap3, gt, det).metrics
    assert base[MAP_KEY] > 0
    for _ in range(3):
        rng.shuffle(gt)
        rng.shuffle(det)
        foreign = [["w", 902, *_rand_box(rng), 1, rng.random()] for _ in range(20)]
        assert same_metrics(ev(tmp_path, labelmap3, gt, det + foreign).metrics, base)


def test_order_dependent_ties_follow_the_official(tmp_path: Path, labelmap3: Path) -> None:
    """Where the official depends on file order (equal scores at the cap boundary, equal scores on different
    boxes, keyframe order before the unstable argsort) shuffling may change the metrics, and we follow the
    reference (literal official semantics) every time."""
    rng = random.Random(11)
    gt = [["v", s, *_rand_box(rng), c, p] for s in (902, 903) for p in range(3) for c in (1, 2)]
    det = [["v", s, *_rand_box(rng), rng.choice([1, 2]), rng.choice([0.3, 0.5])] for s in (902, 903) for _ in range(60)]
    det += [[*r[:7], 0.5] for r in gt]
    seen = set()
    for _ in range(12):
        rng.shuffle(det)
        seen.add(ev(tmp_path, labelmap3, gt, det).mean_ap)  # ev() asserts equality with the reference
    assert len(seen) > 1  # the official result really is order dependent here


# ------------------------------------------------------------------------------------------------------
# Inputs: DataFrames, readers, bad input
# ------------------------------------------------------------------------------------------------------
def test_dataframe_input_and_readers_round_trip(tmp_path: Path, labelmap3: Path) -> None:
    """read_*_csv give the documented columns; evaluating the DataFrames equals evaluating the files."""
    rng = random.Random(3)
    gt, det, _ = _random_case(tmp_path, rng, legacy=False)
    g, d = read_groundtruth_csv(gt), read_detections_csv(det)
    assert list(g.columns) == ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]
    assert list(d.columns)[-1] == "score" and str(g["action_id"].dtype) == "Int64"
    assert all(isinstance(t, str) for t in g["timestamp"])
    assert same_metrics(evaluate(g, d, labelmap3).metrics, evaluate(gt, det, labelmap3).metrics)
    big = read_detections_csv(write(tmp_path / "plain.csv", [["v", 902, 0, 0, 1, 1, 1, 0.5]] * 3))
    assert len(big) == 3 and big["score"].tolist() == [0.5] * 3
    gt_rows, det_rows = _distinct_case(rng)  # no 2-column rows: the pyarrow readers (Categorical strings)
    g_path, d_path = write(tmp_path / "g2.csv", gt_rows), write(tmp_path / "d2.csv", det_rows)
    g2, d2 = read_groundtruth_csv(g_path), read_detections_csv(d_path)
    assert str(d2["video_id"].dtype) == "category" and len(d2) == len(det_rows)
    assert same_metrics(evaluate(g2, d2, labelmap3).metrics, evaluate(g_path, d_path, labelmap3).metrics)


@pytest.mark.parametrize(
    ("gt_rows", "det_rows", "match"),
    [
        (
            [["v", 902, 0, 0, 1, 1, 1]],
            [["v", 902, 0, 0, 1, 1, 1, 0.5, 9]],
            r"d\.csv, line 1: expected 2, 7 or 8",
        ),
        (
            [["v", 902, 0, 0, 1, 1, 1, 0]],
            [["v", 902, 0, "x", 1, 1, 1, 0.5]],
            r"d\.csv, line 1: box coordinates",
        ),
        ([["v", 902, 0, 0, 1, 1, 1, 0]], [["v", 902, 0, 0, 1, 1, "a", 0.5]], r"d\.csv, line 1: action id"),
        (
            [["v", 902, 0, 0, 1, 1, 1, 0]],
            [["v", 902, 0, 0, 1, 1, 1, 0.5], ["v", 902, 0, 0, 1.5, 1, 1, 0.5]],
            r"d\.csv, line 2: box coordinate outside \[0, 1\]",
        ),
        ([["v", 902, 0, 0, 1, 1, 1, 0], ["v", 902, 0.8, 0, 0.2, 1, 1, 0]], [], r"g\.csv, line 2: inverted"),
        ([["v", 902, 0, 0, 1, 1, 1, 0]], [["v", 902, 0, 0, 1, 1, 1, "nan"]], r"d\.csv, line 1: score is NaN"),
        ([["v", "abc", 0, 0, 1, 1, 1, 0]], [], r"g\.csv, line 1: timestamp 'abc'"),
        ([], [], r"g\.csv: the ground truth has no rows"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, labelmap3: Path, gt_rows: list, det_rows: list, match: str) -> None:
    g, d = write(tmp_path / "g.csv", gt_rows), write(tmp_path / "d.csv", det_rows)
    for engine in ("pyarrow", "python"):
        with pytest.raises(AvaFormatError, match=match):
            evaluate(g, d, labelmap3, engine=engine)


def test_range_check_can_be_disabled_and_unknown_classes_are_dropped(tmp_path: Path, labelmap3: Path) -> None:
    """--no-range-check accepts coordinates outside [0, 1] and then equals the reference; a class id outside
    the map (99) is silently dropped as by the official."""
    gt = [["v", 902, -0.5, 0, 1, 1, 1, 0]]
    det = [["v", 902, -0.5, 0, 1, 1.2, 1, 0.5], ["v", 902, 0, 0, 1, 1, 99, 0.9]]
    g, d = write(tmp_path / "g.csv", gt), write(tmp_path / "d.csv", det)
    with pytest.raises(AvaFormatError, match="outside"):
        evaluate(g, d, labelmap3)
    r = evaluate(g, d, labelmap3, check_range=False)
    assert same_metrics(r.metrics, reference_metrics(labelmap3, g, d)) and ap_of(r, "a") == 1.0


def test_missing_files(tmp_path: Path, labelmap3: Path) -> None:
    g = write(tmp_path / "g.csv", [["v", 902, 0, 0, 1, 1, 1, 0]])
    with pytest.raises(AvaFormatError, match="nope.csv: no such file"):
        evaluate(g, tmp_path / "nope.csv", labelmap3)
    with pytest.raises(AvaFormatError, match="nope.pbtxt"):
        evaluate(g, g, tmp_path / "nope.pbtxt")


# ------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ava_tools.evaluate", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_json_plot_and_table(tmp_path: Path, labelmap3: Path) -> None:
    """--json writes the official flat dict (NaN as NaN); --plot writes a PNG; the table is sorted as asked."""
    g = write(tmp_path / "g.csv", [["v", 902, 0, 0, 1, 1, 1, 0], ["v", 902, 0, 0, 1, 1, 2, 0]])
    d = write(tmp_path / "d.csv", [["v", 902, 0, 0, 1, 1, 2, 0.5]])
    out, png = tmp_path / "m.json", tmp_path / "ap.png"
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(d), "--json", str(out), "--plot", str(png))
    assert p.returncode == 0, p.stderr
    metrics = json.loads(out.read_text())
    assert same_metrics(metrics, evaluate(g, d, labelmap3).metrics) and math.isnan(metrics[metric_key("c")])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(d), "--sort", "ap", "--iou", "0.3")
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and [ln.split()[1] for ln in lines[1:4]] == ["b", "a", "c"]
    assert f"{MAP_KEY}: 0.500000" in p.stdout and "frame-mAP@0.3IOU" in p.stdout


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, labelmap3: Path) -> None:
    g = write(tmp_path / "g.csv", [["v", 902, 0, 0, 1, 1, 1, 0]])
    d = write(tmp_path / "d.csv", [["v", 902, 0, 0, 1, 1, 1, 0.5, 3, 4]])
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(d))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "d.csv, line 1: expected 2, 7 or 8 columns, got 10" in p.stderr
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(tmp_path / "missing.csv"))
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr


def test_cli_checks_output_paths_before_evaluating(tmp_path: Path, labelmap3: Path) -> None:
    """--json / --plot that cannot be written stop the run before the evaluation (a malformed detection file
    would fail it) with the user's path named, not the atomic write's temporary file."""
    g = write(tmp_path / "g.csv", [["v", 902, 0, 0, 1, 1, 1, 0]])
    bad = write(tmp_path / "bad.csv", [["v", 902, 0, 0, 1, 1, 1, 0.5, 3, 4]])
    good = write(tmp_path / "d.csv", [["v", 902, 0, 0, 1, 1, 1, 0.5]])
    a_file = write(tmp_path / "a_file.txt", [["x"]])
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    for option, target, reason in [
        ("--json", a_file / "m.json", "is not a folder"),
        ("--plot", a_dir, "is a folder"),
        ("--json", a_dir, "is a folder"),
    ]:
        p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(bad), option, str(target))
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert f"{option} {target}: " in p.stderr and reason in p.stderr, p.stderr
        assert "columns" not in p.stderr  # the detections were not read
        assert ".tmp" not in p.stderr and ".png" not in p.stderr.replace(str(target), "")
    assert sorted(x.name for x in a_dir.iterdir()) == []  # no temporary file left behind
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode != 0:
        return  # no CAP_LINUX_IMMUTABLE here: the unwritable-folder case cannot be set up
    try:
        p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(good), "--json", str(frozen / "m.json"))
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert f"--json {frozen / 'm.json'}: cannot write in {frozen}" in p.stderr, p.stderr
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)


def test_cli_warns_when_the_detections_file_has_no_rows(tmp_path: Path, labelmap3: Path) -> None:
    g = write(tmp_path / "g.csv", [["v", 902, 0, 0, 1, 1, 1, 0]])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(empty))
    assert p.returncode == 0 and f"{MAP_KEY}: 0.000000" in p.stdout  # the official result
    assert f"warning: {empty}: the detection file has no rows" in p.stderr
    elsewhere = write(tmp_path / "other.csv", [["w", 902, 0, 0, 1, 1, 1, 0.5]])  # a video without ground truth
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(elsewhere))
    assert p.returncode == 0 and f"warning: {elsewhere}: none of its 1 row(s) is a detection" in p.stderr
    p = run_cli("-l", str(labelmap3), "-g", str(g), "-d", str(g))
    assert p.returncode == 0 and "warning" not in p.stderr


def test_messages_show_plain_numbers_and_name_the_person_id(tmp_path: Path, labelmap3: Path) -> None:
    """Bad rows are quoted with the numbers as written (not np.float64(-0.1)); the 8th ground-truth column
    is the person id, not a score."""
    g = write(tmp_path / "g.csv", [["v", 902, -0.1, 0.2, 0.5, 0.5, 1, 3]])
    d = write(tmp_path / "d.csv", [["v", 902, 0.1, 0.2, 0.5, 0.5, 1, "nan"]])
    with pytest.raises(AvaFormatError) as info:
        evaluate(g, d, labelmap3)
    assert str(info.value).endswith("(x1=-0.1, y1=0.2, x2=0.5, y2=0.5, action_id=1, person_id=3)"), info.value
    g = write(tmp_path / "g.csv", [["v", 902, 0.1, 0.2, 0.5, 0.5, 1, 3]])
    with pytest.raises(AvaFormatError) as info:
        evaluate(g, d, labelmap3)
    assert str(info.value).endswith("score is NaN (x1=0.1, y1=0.2, x2=0.5, y2=0.5, action_id=1, score=nan)")
    assert "np." not in str(info.value)


def test_streaming_pieces_and_pool_pruning_match_reference(
    tmp_path: Path, labelmap3: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force tiny CSV pieces (keyframes split across pieces, carried rows, line-range re-reads for the exact
    replay) and a tiny candidate pool (re-pruning, unsorted pool): still equal to the reference."""
    from ava_tools.evaluate import cap, readers

    monkeypatch.setattr(readers, "_CHUNK_BYTES", 700)
    rng = random.Random(99)
    for case in range(16):
        monkeypatch.setattr(cap, "_POOL_LIMIT", 120 if case % 4 < 2 else 10**9)
        legacy = case % 2 == 1
        d = tmp_path / f"s{case}"
        d.mkdir()
        gt, det, excl = _random_case(d, rng, legacy)
        got = evaluate(gt, det, labelmap3, excl, legacy=legacy)
        assert same_metrics(got.metrics, reference_metrics(labelmap3, gt, det, excl)), case


def test_line_by_line_fallback_for_what_pyarrow_cannot_judge(tmp_path: Path, labelmap3: Path) -> None:
    """Mixed 7- and 8-column detection rows (order matters: 7-column rows score 1.0) and fields only
    Python's int()/float() accept ("+1", "1_0e-1") make the fast reader hand over to the line-by-line one:
    same result as the reference. Class a, 2 GT: on 902 a 7-column row (score 1.0, no overlap: FP) and a row
    with action "+1" and score "1_0e-1" (= 1.0, TP); on 903 a TP at 0.5. Two tied 1.0 scores (FP, TP) then a
    TP: 0 < AP < 1 whichever way the tie is sorted."""
    gt = [["v", 902, 0, 0, 1, 1, 1, 0], ["v", 903, 0, 0, 1, 1, 1, 0]]
    det = [["v", 902, 0.5, 0.5, 0.6, 0.6, 1], ["v", 902, 0, 0, 1, 1, "+1", "1_0e-1"],
           ["v", 903, 0, 0, 1, 1, 1, 0.5]]
    r = ev(tmp_path, labelmap3, gt, det)
    assert r.per_class.set_index("name").loc["a", "n_det"] == 3 and 0 < ap_of(r, "a") < 1


def test_keyframes_of_equal_size_match_reference(tmp_path: Path, labelmap3: Path) -> None:
    """Every keyframe with the same number of rows (boxes x classes, as PySlowFast writes) takes the
    reshape path of the cap; tied scores at the boundary: equal to the reference."""
    rng = random.Random(21)
    gt = [["v", s, *_rand_box(rng), c, p] for s in range(902, 910) for p in range(3) for c in (1, 2, 4)]
    det = []
    for s in range(902, 910):
        boxes = [_rand_box(rng) for _ in range(20)]
        det += [["v", s, *b, c, rng.choice([0.2, 0.4, 0.6])] for b in boxes for c in (1, 2, 4)]
    r = ev(tmp_path, labelmap3, gt, det)
    assert r.stats["detections_evaluated"] <= 8 * 50
