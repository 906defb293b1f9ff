"""slowfast_det.data: AVA clips, boxes and labels exactly as PySlowFast's AVA loader builds them.

Expected values are computed by hand or by naive loops in the tests, from PySlowFast's test-time rules
(slowfast/datasets/ava_dataset.py, ava_helper.py, cv2_transform.py).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from ava_tools.labelmap import AvaFormatError
from slowfast_det.data import (
    AvaDataset,
    SampleError,
    VideoBatchSampler,
    ava_collate,
    clip_frame_indices,
    keyframe_center_index,
    pack_pathways,
    preprocess_clip_test,
)
from slowfast_det.data.annotations import load_boxes_and_labels
from slowfast_det.data.transforms import (
    horizontal_flip,
    lighting_jitter,
    preprocess_clip_train,
    preprocess_clip_val,
)

HEADER = "original_vido_id video_id frame_id path labels\n"
MEAN = (0.1, 0.2, 0.3)  # distinct per channel: pins the channel order PySlowFast applies them in
STD = (0.5, 0.6, 0.7)


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _frame(k: int, height: int, width: int) -> np.ndarray:
    """A BGR uint8 frame whose every pixel is a known function of (k, y, x, channel)."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((37 * k + 11 * y + 5 * x + 80 * c) % 256).astype(np.uint8)


def _write_video_frames(root: Path, vid: str, frames: list[np.ndarray]) -> list[str]:
    """Write lossless PNG frames ``{vid}/{vid}_%06d.png`` (numbered from 1); return their relative paths."""
    (root / vid).mkdir(parents=True, exist_ok=True)
    rel = []
    for k, img in enumerate(frames, start=1):
        name = f"{vid}/{vid}_{k:06d}.png"
        assert cv2.imwrite(str(root / name), img)
        rel.append(name)
    return rel


def _frame_list(path: Path, videos: dict[str, list[str]]) -> Path:
    lines = [HEADER]
    for i, (vid, rels) in enumerate(videos.items()):
        lines += [f'{vid} {i} {k} {rel} ""\n' for k, rel in enumerate(rels)]
    path.write_text("".join(lines))
    return path


def _normalise_naive(frames: list[np.ndarray], bgr: bool = False) -> np.ndarray:
    """(3, T, H, W): per pixel ``(v/255 - MEAN[c]) / STD[c]`` in float32 with c the BGR channel, then RGB."""
    t_len, (h, w) = len(frames), frames[0].shape[:2]
    out = np.zeros((3, t_len, h, w), dtype=np.float32)
    for t in range(t_len):
        for c_out in range(3):
            c = c_out if bgr else 2 - c_out
            for y in range(h):
                for x in range(w):
                    v = np.float32(frames[t][y, x, c]) / np.float32(255.0)
                    out[c_out, t, y, x] = (v - np.float32(MEAN[c])) / np.float32(STD[c])
    return out


def _small_dataset_kwargs(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "split": "test",
        "gt_box_lists": [],
        "score_thresh": 0.8,
        "num_classes": 80,
        "num_frames": 4,
        "sampling_rate": 1,
        "slowfast_alpha": 2,
        "mean": MEAN,
        "std": STD,
        "test_crop_size": 4,
        "keyframe_range": (1, 3),
        "frame_origin_sec": 0,
        "fps": 2,
        "read_retries": 2,
        "retry_wait_s": 0.0,
    }
    kw.update(over)
    return kw


@pytest.fixture()
def tiny(tmp_path: Path) -> dict[str, Any]:
    """Two videos of 4x6 PNG frames (6 and 5 frames), a frame list, and a predicted-box CSV."""
    frames = {"vidA": [_frame(k, 4, 6) for k in range(6)], "vidB": [_frame(10 + k, 4, 6) for k in range(5)]}
    rels = {vid: _write_video_frames(tmp_path / "frames", vid, f) for vid, f in frames.items()}
    flist = _frame_list(tmp_path / "test.csv", rels)
    boxes = tmp_path / "pred.csv"
    boxes.write_text(
        "vidA,1,0.5,0.25,1.2,0.9,,0.9\n"  # keyframe 1 of vidA
        "vidA,1,0.5,0.25,1.2,0.9,,0.95\n"  # same coordinate text: merged, first kept
        "vidA,1,0.50,0.25,1.2,0.9,,0.95\n"  # different text ("0.50"): a second box
        "vidA,1,0.0,0.0,0.1,0.1,,0.79\n"  # below the threshold: dropped
        "vidA,3,0.0,0.0,0.5,0.5,,0.8\n"  # equal to the threshold: kept; clip runs past the end
        "vidA,4,0.0,0.0,0.5,0.5,,0.99\n"  # second 4 is outside keyframe_range (1..3): dropped
        "vidB,2,0.1,0.2,0.3,0.4,,0.9\n"
    )
    return {"root": tmp_path, "frames": frames, "frame_list": flist, "boxes": boxes}


# ------------------------------------------------------------------------------------------------------------
# clip indices and pathways
# ------------------------------------------------------------------------------------------------------------


def test_keyframe_center_index_ava() -> None:
    # second s -> 0-based index (s - 900) * 30, i.e. frame file (s - 900) * 30 + 1
    assert keyframe_center_index(902) == 60
    assert keyframe_center_index(1798) == 26940


@pytest.mark.parametrize(
    ("t_len", "rate", "center", "n"), [(32, 2, 60, 27030), (8, 8, 3, 10), (4, 16, 95, 100)]
)
def test_clip_frame_indices_naive(t_len: int, rate: int, center: int, n: int) -> None:
    half = t_len * rate // 2
    expected = []
    i = center - half
    while i < center + half:
        expected.append(min(max(i, 0), n - 1))
        i += rate
    got = clip_frame_indices(center, num_frames=t_len, sampling_rate=rate, video_frames=n)
    assert got.tolist() == expected
    assert len(got) == t_len
    if 0 <= center - half and center + half <= n:
        assert got[t_len // 2] == center  # the keyframe is element T/2


def test_slow_pathway_frames() -> None:
    clip = torch.arange(32, dtype=torch.float32).view(1, 32, 1, 1).expand(3, 32, 2, 2).contiguous()
    slow, fast = pack_pathways(clip, alpha=4)
    assert fast is clip
    # PySlowFast's pack_pathway_output: 32 frames, alpha 4 -> 0, 4, 8, 13, 17, 22, 26, 31
    assert slow[0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert pack_pathways(clip, alpha=None)[0] is clip


# ------------------------------------------------------------------------------------------------------------
# test-time preprocessing
# ------------------------------------------------------------------------------------------------------------


def test_preprocess_test_untouched_when_short_side_matches() -> None:
    frames = [_frame(k, 4, 6) for k in range(3)]
    boxes = np.array([[0.5, 0.25, 1.2, 0.9], [-0.1, 0.0, 0.25, 0.5]])
    clip, px = preprocess_clip_test(frames, boxes, crop_size=4, mean=MEAN, std=STD, bgr=False)
    assert clip.dtype == torch.float32 and tuple(clip.shape) == (3, 3, 4, 6)
    np.testing.assert_array_equal(clip.numpy(), _normalise_naive(frames))
    # x * 6, y * 4, clipped to [0, 5] x [0, 3], not rounded
    assert px.tolist() == [[3.0, 1.0, 5.0, 3.0], [0.0, 0.0, 1.5, 2.0]]
    clip_bgr, _ = preprocess_clip_test(frames, boxes, crop_size=4, mean=MEAN, std=STD, bgr=True)
    np.testing.assert_array_equal(clip_bgr.numpy(), _normalise_naive(frames, bgr=True))


def test_preprocess_test_halving_resize_and_box_scale() -> None:
    frames = [_frame(k, 4, 6) for k in range(2)]
    boxes = np.array([[0.5, 0.25, 1.2, 0.9]])
    clip, px = preprocess_clip_test(frames, boxes, crop_size=2, mean=MEAN, std=STD, bgr=False)
    assert tuple(clip.shape) == (3, 2, 2, 3)  # short 4 -> 2, long floor(6 / 4 * 2) = 3
    # cv2 INTER_LINEAR at exactly 1/2 averages each 2x2 block, rounding half up (8-bit fixed point)
    halved = []
    for f in frames:
        s = f.astype(np.int64)
        block = s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2]
        halved.append(((block + 2) // 4).astype(np.uint8))
    np.testing.assert_array_equal(clip.numpy(), _normalise_naive(halved))
    # pixels of 6x4: (3, 1, 7.2 -> 5, 3.6 -> 3); one factor 3/6; clip to [0, 2] x [0, 1]
    assert px.tolist() == [[1.5, 0.5, 2.0, 1.0]]


def test_preprocess_test_long_side_floor_and_single_factor() -> None:
    frames = [_frame(0, 3, 7)]  # short side 3 -> 2: long floor(7 / 3 * 2) = floor(4.67) = 4
    boxes = np.array([[0.1, 0.2, 0.9, 0.8]])
    clip, px = preprocess_clip_test(frames, boxes, crop_size=2, mean=MEAN, std=STD, bgr=False)
    assert tuple(clip.shape) == (3, 1, 2, 4)
    resized = cv2.resize(frames[0], (4, 2), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(clip.numpy(), _normalise_naive([resized]))
    factor = 4.0 / 7.0
    expected = [
        min(0.1 * 7 * factor, 3),
        min(0.2 * 3 * factor, 1),
        min(0.9 * 7 * factor, 3),
        min(0.8 * 3 * factor, 1),
    ]
    assert px[0].tolist() == pytest.approx(expected, rel=0, abs=1e-12)
    portrait = [_frame(0, 7, 3)]
    clip_p, _ = preprocess_clip_test(portrait, boxes, crop_size=2, mean=MEAN, std=STD, bgr=False)
    assert tuple(clip_p.shape) == (3, 1, 4, 2)


def test_preprocess_val_centre_crop_and_flip() -> None:
    frames = [_frame(k, 4, 7) for k in range(2)]
    boxes = np.array([[0.0, 0.0, 0.5, 1.0]])
    clip, px = preprocess_clip_val(frames, boxes, crop_size=4, mean=MEAN, std=STD, bgr=False)
    # crop offsets ceil((4-4)/2) = 0, ceil((7-4)/2) = 2
    np.testing.assert_array_equal(clip.numpy(), _normalise_naive([f[:, 2:6] for f in frames]))
    assert px.tolist() == [[0.0, 0.0, 1.5, 3.0]]  # (0, 0, 3.5, 3) shifted by 2, clipped to [0, 3]
    flipped, fpx = preprocess_clip_test(
        frames, boxes, crop_size=4, mean=MEAN, std=STD, bgr=False, force_flip=True
    )
    np.testing.assert_array_equal(flipped.numpy(), _normalise_naive([f[:, ::-1] for f in frames]))
    assert fpx.tolist() == [[6 - 3.5 - 0.0, 0.0, 6.0, 3.0]]  # x1' = W - 1 - x2, x2' = W - 1 - x1


def test_horizontal_flip_boxes() -> None:
    frames = [np.zeros((2, 10, 3), np.uint8)]
    _, b = horizontal_flip(frames, np.array([[1.0, 0.0, 4.5, 1.0]]))
    assert b.tolist() == [[10 - 1 - 4.5, 0.0, 10 - 1 - 1.0, 1.0]]


# ------------------------------------------------------------------------------------------------------------
# training augmentation
# ------------------------------------------------------------------------------------------------------------


def test_train_boxes_follow_the_frames() -> None:
    """A bright rectangle drawn at the box must land where the transformed box says, flips included."""
    height, width = 120, 200
    norm = np.array([[0.30, 0.25, 0.55, 0.80]])
    img = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = norm[0] * [width, height, width, height]
    img[int(y1) : int(y2), int(x1) : int(x2)] = 255
    flips = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        clip, px = preprocess_clip_train(
            [img, img],
            norm,
            jitter_scales=(130, 160),
            crop_size=112,
            random_flip=True,
            color_augmentation=False,
            pca_jitter_only=True,
            pca_eigval=(0.2, 0.2, 0.2),
            pca_eigvec=np.eye(3).tolist(),
            mean=(0, 0, 0),
            std=(1, 1, 1),
            bgr=False,
            rng=rng,
        )
        assert tuple(clip.shape) == (3, 2, 112, 112)
        mask = clip[0, 0].numpy() > 0.5
        ys, xs = np.nonzero(mask)
        bx1, by1, bx2, by2 = px[0]
        assert abs(xs.min() - bx1) <= 1.5 and abs(xs.max() + 1 - bx2) <= 1.5
        assert abs(ys.min() - by1) <= 1.5 and abs(ys.max() + 1 - by2) <= 1.5
        flips.add(bool(mask[:, : mask.shape[1] // 2].sum() < mask[:, mask.shape[1] // 2 :].sum()))
    assert len(flips) == 2  # both flipped and unflipped outcomes occurred


def test_train_scale_jitter_range() -> None:
    img = np.zeros((100, 150, 3), np.uint8)
    sizes = set()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        from slowfast_det.data.transforms import random_short_side_scale_jitter

        out, _ = random_short_side_scale_jitter([img], np.zeros((0, 4)), min_size=256, max_size=320, rng=rng)
        h, w = out[0].shape[:2]
        assert 256 <= h <= 320 and w == math.floor(150 / 100 * h)
        sizes.add(h)
    assert len(sizes) > 5


def test_lighting_adds_rgb_noise_in_bgr_order() -> None:
    eigval = [0.2, 0.3, 0.4]
    eigvec = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # rgb noise = alpha * eigval
    out = lighting_jitter(
        np.zeros((1, 3, 1, 1), np.float32),
        alphastd=0.1,
        eigval=eigval,
        eigvec=eigvec,
        rng=np.random.default_rng(5),
    )
    alpha = np.random.default_rng(5).normal(0.0, 0.1, size=3)
    rgb = alpha * np.array(eigval)
    np.testing.assert_allclose(out[0, :, 0, 0], [rgb[2], rgb[1], rgb[0]], rtol=1e-6)  # B gets rgb[2]


# ------------------------------------------------------------------------------------------------------------
# the dataset
# ------------------------------------------------------------------------------------------------------------


def test_dataset_test_split_matches_pyslowfast_rules(tiny: dict[str, Any]) -> None:
    root, frames = tiny["root"], tiny["frames"]
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=root / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    assert ds.video_names == ["vidA", "vidB"]
    assert [ds.keyframe(i) for i in range(len(ds))] == [(0, 1), (0, 3), (1, 2)]

    item = ds[0]
    # second 1 at fps 2 -> centre 2; range(0, 4, 1)
    expected = _normalise_naive([frames["vidA"][k] for k in (0, 1, 2, 3)])
    slow, fast = item["inputs"]
    np.testing.assert_array_equal(fast.numpy(), expected)
    np.testing.assert_array_equal(slow.numpy(), expected[:, [0, 3]])  # linspace(0, 3, 2) -> 0, 3
    assert item["boxes"].tolist() == [[3.0, 1.0, 5.0, 3.0], [3.0, 1.0, 5.0, 3.0]]  # two texts, same numbers
    np.testing.assert_array_equal(item["ori_boxes"], [[0.5, 0.25, 1.2, 0.9], [0.5, 0.25, 1.2, 0.9]])
    assert item["labels"].shape == (2, 80) and not item["labels"].any()
    assert item["metadata"].tolist() == [[0, 1], [0, 1]] and item["video_id"] == "vidA"

    # second 3 -> centre 6 -> range(4, 8) clamped to the 6 frames: 4, 5, 5, 5
    np.testing.assert_array_equal(
        ds[1]["inputs"][1].numpy(), _normalise_naive([frames["vidA"][k] for k in (4, 5, 5, 5)])
    )
    np.testing.assert_array_equal(
        ds[2]["inputs"][1].numpy(), _normalise_naive([frames["vidB"][k] for k in (2, 3, 4, 4)])
    )


def test_collate(tiny: dict[str, Any]) -> None:
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=tiny["root"] / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    items = [ds[0], ds[1], ds[2]]
    batch = ava_collate(items)
    assert [tuple(x.shape) for x in batch["inputs"]] == [(3, 3, 2, 4, 6), (3, 3, 4, 4, 6)]
    assert batch["boxes"].dtype == torch.float32 and tuple(batch["boxes"].shape) == (4, 5)
    assert batch["boxes"][:, 0].tolist() == [0, 0, 1, 2]
    assert torch.equal(batch["boxes"][3, 1:], torch.tensor([0.6, 0.8, 1.8, 1.6], dtype=torch.float64).float())
    assert batch["labels"].shape == (4, 80) and batch["labels"].dtype == torch.float32
    assert batch["metadata"].tolist() == [[0, 1], [0, 1], [0, 3], [1, 2]]
    assert batch["video_ids"] == ["vidA", "vidA", "vidA", "vidB"]
    assert batch["ori_boxes"].shape == (4, 4)
    assert batch["index"].tolist() == [0, 1, 2]


def test_collate_rejects_mixed_sizes(tiny: dict[str, Any]) -> None:
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=tiny["root"] / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    a, b = ds[0], ds[2]
    b["inputs"] = [x[..., :5] for x in b["inputs"]]
    with pytest.raises(ValueError, match="different sizes"):
        ava_collate([a, b])


def test_video_batch_sampler() -> None:
    vids = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    assert list(VideoBatchSampler(vids, 2)) == [[0, 1], [2, 3], [4], [5, 6], [7]]
    assert list(VideoBatchSampler(vids, 2, rank=1, world_size=2)) == [[2, 3], [5, 6]]


def test_train_labels_merge_gt_and_predicted(tmp_path: Path) -> None:
    gt = tmp_path / "gt.csv"
    gt.write_text(
        "v,902,0.1,0.1,0.5,0.5,12,0\nv,902,0.1,0.1,0.5,0.5,80,0\nv,902,0.6,0.1,0.9,0.5,1,1\n"
        "v,903,0.1,0.1,0.5,0.5,3,0\n"
    )
    pred = tmp_path / "pred.csv"
    pred.write_text(
        "v,902,0.1,0.1,0.5,0.5,5,0.95\nv,902,0.2,0.2,0.3,0.3,,0.97\nv,902,0.2,0.2,0.4,0.4,,0.5\n"
        "v,904,0.2,0.2,0.4,0.4,,0.99\n"
    )
    kf = load_boxes_and_labels([gt], [pred], score_thresh=0.9, num_classes=80)
    assert kf.video_idx.tolist() == [0, 0, 0] and kf.second.tolist() == [902, 903, 904]
    boxes, labels = kf.boxes_of(0)
    assert boxes.tolist() == [[0.1, 0.1, 0.5, 0.5], [0.6, 0.1, 0.9, 0.5], [0.2, 0.2, 0.3, 0.3]]
    assert [sorted(np.flatnonzero(r) + 1) for r in labels] == [[5, 12, 80], [1], []]
    # person scores: a box in the ground truth scores 1.0 (also where the predicted file lists it with 0.95)
    assert kf.box_scores_of(0).tolist() == [1.0, 1.0, 0.97] and kf.box_scores_of(2).tolist() == [0.99]
    # PySlowFast's val split without FULL_TEST_ON_VAL: seconds divisible by 4 only
    kf4 = load_boxes_and_labels([gt], [pred], score_thresh=0.9, num_classes=80, keyframe_stride=4)
    assert kf4.second.tolist() == [904]


def test_train_split_item(tiny: dict[str, Any]) -> None:
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=tiny["root"] / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(
            split="train",
            train_jitter_scales=(8, 10),
            train_crop_size=6,
            color_augmentation=True,
            pca_jitter_only=False,
        ),
    )
    torch.manual_seed(0)
    a = ds[0]
    torch.manual_seed(0)
    b = ds[0]
    assert torch.equal(a["inputs"][1], b["inputs"][1]) and np.array_equal(a["boxes"], b["boxes"])
    assert tuple(a["inputs"][1].shape) == (3, 4, 6, 6)
    assert (a["boxes"] >= 0).all() and (a["boxes"] <= 5).all()


@pytest.mark.parametrize("split", ["train", "test"])
def test_cached_clips_equal_uncached(tiny: dict[str, Any], split: str) -> None:
    """DATA_LOADER.CACHE_CLIPS: the same samples for the same augmentation seeds, and no second decode."""
    from slowfast_det import builders
    from slowfast_det.config import load_config_from_string

    cfg = load_config_from_string("DATA_LOADER: {CACHE_CLIPS: True}")
    assert builders.dataset_kwargs(cfg, split)["cache_clips"] is True
    common = dict(
        frame_lists=[tiny["frame_list"]],
        frame_dir=tiny["root"] / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(
            split=split, train_jitter_scales=(8, 10), train_crop_size=6, color_augmentation=True,
            pca_jitter_only=False,
        ),
    )  # fmt: skip
    plain, cached = AvaDataset(**common), AvaDataset(**common, cache_clips=True)

    def sample(ds: AvaDataset, epoch: int, i: int) -> dict[str, Any]:
        torch.manual_seed(100 * epoch + i)  # the augmentation seed of (epoch, item)
        return ds[i]

    expected = {(e, i): sample(plain, e, i) for e in range(3) for i in range(len(plain))}
    for epoch in range(3):  # epoch 0 fills the cache, later epochs read it
        for i in range(len(plain)):
            a, b = expected[epoch, i], sample(cached, epoch, i)
            for x, y in zip(a["inputs"], b["inputs"], strict=True):
                assert torch.equal(x, y)
            np.testing.assert_array_equal(a["boxes"], b["boxes"])
            np.testing.assert_array_equal(a["labels"], b["labels"])
        if epoch == 0:
            # the frames are no longer read from disk: a deleted frame folder does not matter
            shutil.rmtree(tiny["root"] / "frames")
    assert not cached.load_frames(0)[0].flags.writeable  # shared by all reads: protected from writes
    with pytest.raises(SampleError):
        plain[0]


# ------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------


def test_missing_frame_names_video_second_and_file(tiny: dict[str, Any]) -> None:
    root = tiny["root"]
    (root / "frames" / "vidA" / "vidA_000003.png").unlink()
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=root / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    with pytest.raises(SampleError, match=r"video vidA, second 1\).*vidA_000003.png: frame file not found"):
        ds[0]


def test_corrupt_frame_is_retried_then_named(tiny: dict[str, Any]) -> None:
    root = tiny["root"]
    (root / "frames" / "vidB" / "vidB_000004.png").write_bytes(b"not an image")
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=root / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    with pytest.raises(
        SampleError, match=r"video vidB, second 2\).*vidB_000004.png: not a decodable image \(2 "
    ):
        ds[2]


def test_frames_of_different_sizes(tiny: dict[str, Any]) -> None:
    root = tiny["root"]
    cv2.imwrite(str(root / "frames" / "vidB" / "vidB_000005.png"), _frame(0, 5, 6))
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=root / "frames",
        predicted_box_lists=[tiny["boxes"]],
        **_small_dataset_kwargs(),
    )
    with pytest.raises(SampleError, match="different sizes"):
        ds[2]


def test_keyframe_beyond_the_video(tiny: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    boxes = tiny["root"] / "late.csv"
    boxes.write_text("vidB,3,0.1,0.2,0.3,0.4,,0.9\n")  # centre 6, vidB has 5 frames
    ds = AvaDataset(
        frame_lists=[tiny["frame_list"]],
        frame_dir=tiny["root"] / "frames",
        predicted_box_lists=[boxes],
        **_small_dataset_kwargs(),
    )
    clip = ds[0]["inputs"][1]  # PySlowFast clamps every index: four copies of the last frame
    np.testing.assert_array_equal(clip.numpy(), _normalise_naive([tiny["frames"]["vidB"][4]] * 4))
    assert "video vidB, second 3): centre frame index 6 is outside the video's 5 frames" in caplog.text


def test_label_outside_range_and_unknown_video(tiny: dict[str, Any]) -> None:
    root = tiny["root"]
    bad = root / "bad_label.csv"
    bad.write_text("vidA,1,0.1,0.2,0.3,0.4,3,0\nvidA,1,0.1,0.2,0.3,0.4,81,0\n")
    unknown = root / "unknown.csv"
    unknown.write_text("vidA,1,0.1,0.2,0.3,0.4,,0.9\nvidZ,1,0.1,0.2,0.3,0.4,,0.9\n")
    cases = [  # (message, predicted-box lists, other dataset arguments)
        (
            r"bad_label.csv, line 2, column 7: action id 81 outside .*1..80",
            [],
            _small_dataset_kwargs(split="train", gt_box_lists=[bad]),
        ),
        (r"unknown.csv, line 2, column 1: video 'vidZ' is not in the frame", [unknown], _small_dataset_kwargs()),
    ]
    for match, predicted, kwargs in cases:
        with pytest.raises(AvaFormatError, match=match):
            AvaDataset(
                frame_lists=[tiny["frame_list"]], frame_dir=root / "frames", predicted_box_lists=predicted, **kwargs
            )


def test_ava_frame_list_mapping(tmp_path: Path) -> None:
    """AVA defaults: keyframe second s uses file (s - 900) * 30 + 1 as the clip's centre (element T/2)."""
    n = 27030
    _frame_list(tmp_path / "val.csv", {"v": [f"v/v_{k:06d}.jpg" for k in range(1, n + 1)]})
    (tmp_path / "pred.csv").write_text(
        "v,902,0.1,0.1,0.2,0.2,,0.9\nv,1798,0.1,0.1,0.2,0.2,,0.9\n"
        "v,901,0.1,0.1,0.2,0.2,,0.9\nv,1799,0.1,0.1,0.2,0.2,,0.9\n"
    )
    ds = AvaDataset(
        split="test",
        frame_lists=[tmp_path / "val.csv"],
        frame_dir="/data/frames",
        gt_box_lists=[],
        predicted_box_lists=[tmp_path / "pred.csv"],
        score_thresh=0.8,
        num_classes=80,
        num_frames=32,
        sampling_rate=2,
        slowfast_alpha=4,
        mean=MEAN,
        std=STD,
    )
    assert [ds.keyframe(i)[1] for i in range(len(ds))] == [902, 1798]  # 901 and 1799 are not AVA keyframes
    idx = ds.clip_indices(0)
    assert idx.tolist() == list(range(60 - 32, 60 + 32, 2))
    assert ds.frame_lists is not None
    assert ds.frame_lists.frame_path(0, int(idx[16])) == "/data/frames/v/v_000061.jpg"


# ------------------------------------------------------------------------------------------------------------
# decoding straight from a video gives the same clip as its extracted frames
# ------------------------------------------------------------------------------------------------------------


def test_video_and_frames_give_the_same_clip(tmp_path: Path) -> None:
    from ava_tools.video_io import decode_rgb_frames, write_mp4
    from slowfast_det.video.reader import decode_frames_at, extraction_timeline, frame_pts

    rng = np.random.default_rng(0)
    n = 105  # 3.5 s at 30 fps
    base = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    rgb = [np.roll(base, k, axis=1) ^ np.uint8(k) for k in range(n)]
    video = tmp_path / "videos" / "clipv.mp4"
    write_mp4(video, rgb, fps=30, crf=0, codec="libx264rgb", pix_fmt="rgb24", preset="ultrafast")
    decoded = [img for _, img in decode_rgb_frames(video)]
    assert len(decoded) == n and all(
        np.array_equal(a, b) for a, b in zip(decoded, rgb, strict=True)
    )  # lossless
    rels = _write_video_frames(tmp_path / "frames", "clipv", [img[:, :, ::-1] for img in decoded])
    _frame_list(tmp_path / "list.csv", {"clipv": rels})
    (tmp_path / "pred.csv").write_text(
        "clipv,1,0.1,0.1,0.5,0.5,,0.9\nclipv,2,0.2,0.1,0.5,0.9,,0.9\nclipv,3,0.3,0.1,0.5,0.5,,0.9\n"
    )
    common = _small_dataset_kwargs(
        num_frames=8,
        sampling_rate=4,
        keyframe_range=(1, 3),
        fps=30,
        test_crop_size=16,
        predicted_box_lists=[tmp_path / "pred.csv"],
    )
    from_frames = AvaDataset(frame_lists=[tmp_path / "list.csv"], frame_dir=tmp_path / "frames", **common)
    from_video = AvaDataset(
        frame_lists=[], frame_dir="", video_dir=tmp_path / "videos", video_cut_sec=(0.0, None), **common
    )
    assert from_video.num_video_frames(0) == from_frames.num_video_frames(0) == n
    # a 30 fps source: extracted frame i is source frame i
    all_pts = frame_pts(video)
    assert len(all_pts) == n
    assert extraction_timeline(video, start_sec=0.0, end_sec=None, fps=30).tolist() == all_pts.tolist()
    # a cut [1, 3) s (as AVA's [900, 1801)): frames 30..89, found after a seek
    assert extraction_timeline(video, start_sec=1.0, end_sec=3.0, fps=30).tolist() == all_pts[30:90].tolist()
    for i in [2, 0, 1, 2]:  # backwards and forwards: seeks and continued decoding
        a, b = from_frames[i], from_video[i]
        for x, y in zip(a["inputs"], b["inputs"], strict=True):
            assert torch.equal(x, y)
        assert np.array_equal(a["boxes"], b["boxes"])
    # frames at given times: the frame shown at t is the last one starting at or before t
    got = decode_frames_at(video, [1.0, 0.0, 1.0 + 1 / 60, 3.49])
    for img, k in zip(got, [30, 0, 30, 104], strict=True):
        assert np.array_equal(img, rgb[k][:, :, ::-1])


# ------------------------------------------------------------------------------------------------------------
# config -> dataset
# ------------------------------------------------------------------------------------------------------------


def test_dataset_kwargs_from_pyslowfast_config(pyslowfast_configs: Path) -> None:
    import yaml

    from slowfast_det import builders
    from slowfast_det.config import load_config

    path = pyslowfast_configs / "configs" / "AVA" / "c2" / "SLOWFAST_32x2_R101_50_50.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path, ["AVA.ANNOTATION_DIR", "/ann", "AVA.FRAME_LIST_DIR", "/lists"])
    kw = builders.dataset_kwargs(cfg, "test")
    assert (
        kw["num_frames"] == raw["DATA"]["NUM_FRAMES"] and kw["sampling_rate"] == raw["DATA"]["SAMPLING_RATE"]
    )
    assert kw["slowfast_alpha"] == raw["SLOWFAST"]["ALPHA"]
    assert kw["score_thresh"] == raw["AVA"]["DETECTION_SCORE_THRESH"]
    assert kw["test_crop_size"] == raw["DATA"]["TEST_CROP_SIZE"]
    assert kw["predicted_box_lists"] == ["/ann/" + raw["AVA"]["TEST_PREDICT_BOX_LISTS"][0]]
    assert kw["gt_box_lists"] == [] and kw["frame_lists"] == ["/lists/val.csv"]
    assert kw["keyframe_stride"] == 1
    assert builders.dataset_kwargs(cfg, "val")["keyframe_stride"] == 4
    train = builders.dataset_kwargs(cfg, "train")
    assert train["gt_box_lists"] == ["/ann/ava_train_v2.2.csv"] and train["frame_lists"] == [
        "/lists/train.csv"
    ]


def test_build_dataset_and_loader_with_workers(tiny: dict[str, Any]) -> None:
    from slowfast_det import builders
    from slowfast_det.config import load_config_from_string

    root = tiny["root"]
    cfg = load_config_from_string(
        f"""
MODEL: {{ARCH: slowfast, NUM_CLASSES: 80}}
SLOWFAST: {{ALPHA: 2}}
DATA: {{NUM_FRAMES: 4, SAMPLING_RATE: 1, TEST_CROP_SIZE: 4, MEAN: [0.1, 0.2, 0.3], STD: [0.5, 0.6, 0.7]}}
AVA:
  FRAME_DIR: {root / "frames"}
  FRAME_LIST_DIR: {root}
  ANNOTATION_DIR: {root}
  TEST_LISTS: [test.csv]
  TEST_PREDICT_BOX_LISTS: [pred.csv]
  DETECTION_SCORE_THRESH: 0.8
"""
    )
    kw = builders.dataset_kwargs(cfg, "test")
    ds = AvaDataset(**{**kw, "keyframe_range": (1, 3), "frame_origin_sec": 0, "fps": 2})
    assert len(ds) == 3
    loader = torch.utils.data.DataLoader(
        ds,
        batch_sampler=VideoBatchSampler(ds.keyframe_video_indices, 8),
        num_workers=1,
        collate_fn=ava_collate,
    )
    batches = list(loader)
    assert [b["metadata"][:, 0].unique().tolist() for b in batches] == [[0], [1]]
    np.testing.assert_array_equal(batches[1]["inputs"][1][0].numpy(), ds[2]["inputs"][1].numpy())
