"""IoU tracker: synthetic box sequences with crossings, occlusions and re-entry; ids checked against truth."""

from __future__ import annotations

import numpy as np
import pytest

from slowfast_det.pipeline.tracking import IoUTracker, pairwise_iou


def _box(cx: float, cy: float, w: float = 0.2, h: float = 0.4) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _run(tracker: IoUTracker, frames: list[list[tuple[str, list[float]]]]) -> list[dict[str, int]]:
    """Feed frames of (true name, box); return, per frame, the id given to each true name."""
    out = []
    for frame in frames:
        ids = tracker.update(np.array([b for _, b in frame]).reshape(-1, 4))
        out.append({name: int(i) for (name, _), i in zip(frame, ids, strict=True)})
    return out


def _ids_of(result: list[dict[str, int]], name: str) -> list[int]:
    return [frame[name] for frame in result if name in frame]


def test_pairwise_iou_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (7, 4))
    b = rng.uniform(0, 1, (5, 4))
    a[:, 2:] = a[:, :2] + rng.uniform(0, 0.5, (7, 2))
    b[:, 2:] = b[:, :2] + rng.uniform(0, 0.5, (5, 2))
    b[0] = a[0]
    got = pairwise_iou(a, b)
    for i in range(7):
        for j in range(5):
            w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
            assert got[i, j] == pytest.approx(w * h / (area(a[i]) + area(b[j]) - w * h))
    assert got[0, 0] == pytest.approx(1.0)
    assert pairwise_iou(np.zeros((0, 4)), b).shape == (0, 5)


def _crossing() -> list[list[tuple[str, list[float]]]]:
    # A walks right, B walks left at the same height; they pass each other between keyframes 3 and 4,
    # where A's box overlaps B's previous box more than its own previous box.
    return [[("A", _box(0.2 + 0.1 * k, 0.5)), ("B", _box(0.95 - 0.1 * k, 0.5))] for k in range(9)]


def test_crossing_keeps_ids_with_the_motion_model() -> None:
    result = _run(IoUTracker(iou_threshold=0.3, max_age=3), _crossing())
    assert len(set(_ids_of(result, "A"))) == 1
    assert len(set(_ids_of(result, "B"))) == 1
    assert _ids_of(result, "A")[0] != _ids_of(result, "B")[0]


def test_crossing_swaps_ids_without_the_motion_model() -> None:
    # The same sequence with the motion model switched off: ids swap at the crossing, which is what the
    # constant-velocity prediction is there to prevent (and shows the test above can fail).
    result = _run(IoUTracker(iou_threshold=0.3, max_age=3, motion_model=False), _crossing())
    assert _ids_of(result, "A")[:4] == [1] * 4 and _ids_of(result, "A")[4:] == [2] * 5


@pytest.mark.parametrize("gap, max_age, same", [(1, 3, True), (3, 3, True), (4, 3, False), (2, 1, False)])
def test_occlusion_refound_within_max_age(gap: int, max_age: int, same: bool) -> None:
    # A walks steadily and is missed for `gap` keyframes; B stands still the whole time.
    frames = []
    for k in range(12):
        frame = [("B", _box(0.85, 0.5))]
        if not 4 <= k < 4 + gap:
            frame.append(("A", _box(0.1 + 0.05 * k, 0.5, w=0.15)))
        frames.append(frame)
    result = _run(IoUTracker(iou_threshold=0.3, max_age=max_age), frames)
    a_ids = _ids_of(result, "A")
    assert (len(set(a_ids)) == 1) is same
    assert len(set(_ids_of(result, "B"))) == 1
    assert _ids_of(result, "B")[0] not in a_ids


def test_reentry_elsewhere_gets_a_new_id_and_ids_are_never_reused() -> None:
    frames = [[("A", _box(0.2, 0.5))]] * 3 + [[]] * 5 + [[("A2", _box(0.7, 0.5))]] * 2 + [[("A3", _box(0.2, 0.5))]]
    result = _run(IoUTracker(max_age=2), frames)
    assert _ids_of(result, "A") == [1, 1, 1]
    assert _ids_of(result, "A2") == [2, 2]
    assert _ids_of(result, "A3") == [3]  # A's old track was dropped after max_age: fresh id, never id 1


def test_lost_track_does_not_steal_a_followed_persons_box() -> None:
    # C is lost after keyframe 2 and its constant-velocity prediction lands on D, who is followed without
    # a gap. The two-round matching gives D's box to D's own track.
    frames = [
        [("C", _box(0.30, 0.5)), ("D", _box(0.7, 0.5))],
        [("C", _box(0.40, 0.5)), ("D", _box(0.7, 0.5))],
        [("C", _box(0.50, 0.5)), ("D", _box(0.7, 0.5))],
        [("D", _box(0.7, 0.5))],
        [("D", _box(0.7, 0.5))],
    ]
    result = _run(IoUTracker(iou_threshold=0.3, max_age=3), frames)
    assert set(_ids_of(result, "D")) == {2}


def test_random_walkers_with_dropouts_and_shuffled_order() -> None:
    """Five people on well separated lanes, steady speeds, noisy boxes, random missed detections (at most
    two in a row) and a random detection order per keyframe: each person keeps exactly one id."""
    rng = np.random.default_rng(3)
    lanes = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    speed = rng.uniform(-0.03, 0.03, 5)
    start = rng.uniform(0.3, 0.7, 5)
    missed_run = np.zeros(5, dtype=int)
    frames = []
    for k in range(40):
        frame = []
        for p in range(5):
            if missed_run[p] < 2 and rng.random() < 0.2:
                missed_run[p] += 1
                continue
            missed_run[p] = 0
            cx = start[p] + speed[p] * k + rng.normal(0, 0.005)
            frame.append((f"P{p}", _box(cx, lanes[p] + rng.normal(0, 0.005), w=0.1, h=0.15)))
        frames.append([frame[i] for i in rng.permutation(len(frame))])
    result = _run(IoUTracker(iou_threshold=0.3, max_age=3), frames)
    ids = {f"P{p}": set(_ids_of(result, f"P{p}")) for p in range(5)}
    assert all(len(s) == 1 for s in ids.values()), ids
    assert len(set().union(*ids.values())) == 5


def test_empty_keyframes_and_bad_arguments() -> None:
    tracker = IoUTracker()
    assert tracker.update(np.zeros((0, 4))).shape == (0,)
    assert list(tracker.update(np.array([_box(0.5, 0.5), _box(0.1, 0.5)]))) == [1, 2]
    tracker.reset()
    assert list(tracker.update(np.array([_box(0.5, 0.5)]))) == [1]
    with pytest.raises(ValueError, match="iou_threshold"):
        IoUTracker(iou_threshold=0.0)
    with pytest.raises(ValueError, match="max_age"):
        IoUTracker(max_age=-1)
    with pytest.raises(ValueError, match="velocity_smoothing"):
        IoUTracker(velocity_smoothing=0.0)
