"""Tests of ava_tools.synth (SynthAVA): determinism, layout, boxes vs pixels, motion/appearance semantics."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ava_tools.synth import (
    ALIAS_STRIDE,
    DEBUG_COLORS,
    DEBUG_OBJECT_COLOR,
    FPS,
    PERSON_BOXES_NAME,
    SYNTH_CLASSES,
    TIME_ORIGIN_SEC,
    Segment,
    generate,
    get_args_parser,
    keyframe_seconds,
    main,
    make_scene,
    person_joints,
    render_frame,
)

SECONDS = 6
DEBUG_SECONDS = 7
W, H = 192, 144
NAME_TO_ID = {c.name: c.id for c in SYNTH_CLASSES}


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def decoded(video: Path) -> list[bytes]:
    """The RGB bytes of every frame of ``video``."""
    import av

    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0)]


def test_videos_are_lossless(tiny: tuple[Path, float]) -> None:
    """The MP4s decode to the rendered frames (to RGB <-> YUV 4:4:4 rounding): a lossy bitstream was not
    reproducible, so neither were the frames and every number after them."""
    import av

    from ava_tools.synth import make_scene, render_frame

    out, _ = tiny
    scene = make_scene(0, seed=0, seconds=SECONDS)
    with av.open(str(out / "videos" / "synth000.mp4")) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if n % 17 == 0:
                rendered = np.asarray(render_frame(scene, n).rgb, dtype=np.int16)
                assert np.abs(frame.to_ndarray(format="rgb24").astype(np.int16) - rendered).max() <= 2, n


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("synth") / "seed0"
    start = time.monotonic()
    summary = generate(out, videos=2, seconds=SECONDS, seed=0, progress=False)
    elapsed = time.monotonic() - start
    assert not summary.cached
    return out, elapsed


@pytest.fixture(scope="module")
def debug(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "debug"
    generate(out, videos=2, seconds=DEBUG_SECONDS, seed=5, debug_colors=True, progress=False)
    return out


@dataclasses.dataclass
class Row:
    video_id: str
    timestamp: int
    x1: float
    y1: float
    x2: float
    y2: float
    action_id: int
    person_id: int


def rows_of(df: pd.DataFrame) -> list[Row]:
    return [
        Row(str(v), int(t), float(a), float(b), float(c), float(d), int(e), int(f))
        for v, t, a, b, c, d, e, f in df.itertuples(index=False, name=None)
    ]


def read_actions(path: Path) -> pd.DataFrame:
    cols = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]
    return pd.read_csv(path, header=None, names=cols, dtype={"timestamp": str})


# ---------------------------------------------------------------------------------------------------------
# Determinism, cache, speed
# ---------------------------------------------------------------------------------------------------------


def test_tiny_dataset_is_fast(tiny: tuple[Path, float]) -> None:
    _, elapsed = tiny
    assert elapsed < 30, f"2 videos x {SECONDS} s took {elapsed:.1f} s"


def test_same_seed_same_bytes_and_cache(tiny: tuple[Path, float], tmp_path: Path) -> None:
    out, _ = tiny
    # the CLI, in another folder, with the same parameters, in worker processes
    args = get_args_parser().parse_args(
        [str(tmp_path / "again"), "--videos", "2", "--seconds", str(SECONDS), "--workers", "2"]
    )
    args.no_progress = True
    assert main(args) == 0
    a, b = all_files(out), all_files(tmp_path / "again")
    assert a.keys() == b.keys()
    assert any(k.endswith(".mp4") for k in a) and any(k.endswith(".jpg") for k in a)
    # every file byte for byte; the MP4s frame for frame (x264's container bytes may differ between runs)
    differing = [k for k in a if a[k] != b[k] and not k.endswith(".mp4")]
    differing += [k for k in a if k.endswith(".mp4") and decoded(out / k) != decoded(tmp_path / "again" / k)]
    assert differing == []
    # complete dataset with the same parameters: nothing is redone
    mp4 = out / "videos" / "synth000.mp4"
    stamp = mp4.stat().st_mtime_ns
    summary = generate(out, videos=2, seconds=SECONDS, seed=0, progress=False)
    assert summary.cached and mp4.stat().st_mtime_ns == stamp


def test_different_seed_differs(tmp_path: Path) -> None:
    for seed in (0, 1):
        generate(tmp_path / str(seed), videos=2, seconds=5, seed=seed, width=64, height=48, progress=False)
    for rel in (
        "annotations/ava_train_v2.2.csv",
        "videos/synth000.mp4",
        "frames/synth001/synth001_000031.jpg",
    ):
        assert (tmp_path / "0" / rel).read_bytes() != (tmp_path / "1" / rel).read_bytes(), rel


def test_changed_parameters_regenerate(tmp_path: Path) -> None:
    generate(tmp_path, videos=3, seconds=5, seed=0, width=64, height=48, progress=False)
    assert (tmp_path / "videos" / "synth002.mp4").is_file()
    summary = generate(tmp_path, videos=2, seconds=5, seed=0, width=64, height=48, progress=False)
    assert not summary.cached
    assert not (tmp_path / "videos" / "synth002.mp4").exists()  # stale video of the earlier run removed
    assert not (tmp_path / "frames" / "synth002").exists()


# ---------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------


def test_layout_parses(tiny: tuple[Path, float]) -> None:
    out, _ = tiny
    meta = json.loads((out / "annotations" / "synth_meta.json").read_text())
    assert meta["split"] == {"train": ["synth000"], "val": ["synth001"]}
    assert {c["name"]: c["kind"] for c in meta["classes"]} == {c.name: c.kind for c in SYNTH_CLASSES}
    assert {c.kind for c in SYNTH_CLASSES} == {"appearance", "motion"}
    for split, vids in meta["split"].items():
        # frame lists: exact header, S*30 frames per video, paths exist
        lines = (out / "frame_lists" / f"{split}.csv").read_text().splitlines()
        assert lines[0] == "original_vido_id video_id frame_id path labels"
        fl = pd.read_csv(out / "frame_lists" / f"{split}.csv", sep=" ")
        assert len(fl) == SECONDS * FPS * len(vids)
        assert all((out / "frames" / p).is_file() for p in fl["path"].iloc[:: FPS * 2])
        # actions: 8 columns, %04d timestamps, keyframes in 902..900+S-2, normalised boxes
        text = (out / "annotations" / f"ava_{split}_v2.2.csv").read_text()
        first = text.splitlines()[0].split(",")
        assert len(first) == 8 and len(first[1]) == 4 and len(first[2].split(".")[1]) == 3
        df = read_actions(out / "annotations" / f"ava_{split}_v2.2.csv")
        assert len(df) == meta["rows"][split] > 0
        assert set(df["video_id"]) <= set(vids)
        secs = df["timestamp"].astype(int)
        assert secs.min() >= 902 and secs.max() <= 900 + SECONDS - 2
        assert (
            (0 <= df.x1) & (df.x1 < df.x2) & (df.x2 <= 1) & (0 <= df.y1) & (df.y1 < df.y2) & (df.y2 <= 1)
        ).all()
        assert set(df["action_id"]) <= {c.id for c in SYNTH_CLASSES}
        assert not df.duplicated(["video_id", "timestamp", "person_id", "action_id"]).any()
        # one box per person and keyframe
        assert (
            (df.groupby(["video_id", "timestamp", "person_id"])[["x1", "y1", "x2", "y2"]].nunique() == 1)
            .all()
            .all()
        )
        for line in (
            (out / "annotations" / f"ava_{split}_excluded_timestamps_v2.2.csv").read_text().splitlines()
        ):
            vid, sec = line.split(",")
            assert vid in vids and len(sec) == 4 and 902 <= int(sec) <= 900 + SECONDS - 2
    # label maps: AVA pbtxt, all classes
    for name in ("ava_action_list_synth.pbtxt", "ava_action_list_synth_for_eval.pbtxt"):
        text = (out / "annotations" / name).read_text()
        names = [line.split('"')[1] for line in text.splitlines() if line.startswith("  name:")]
        ids = [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("  id:")]
        assert list(zip(ids, names, strict=True)) == [(c.id, c.name) for c in SYNTH_CLASSES]
        assert text.startswith('item {\n  name: "raise arms"\n  id: 1\n}\n')


def test_coco_boxes_match_action_boxes(tiny: tuple[Path, float]) -> None:
    pycocotools_coco = pytest.importorskip("pycocotools.coco")
    out, _ = tiny
    for split in ("train", "val"):
        coco = pycocotools_coco.COCO(str(out / "annotations" / f"coco_person_{split}.json"))
        assert coco.getCatIds() == [1]
        df = read_actions(out / "annotations" / f"ava_{split}_v2.2.csv")
        for img in coco.dataset["images"]:
            assert (out / "frames" / img["file_name"]).is_file()
            sec = img["timestamp"]
            assert img["file_name"].endswith(f"_{(sec - 900) * FPS + 1:06d}.jpg")
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
                x, y, w, h = ann["bbox"]
                assert ann["iscrowd"] == 0 and ann["area"] == w * h and ann["visible_fraction"] >= 0.3
                rows = df[(df.video_id == img["video_id"]) & (df.timestamp.astype(int) == sec)]
                rows = rows[rows.person_id == ann["person_id"]]
                if len(rows):  # people with no action have a COCO box only
                    r = rows.iloc[0]
                    assert np.allclose(
                        [r.x1 * W, r.y1 * H, r.x2 * W, r.y2 * H], [x, y, x + w, y + h], atol=0.11
                    )


# ---------------------------------------------------------------------------------------------------------
# Annotations agree with the pixels
# ---------------------------------------------------------------------------------------------------------


def colour_mask(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(img.astype(int) - np.array(colour)).sum(axis=2) < 90


def test_boxes_are_tight_around_rendered_pixels(debug: Path) -> None:
    """Each CSV box is the tight box of the pixels showing the person's flat debug colour in the render, and of
    the white object it holds (the white pixels the render attributes to that person)."""
    scenes = {
        f"synth{i:03d}": make_scene(i, seed=5, seconds=DEBUG_SECONDS, width=W, height=H, debug_colors=True)
        for i in (0, 1)
    }
    df = pd.concat(read_actions(debug / "annotations" / f"ava_{s}_v2.2.csv") for s in ("train", "val"))
    boxes = df.drop_duplicates(["video_id", "timestamp", "person_id"])
    assert len(boxes) >= 10
    hold_rows = df[df.action_id == NAME_TO_ID["hold object"]]
    holding = set(zip(hold_rows.video_id, hold_rows.timestamp, hold_rows.person_id, strict=True))
    assert holding  # the seed shows the held object
    for r in rows_of(boxes):
        frame = render_frame(scenes[r.video_id], (int(r.timestamp) - 900) * FPS)
        body = (frame.rgb == DEBUG_COLORS[r.person_id % len(DEBUG_COLORS)]).all(axis=2)
        held = (frame.rgb == DEBUG_OBJECT_COLOR).all(axis=2) & (frame.ids == r.person_id + 1)
        # the held object is white, never the person's colour
        assert held.any() == ((r.video_id, f"{r.timestamp:04d}", r.person_id) in holding), r
        ys, xs = np.nonzero(body | held)
        expected = [xs.min() / W, ys.min() / H, (xs.max() + 1) / W, (ys.max() + 1) / H]
        assert np.allclose([r.x1, r.y1, r.x2, r.y2], expected, atol=0.0005 + 1e-9), (r, expected)


def test_keyframe_jpegs_show_the_annotated_frame(debug: Path) -> None:
    """File (s-900)*30+1 is rendered frame (s-900)*30, and the person's colour in it lies inside its box."""
    scene = make_scene(0, seed=5, seconds=DEBUG_SECONDS, width=W, height=H, debug_colors=True)
    df = read_actions(debug / "annotations" / "ava_train_v2.2.csv")
    for sec in sorted(set(df.timestamp.astype(int))):
        n = (sec - 900) * FPS
        jpeg = np.asarray(
            Image.open(debug / "frames" / "synth000" / f"synth000_{n + 1:06d}.jpg").convert("RGB")
        )
        err = {k: np.abs(jpeg.astype(int) - render_frame(scene, k).rgb).mean() for k in (n - 1, n, n + 1)}
        assert err[n] < 8 and err[n] < min(err[n - 1], err[n + 1]), err
        for r in rows_of(df[df.timestamp.astype(int) == sec].drop_duplicates("person_id")):
            colour = np.array(DEBUG_COLORS[r.person_id % len(DEBUG_COLORS)])
            ys, xs = np.nonzero(np.abs(jpeg.astype(int) - colour).sum(axis=2) < 90)
            assert len(xs) > 20
            inside = (
                (xs >= r.x1 * W - 1.5)
                & (xs < r.x2 * W + 1.5)
                & (ys >= r.y1 * H - 1.5)
                & (ys < r.y2 * H + 1.5)
            )
            assert inside.mean() > 0.99


def test_direction_labels_agree_with_pixel_motion(debug: Path) -> None:
    """The centroid of a moving person's pixels shifts the way its move left/right label says."""
    df = pd.concat(read_actions(debug / "annotations" / f"ava_{s}_v2.2.csv") for s in ("train", "val"))
    moving = df[df.action_id.isin([NAME_TO_ID["move left"], NAME_TO_ID["move right"]])]
    checked = 0
    for r in rows_of(moving):
        n = (int(r.timestamp) - 900) * FPS
        colour = DEBUG_COLORS[r.person_id % len(DEBUG_COLORS)]
        masks = [
            colour_mask(
                np.asarray(Image.open(debug / "frames" / r.video_id / f"{r.video_id}_{k + 1:06d}.jpg")),
                colour,
            )
            for k in (n - 14, n, n + 14)
        ]
        counts = [m.sum() for m in masks]
        if min(counts[0], counts[2]) < 0.9 * counts[1] or max(counts[0], counts[2]) > 1.1 * counts[1]:
            continue  # partly occluded or leaving: the centroid would move for other reasons
        dx = np.nonzero(masks[2])[1].mean() - np.nonzero(masks[0])[1].mean()
        assert dx * (1 if r.action_id == NAME_TO_ID["move right"] else -1) > 3, (r, dx)
        checked += 1
    assert checked >= 3


def test_labels_match_scene_state_and_speeds() -> None:
    """Walk/run speeds are disjoint and direction is the sign of the motion; poses show appearance labels."""
    scene = make_scene(0, seed=11, seconds=30, width=W, height=H)
    seen: set[int] = set()
    for person in scene.persons:
        for seg in person.segments:
            labels = seg.labels()
            seen.update(labels)
            if seg.loco == "idle":
                assert seg.velocity == 0 and not ({4, 5, 6, 7} & set(labels))
            else:
                speed = abs(seg.velocity) / W
                assert (0.003 <= speed <= 0.005) if seg.loco == "walk" else (0.008 <= speed <= 0.011)
                mid = (seg.start + seg.end) // 2
                assert np.sign(person.x[mid + 1] - person.x[mid]) == np.sign(seg.velocity)
                assert (NAME_TO_ID["move right"] if seg.velocity > 0 else NAME_TO_ID["move left"]) in labels
            for n in (seg.start, (seg.start + seg.end) // 2):
                j = person_joints(person, n)
                top_of_head = j["head"][1] - 0.085 * person.height
                both_up = max(j["l_hand"][1], j["r_hand"][1]) < top_of_head
                assert both_up == (seg.arms == "raise")
                assert ("object" in j) == seg.hold
                assert (j["hip"][1] > person.foot_y - 0.35 * person.height) == seg.crouch
    assert len(seen) >= 7


def test_labels_are_sparse_like_ava() -> None:
    """Generator version 2: on the people inside the frame at the keyframes of a demo-sized dataset (16 x 30 s),
    each class is on 8-22% of them (AVA-like, so random scores score low), every class is present, about a
    third do nothing, and most of the others carry 1 or 2 actions. Version 1 put each class on 18-32%."""
    counts = np.zeros(len(SYNTH_CLASSES) + 1)
    n_labels: list[int] = []
    for index in range(16):
        scene = make_scene(index, seed=0, seconds=30, width=W, height=H, debug_colors=True)
        for second in keyframe_seconds(30):
            n = (second - TIME_ORIGIN_SEC) * FPS
            for person in scene.persons:
                if n >= person.spawn and 0 < person.x[n] < W:
                    labels = person.segment_at(n).labels()
                    counts[labels] += 1
                    n_labels.append(len(labels))
    share = counts[1:] / len(n_labels)
    assert ((share > 0.08) & (share < 0.22)).all(), share
    assert share.mean() < 0.17, share
    k = np.bincount(n_labels, minlength=5) / len(n_labels)
    assert 0.2 < k[0] < 0.4 and k[1] + k[2] > 0.45 and k[4:].sum() < 0.05, k


def test_person_boxes_merge_with_the_action_boxes(tiny: tuple[Path, float]) -> None:
    """The person-box file lists every COCO box with the action CSV's box text: loaded as predicted boxes beside
    the GT (the synth configs' AVA.TRAIN_PREDICT_BOX_LISTS), each labelled person is one box with its labels and
    the people with no action are extra boxes with no label (training negatives)."""
    from slowfast_det.data.annotations import load_boxes_and_labels

    out, _ = tiny
    ann = out / "annotations"
    for split in ("train", "val"):
        coco = json.loads((ann / f"coco_person_{split}.json").read_text())
        actions = read_actions(ann / f"ava_{split}_v2.2.csv")
        gt_only = load_boxes_and_labels([ann / f"ava_{split}_v2.2.csv"], [], score_thresh=0.5, num_classes=9)
        both = load_boxes_and_labels(
            [ann / f"ava_{split}_v2.2.csv"], [ann / PERSON_BOXES_NAME.format(split=split)],
            score_thresh=0.5, num_classes=9,
        )  # fmt: skip
        assert len(both.boxes) == len(coco["annotations"])
        labelled = both.labels.any(axis=1)
        assert labelled.sum() == len(gt_only.boxes) == len(actions.groupby(["video_id", "timestamp", "person_id"]))
        assert both.labels.sum() == gt_only.labels.sum() == len(actions)


def test_action_changes_fall_between_keyframes() -> None:
    for index in range(4):
        scene = make_scene(index, seed=2, seconds=20, width=W, height=H)
        for person in scene.persons:
            assert person.spawn % FPS == FPS // 2 or person.spawn == 0
            for a, b in itertools.pairwise(person.segments):
                assert a.end == b.start and a.end % FPS == FPS // 2


# ---------------------------------------------------------------------------------------------------------
# Wave fast vs slow
# ---------------------------------------------------------------------------------------------------------


def test_wave_fast_and_slow_alias_at_stride_16() -> None:
    scene = make_scene(1, seed=3, seconds=10, width=W, height=H)
    base = scene.persons[0]
    n_frames = scene.n_frames
    seg = Segment(0, n_frames, "idle", 0.0, False, "wave_slow", 1, False, -1, False)
    slow = dataclasses.replace(base, segments=(seg,), x=np.full(n_frames, W / 2.0), spawn=0)
    fast = dataclasses.replace(slow, segments=(dataclasses.replace(seg, arms="wave_fast"),))
    one = dataclasses.replace(scene, persons=(slow,))
    two = dataclasses.replace(scene, persons=(fast,))

    def hand(p: object, n: int) -> np.ndarray:
        return person_joints(p, n)["r_hand"]  # type: ignore[arg-type]

    # frames 16 apart: identical limb positions and identical rendered pixels for the same phase
    for n in range(0, n_frames, ALIAS_STRIDE):
        assert np.array_equal(hand(slow, n), hand(fast, n))
    for n in (0, 32, 160):
        assert np.array_equal(render_frame(one, n).rgb, render_frame(two, n).rgb)
    # starting elsewhere, the fast stride-16 sequence equals the slow one at another phase
    shifted = dataclasses.replace(slow, wave_phase=slow.wave_phase + 5 / ALIAS_STRIDE)
    for n in range(5, n_frames, ALIAS_STRIDE):
        assert np.allclose(hand(fast, n), hand(shifted, n), atol=1e-9)
    # at stride 2 they differ, by a visible amount
    diffs = [np.abs(hand(slow, n) - hand(fast, n)).max() for n in range(0, 64, 2)]
    assert max(diffs) > 0.05 * base.height

    # and the fast one really oscillates faster: more direction changes of the hand's x over 2 s
    def turns(p: object) -> int:
        xs = np.array([hand(p, n)[0] for n in range(0, 2 * FPS, 2)])
        d = np.sign(np.diff(xs))
        return int((d[1:] != d[:-1]).sum())

    assert turns(fast) >= turns(slow) + 4
    assert math.isclose(1 / 16 * FPS, 1.875)
