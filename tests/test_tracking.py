"""Trackers: synthetic box sequences (and images) with crossings, fast movers, occlusions and re-entry; ids
checked against truth. ``PersonTracker`` is what detect-video uses; ``IoUTracker`` the earlier IoU-only policy."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from slowfast_det.pipeline.tracking import IoUTracker, PersonTracker, box_histograms, pairwise_iou


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


# ----------------------------------------------------------------------------------------------------------
# PersonTracker: motion gate + appearance
# ----------------------------------------------------------------------------------------------------------

_W, _H = 320, 180  # keyframe size of the drawn scenes


def _scene(people: list[tuple[tuple[int, int, int], tuple[int, int, int], list[float]]]) -> np.ndarray:
    """A (H, W, 3) uint8 BGR keyframe: a textured grey background with each person drawn as a box whose upper
    half is the shirt colour and lower half the trousers colour (normalised box, back to front)."""
    yy, xx = np.mgrid[0:_H, 0:_W]
    img = np.repeat((90 + 40 * ((xx // 16 + yy // 16) % 2))[..., None], 3, axis=2).astype(np.uint8)
    for shirt, trousers, box in people:
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (_W, _H, _W, _H), strict=True))
        mid = (y1 + y2) // 2
        img[y1:mid, x1:x2] = shirt
        img[mid:y2, x1:x2] = trousers
    return img


_RED, _BLUE, _GREEN, _YELLOW = (30, 30, 220), (220, 60, 30), (40, 200, 40), (30, 220, 230)


def _run_images(tracker: PersonTracker, frames: list[list[tuple[str, tuple[int, int, int], tuple[int, int, int],
                                                               list[float]]]], *, with_image: bool = True
                ) -> list[dict[str, int]]:
    """Feed frames of (true name, shirt, trousers, box) with their drawn keyframe; per frame, name -> id."""
    out = []
    for frame in frames:
        boxes = np.array([b for *_, b in frame]).reshape(-1, 4)
        image = _scene([(s, t, b) for _, s, t, b in frame]) if with_image else None
        ids = tracker.update(boxes, image=image)
        out.append({name: int(i) for (name, *_), i in zip(frame, ids, strict=True)})
    return out


def test_fast_mover_without_overlap_keeps_its_id() -> None:
    # A walks 0.12 of the width per keyframe with boxes 0.06 wide: consecutive boxes never overlap. The IoU-only
    # tracker gives a new id at every keyframe; the motion gate keeps one (with or without the image).
    frames = [[("A", _RED, _BLUE, _box(0.1 + 0.12 * k, 0.5, w=0.06, h=0.4)),
               ("B", _GREEN, _GREEN, _box(0.5, 0.3, w=0.06, h=0.3))] for k in range(8)]
    for with_image in (True, False):
        result = _run_images(PersonTracker(), frames, with_image=with_image)
        assert len(set(_ids_of(result, "A"))) == 1
        assert len(set(_ids_of(result, "B"))) == 1
    old = _run(IoUTracker(), [[(n, b) for n, _, _, b in f] for f in frames])
    assert len(set(_ids_of(old, "A"))) == 8


def _meet_and_turn_back() -> list[list[tuple[str, tuple[int, int, int], tuple[int, int, int], list[float]]]]:
    # A (red/blue) walks right and B (green/yellow) walks left, fast (no overlap between keyframes); they meet
    # side by side at keyframe 3, then each turns back the way it came. The constant-velocity prediction puts
    # each nearer the other's next box than its own.
    xs = [0.1, 0.22, 0.34, 0.46, 0.34, 0.22, 0.1]
    return [[("A", _RED, _BLUE, _box(x, 0.5, w=0.08)), ("B", _GREEN, _YELLOW, _box(1.0 - x, 0.5, w=0.08))]
            for x in xs]


def test_people_who_meet_and_turn_back_keep_their_ids_by_colour() -> None:
    frames = _meet_and_turn_back()
    result = _run_images(PersonTracker(), frames)
    a, b = _ids_of(result, "A"), _ids_of(result, "B")
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    # the same boxes without the image: the constant-velocity prediction carries both past each other (the
    # ids swap), which shows that the colours decide above
    blind = _run_images(PersonTracker(), frames, with_image=False)
    assert _ids_of(blind, "A")[:4] == [a[0]] * 4 and _ids_of(blind, "A")[5:] == [b[0]] * 2


def test_crossing_people_with_different_colours_keep_ids() -> None:
    # Fast crossing at equal heights: A's box at keyframe 4 lies nearer B's predicted box than its own.
    frames = [[("A", _RED, _RED, _box(0.15 + 0.1 * k + (0.05 if k >= 4 else 0), 0.5, w=0.07)),
               ("B", _BLUE, _YELLOW, _box(0.85 - 0.1 * k, 0.5, w=0.07))] for k in range(8)]
    result = _run_images(PersonTracker(), frames)
    a, b = _ids_of(result, "A"), _ids_of(result, "B")
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    old = _run(IoUTracker(), [[(n, bx) for n, _, _, bx in f] for f in frames])
    assert len(set(_ids_of(old, "A"))) > 1


def test_reentry_after_a_short_occlusion_keeps_the_id() -> None:
    # A walks behind a pillar for two keyframes (no box) and comes out further on; meanwhile C, in other
    # colours, stands near where A reappears. A gets its id back, C keeps its own.
    frames = []
    for k in range(8):
        frame = [("C", _GREEN, _YELLOW, _box(0.8, 0.5, w=0.08))]
        if k not in (4, 5):
            frame.append(("A", _RED, _BLUE, _box(0.1 + 0.08 * k, 0.5, w=0.08)))
        frames.append(frame)
    result = _run_images(PersonTracker(max_age=3), frames)
    a, c = _ids_of(result, "A"), _ids_of(result, "C")
    assert len(set(a)) == 1 and len(set(c)) == 1 and a[0] != c[0]
    # beyond max_age the track is gone: a new id
    result = _run_images(PersonTracker(max_age=1), frames)
    assert len(set(_ids_of(result, "A"))) == 2


def test_low_score_box_does_not_take_a_persons_track() -> None:
    # A low-score box (two people in one) appears once: it gets an id of its own but its track is dropped at
    # the next keyframe, and the two people keep theirs.
    tracker = PersonTracker(high_score=0.7)
    a, b = _box(0.3, 0.5, w=0.1), _box(0.45, 0.5, w=0.1)
    merged = [a[0], a[1], b[2], b[3]]
    image = _scene([(_RED, _RED, a), (_BLUE, _BLUE, b)])
    first = tracker.update(np.array([a, b]), scores=np.array([0.9, 0.9]), image=image)
    second = tracker.update(np.array([merged, a, b]), scores=np.array([0.6, 0.95, 0.95]), image=image)
    third = tracker.update(np.array([a, b]), scores=np.array([0.9, 0.9]), image=image)
    assert list(second[1:]) == list(first) == list(third)
    assert second[0] not in first
    assert {t.track_id for t in tracker.tracks} == set(first)


def test_person_tracker_is_deterministic_and_order_independent() -> None:
    rng = np.random.default_rng(5)
    frames = _meet_and_turn_back() * 2
    runs = []
    for shuffle in (False, False, True):
        tracker = PersonTracker()
        ids_by_name: dict[str, list[int]] = {"A": [], "B": []}
        for frame in frames:
            order = rng.permutation(len(frame)) if shuffle else np.arange(len(frame))
            frame = [frame[i] for i in order]
            boxes = np.array([b for *_, b in frame])
            ids = tracker.update(boxes, scores=np.full(len(frame), 0.9),
                                 image=_scene([(s, t, b) for _, s, t, b in frame]))
            for (name, *_), i in zip(frame, ids, strict=True):
                ids_by_name[name].append(int(i))
        runs.append(ids_by_name)
    assert runs[0] == runs[1]
    # another detection order: the same people keep one id each (the numbers may differ)
    assert all(len(set(v)) == 1 for v in runs[2].values())


def test_box_histograms_compare_colours() -> None:
    image = _scene([(_RED, _BLUE, _box(0.2, 0.5, w=0.1)), (_RED, _BLUE, _box(0.5, 0.5, w=0.1)),
                    (_BLUE, _RED, _box(0.8, 0.5, w=0.1))])
    f = box_histograms(image, np.array([_box(0.2, 0.5, w=0.1), _box(0.5, 0.5, w=0.1), _box(0.8, 0.5, w=0.1),
                                        [0.5, 0.5, 0.5, 0.6]]))
    assert f.shape[0] == 4
    assert np.linalg.norm(f[:3], axis=1) == pytest.approx(1.0)
    assert f[0] @ f[1] == pytest.approx(1.0, abs=0.05)  # same shirt and trousers
    assert f[0] @ f[2] < 0.3  # the same colours, but shirt and trousers swapped
    assert not f[3].any()  # an empty box


def test_still_objects_on_a_real_video_keep_their_ids(bikes_mp4: Path) -> None:
    """bikes.mp4 (real footage): in its shot of frames 137-186 (a parked bicycle behind a fence, cars behind),
    two fixed boxes with detector-like jitter, every 5th frame, keep their ids with the keyframe's colours."""
    rng = np.random.default_rng(0)
    tracker = PersonTracker()
    boxes = np.array([[0.23, 0.10, 0.50, 1.0], [0.83, 0.40, 0.97, 0.74]])
    seen = []
    with av.open(str(bikes_mp4)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if 140 <= n <= 185 and n % 5 == 0:
                jitter = rng.normal(0, 0.01, boxes.shape)
                seen.append(tuple(int(i) for i in tracker.update(
                    boxes + jitter, scores=np.array([0.95, 0.9]), image=frame.to_ndarray(format="bgr24"))))
    assert len(seen) == 10 and set(seen) == {(1, 2)}


def test_person_tracker_bad_arguments() -> None:
    tracker = PersonTracker()
    assert tracker.update(np.zeros((0, 4)), image=np.zeros((10, 10, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="scores"):
        tracker.update(np.array([_box(0.5, 0.5)]), scores=np.array([0.5, 0.6]))
    for kw, name in [({"motion_gate": 0.0}, "motion_gate"), ({"appearance_gate": 0.0}, "appearance_gate"),
                     ({"appearance_weight": 1.5}, "appearance_weight"),
                     ({"appearance_momentum": 1.0}, "appearance_momentum"), ({"max_age": -1}, "max_age")]:
        with pytest.raises(ValueError, match=name):
            PersonTracker(**kw)  # type: ignore[arg-type]
