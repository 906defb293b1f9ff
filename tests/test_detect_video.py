"""detect-video end to end: real MP4s, real Detectron2 Faster R-CNN, real (tiny) SlowFast, real outputs.

No pretrained weights exist offline, so two detectors are made from a seeded random Faster R-CNN (R18-FPN,
small input): one whose box classifier is set to call every proposal a person ("fires everywhere"), and one
whose box classifier is briefly trained to tell a frame with a bright figure from a black frame ("presence").
The SlowFast model is a narrow R50 SlowFast with random weights. Tests check properties, not scores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import slowfast_r50_stages_yaml
from test_streaming import _reference_indices, cfr_times, write_index_video

from ava_tools.cli import run_cli
from ava_tools.evaluate import evaluate
from ava_tools.labelmap import AVA_V22_ALL, bundled_labelmap_path, load_bundled_labelmap
from slowfast_det.config import load_config
from slowfast_det.data.clips import pack_pathways
from slowfast_det.data.transforms import preprocess_clip_test
from slowfast_det.detection.person import PersonDetector
from slowfast_det.models import build_model
from slowfast_det.pipeline.detector import OutputOptions, VideoActionDetector, run_videos
from slowfast_det.pipeline.tables import ACTION_COLUMNS
from slowfast_det.tools.detect_video import get_args_parser, main
from slowfast_det.video.render import render_size
from slowfast_det.video.stream import ClipStream, clip_offsets

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a small, real detectron2 Faster R-CNN: R18-FPN on 96-pixel inputs
DETECTOR_OPTS = [
    "INPUT.MIN_SIZE_TEST",
    "96",
    "INPUT.MAX_SIZE_TEST",
    "400",
    "TEST.DETECTIONS_PER_IMAGE",
    "3",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "30",
    "MODEL.RESNETS.DEPTH",
    "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
]
DETECTOR_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"

TINY_SLOWFAST = (
    """\
DATA: {NUM_FRAMES: 8, SAMPLING_RATE: 2, TEST_CROP_SIZE: 64, INPUT_CHANNEL_NUM: [3, 3]}
DETECTION: {ENABLE: True, ALIGNED: True}
SLOWFAST: {ALPHA: 4, BETA_INV: 8, FUSION_CONV_CHANNEL_RATIO: 2, FUSION_KERNEL_SZ: 5}
"""
    + slowfast_r50_stages_yaml(width_per_group=8)
    + """MODEL: {NUM_CLASSES: 80, ARCH: slowfast, MODEL_NAME: SlowFast, HEAD_ACT: sigmoid}
"""
)


def _figure(i: int, width: int, height: int) -> np.ndarray:
    """A bright upright figure on black (what the presence detector calls a person)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[height // 5 : height - 6, width * 3 // 8 : width * 5 // 8] = 255
    return rgb


def _black(i: int, width: int, height: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def _presence_frames(i: int, width: int, height: int, fps: int = 25) -> np.ndarray:
    """Seconds [0, 1) and [2, 3): the figure; seconds [1, 2) and [3, 4): black."""
    return _figure(i, width, height) if (i // fps) % 2 == 0 else _black(i, width, height)


@dataclass(frozen=True)
class Assets:
    config: Path
    slowfast_weights: Path
    detector_everywhere: Path
    detector_presence: Path


def _box_features(detector: PersonDetector, bgr: np.ndarray) -> torch.Tensor:
    """(R, FC_DIM) box-head features of the proposals of one frame, exactly as inference computes them."""
    model = detector.model
    resized = detector.resize.get_transform(bgr).apply_image(bgr)
    image = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        pooled = model.roi_heads.box_pooler(
            [features[f] for f in model.roi_heads.box_in_features], [p.proposal_boxes for p in proposals]
        )
        return model.roi_heads.box_head(pooled)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("assets")
    config = root / "tiny_slowfast.yaml"
    config.write_text(TINY_SLOWFAST)
    torch.manual_seed(0)
    torch.save(build_model(load_config(config)).state_dict(), root / "slowfast.pth")

    torch.manual_seed(0)
    detector = PersonDetector(config=DETECTOR_CONFIG, weights=None, opts=DETECTOR_OPTS, score_threshold=0.5)
    predictor = detector.model.roi_heads.box_predictor
    with torch.no_grad():
        predictor.bbox_pred.weight.zero_()  # boxes = proposals
        predictor.bbox_pred.bias.zero_()
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[0] = 5.0  # p(person) = e^5 / (e^5 + 80) = 0.65 for every proposal
    torch.save({"model": detector.model.state_dict()}, root / "det_everywhere.pth")

    # "presence": train only the box classifier, figure frames -> person, black frames -> background
    pos = _box_features(detector, _figure(0, 160, 96)[:, :, ::-1].copy())
    neg = _box_features(detector, _black(0, 160, 96))
    x = torch.cat([pos, neg])
    background = predictor.cls_score.out_features - 1
    y = torch.cat([torch.zeros(len(pos), dtype=torch.long), torch.full((len(neg),), background)])
    optimizer = torch.optim.Adam(predictor.cls_score.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(predictor.cls_score(x), y).backward()
        optimizer.step()
    torch.save({"model": detector.model.state_dict()}, root / "det_presence.pth")
    return Assets(config, root / "slowfast.pth", root / "det_everywhere.pth", root / "det_presence.pth")


def _runner(assets: Assets, detector_weights: Path, threshold: float = 0.5) -> VideoActionDetector:
    from slowfast_det.builders import video_detector_kwargs
    from slowfast_det.checkpoint import load_weights

    cfg = load_config(assets.config)
    model = build_model(cfg)
    load_weights(model, assets.slowfast_weights)
    detector = PersonDetector(
        config=DETECTOR_CONFIG, weights=detector_weights, opts=DETECTOR_OPTS, score_threshold=threshold
    )
    return VideoActionDetector(model=model, detector=detector, batch_size=3, **video_detector_kwargs(cfg))


@pytest.fixture(scope="module")
def presence_runner(assets: Assets) -> VideoActionDetector:
    return _runner(assets, assets.detector_presence)


def _cli(assets: Assets, inputs: list[str], out: Path, *extra: str, weights: Path | None = None,
         detector_weights: Path | None = None) -> int:
    """detect-video as its console script runs it (user errors: one line on stderr, status 2)."""
    argv = [
        *inputs,
        "--config",
        str(assets.config),
        "--weights",
        str(weights or assets.slowfast_weights),
        "--detector-config",
        DETECTOR_CONFIG,
        "--detector-weights",
        str(detector_weights or assets.detector_everywhere),
        "--detector-opts",
        *DETECTOR_OPTS,
        "--detector-threshold",
        "0.5",
        "--output-dir",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--no-progress",
        "--cache-dir",
        str(assets.config.parent / "cache"),
        *extra,
    ]
    return run_cli(main, get_args_parser(), argv)


def _check_table(
    table: pd.DataFrame, *, video_id: str, timestamps: list[float], topk: int, threshold: float
) -> None:
    names = load_bundled_labelmap(AVA_V22_ALL).names()
    assert list(table.columns) == ACTION_COLUMNS
    assert (table["video_id"] == video_id).all()
    assert sorted(set(table["timestamp"])) == pytest.approx(timestamps)  # one row set per stride step
    for col in ("x1", "y1", "x2", "y2"):
        assert table[col].between(0.0, 1.0).all()
    assert (table["x1"] <= table["x2"]).all() and (table["y1"] <= table["y2"]).all()
    assert (table["person_id"] >= 1).all()
    assert table["detector_score"].between(0.5, 1.0).all()
    acted = table[table["action_id"].notna()]
    assert acted["action_id"].between(1, 80).all()
    assert all(names[int(a)] == n for a, n in zip(acted["action_id"], acted["action_name"], strict=True))
    assert (acted["score"] >= threshold).all() and (acted["score"] <= 1.0).all()
    for _, person in acted.groupby(["timestamp", "person_id"]):
        assert len(person) <= topk
        assert list(person["score"]) == sorted(person["score"], reverse=True)
    # a person keeps one box per keyframe: ids are unique within a keyframe
    boxes = table.drop_duplicates(["timestamp", "person_id", "x1", "y1", "x2", "y2"])
    assert not boxes.duplicated(["timestamp", "person_id"]).any()


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Damaged and unusual files, with the reason each must fail with (None: must succeed)."""
    folder.mkdir()
    (folder / "notes.mp4").write_text("not a video\n" * 100)
    full = write_index_video(folder / "full.tmp", cfr_times(60, Fraction(30)))
    (folder / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    with av.open(str(folder / "audio.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    write_index_video(folder / "short.mp4", cfr_times(5, Fraction(30)), width=96, height=64)  # < one clip
    write_index_video(folder / "rotated.mp4", cfr_times(40, Fraction(30)), width=96, height=64, rotation=90)
    return {
        "notes.mp4": "cannot open as a media file",
        "cut.mp4": "cannot open as a media file",
        "audio.mp4": "no video stream",
    }


def test_cli_on_real_and_damaged_videos(
    assets: Assets, bikes_mp4: Path, carphone_mp4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = _bad_inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    args = [
        str(bikes_mp4),
        str(carphone_mp4),
        str(tmp_path / "inputs" / "*.mp4"),
        str(tmp_path / "absent.mp4"),
        str(tmp_path / "other" / "short.mp4"),  # same name as inputs/short.mp4: its outputs would clash
    ]
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "inputs" / "short.mp4", tmp_path / "other" / "short.mp4")
    assert _cli(assets, args, out, "--topk", "2", "--action-threshold", "0.3", "--stride", "2") == 1
    report = capsys.readouterr().out
    assert "done: 4, skipped (outputs exist): 0, failed: 5" in report
    assert "other/short.mp4: its outputs would overwrite those of" in report
    for name, reason in failing.items():
        assert any(name in line and reason in line for line in report.splitlines() if "FAILED" in line), name
    assert "absent.mp4: no such file or folder" in report

    # stride 2 s. bikes: 25 fps, 250 frames, last at 9.96 s -> keyframes 0, 2, .., 8; carphone: 29.97 fps,
    # 120 frames, last at 3.97 s -> 0, 2
    bikes = pd.read_csv(out / "bikes.actions.csv")
    _check_table(bikes, video_id="bikes", timestamps=[0.0, 2.0, 4.0, 6.0, 8.0], topk=2, threshold=0.3)
    carphone = pd.read_csv(out / "carphone_pristine.actions.csv")
    _check_table(carphone, video_id="carphone_pristine", timestamps=[0.0, 2.0], topk=2, threshold=0.3)
    short = pd.read_csv(out / "short.actions.csv")  # shorter than one clip: indices clamp, rows still come
    _check_table(short, video_id="short", timestamps=[0.0], topk=2, threshold=0.3)
    rotated = pd.read_csv(out / "rotated.actions.csv")  # 96x64 stored, 64x96 displayed
    _check_table(rotated, video_id="rotated", timestamps=[0.0], topk=2, threshold=0.3)
    assert sorted(p.name for p in out.iterdir()) == [
        "bikes.actions.csv",
        "bikes.meta.json",
        "carphone_pristine.actions.csv",
        "carphone_pristine.meta.json",
        "rotated.actions.csv",
        "rotated.meta.json",
        "short.actions.csv",
        "short.meta.json",
    ]  # no lock or temporary file is left

    # a rerun with the same settings skips finished videos (files untouched); --overwrite redoes them
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    same = ("--topk", "2", "--action-threshold", "0.3", "--stride", "2")
    assert _cli(assets, [str(bikes_mp4), str(tmp_path / "inputs" / "short.mp4")], out, *same) == 0
    assert "done: 0, skipped (outputs exist): 2, failed: 0" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert _cli(assets, [str(tmp_path / "inputs" / "short.mp4")], out, "--overwrite", "--topk", "1") == 0
    assert "done: 1" in capsys.readouterr().out
    assert (out / "short.actions.csv").stat().st_mtime_ns != stamps["short.actions.csv"]
    assert pd.read_csv(out / "short.actions.csv").groupby("person_id").size().max() == 1


def test_ava_format_is_read_by_the_evaluator(assets: Assets, carphone_mp4: Path, tmp_path: Path) -> None:
    assert (
        _cli(
            assets,
            [str(carphone_mp4)],
            tmp_path,
            "--format",
            "ava",
            "--topk",
            "3",
            "--action-threshold",
            "0",
            "--json",
        )
        == 0
    )
    ava = pd.read_csv(tmp_path / "carphone_pristine.ava.csv", header=None)
    assert ava.shape[1] == 8 and set(ava[1]) == {0, 1, 2, 3}  # integer seconds, as AVA keyframes
    # ground truth = our own boxes and actions: every detection is a true positive, every class AP is 1
    gt = ava.copy()
    gt[7] = 1
    gt_path = tmp_path / "gt.csv"
    gt.to_csv(gt_path, header=False, index=False)
    result = evaluate(gt_path, tmp_path / "carphone_pristine.ava.csv", bundled_labelmap_path(AVA_V22_ALL))
    assert result.mean_ap == pytest.approx(1.0)
    assert int(result.per_class["n_det"].sum()) == len(ava)
    doc = pd.read_json(tmp_path / "carphone_pristine.actions.json", typ="series")
    assert [k["timestamp"] for k in doc["keyframes"]] == [0.0, 1.0, 2.0, 3.0]
    assert all(len(p["actions"]) == 3 for k in doc["keyframes"] for p in k["persons"])


def test_multiply_person_score(assets: Assets, tmp_path: Path) -> None:
    """``AVA.MULTIPLY_PERSON_SCORE`` in detect-video: each person's action scores are the plain ones times the
    detector's score of its box (same boxes, same ids)."""
    video = write_index_video(tmp_path / "presence.mp4", cfr_times(50, Fraction(25)), image=_presence_frames)
    runner = _runner(assets, assets.detector_everywhere)  # person score about 0.65 everywhere
    plain = runner.run(video)
    runner.multiply_person_score = True
    joint = runner.run(video)
    pairs = [(p, q) for a, b in zip(plain.keyframes, joint.keyframes, strict=True)
             for p, q in zip(a.persons, b.persons, strict=True)]
    assert pairs and any(p.detector_score < 0.99 for p, _ in pairs)
    for p, q in pairs:
        assert (q.person_id, q.detector_score) == (p.person_id, p.detector_score)
        np.testing.assert_array_equal(q.box, p.box)
        np.testing.assert_allclose(q.scores, p.scores * np.float32(p.detector_score), rtol=1e-6)


def test_keyframes_without_people(presence_runner: VideoActionDetector, tmp_path: Path) -> None:
    video = write_index_video(tmp_path / "presence.mp4", cfr_times(100, Fraction(25)), image=_presence_frames)
    result = presence_runner.run(video)
    assert [k.time for k in result.keyframes] == [0, 1, 2, 3]
    counts = [len(k.persons) for k in result.keyframes]
    assert counts[0] > 0 and counts[2] > 0 and counts[1] == 0 and counts[3] == 0, counts
    # the people of second 0 are re-found at second 2 (tracks live max_age=3 keyframes, same boxes)
    assert {p.person_id for p in result.keyframes[2].persons} <= {
        p.person_id for p in result.keyframes[0].persons
    }
    table = result.table(class_names={}, threshold=0.0, topk=1)
    assert sorted(set(table["timestamp"])) == [0.0, 2.0]

    dark = write_index_video(tmp_path / "dark.mp4", cfr_times(50, Fraction(25)), image=_black)
    options = OutputOptions(output_dir=tmp_path / "out", class_names={}, render=tmp_path / "out" / "dark.mp4")
    summary = run_videos(presence_runner, [dark], options, progress=False)
    assert summary.done == [dark] and not summary.failed
    assert (tmp_path / "out" / "dark.actions.csv").read_text() == ",".join(
        ACTION_COLUMNS
    ) + "\n"  # header only
    with av.open(str(tmp_path / "out" / "dark.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 50
        codec = container.streams.video[0].codec_context
        assert min(codec.width, codec.height) == 480  # a small source is upscaled by default
    assert (tmp_path / "out" / "dark.contact.png").is_file()


@pytest.mark.parametrize("kind", ["cfr25", "vfr"])
def test_model_inputs_equal_pyslowfast_test_preprocessing(
    presence_runner: VideoActionDetector, tmp_path: Path, kind: str
) -> None:
    """Clips built by time from the stream equal preprocess_clip_test on the reference frames: the frames
    displayed at the clip times of a fully decoded copy, resized and normalised as PySlowFast's test loader."""
    if kind == "cfr25":
        times = cfr_times(60, Fraction(25))
        video = write_index_video(tmp_path / "v.mp4", times, width=176, height=144)
    else:
        gaps = [7, 33, 90, 12, 41, 250, 5, 66, 33] * 5
        times = [Fraction(int(ms), 1000) for ms in np.cumsum([0] + gaps)]
        video = write_index_video(
            tmp_path / "v.mp4", times, width=176, height=144, time_base=Fraction(1, 1000)
        )
    with av.open(str(video)) as container:
        reference = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    runner = presence_runner
    stream = ClipStream(
        video,
        num_frames=runner.num_frames,
        sampling_rate=runner.sampling_rate,
        stride="0.5",
        frame_transform=runner.resize_frame,
    )
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.31, 0.32]])
    clips = list(stream)
    assert len(clips) == int(times[-1] / Fraction(1, 2)) + 1
    for clip in clips:
        needed = [clip.time + o for o in clip_offsets(runner.num_frames, runner.sampling_rate)]
        indices = _reference_indices(times, needed)
        expected_clip, expected_boxes = preprocess_clip_test(
            [reference[i] for i in indices],
            boxes,
            crop_size=runner.crop_size,
            mean=runner.mean,
            std=runner.std,
            bgr=runner.bgr,
        )
        pathways, px = runner.clip_inputs(clip, boxes)
        expected = pack_pathways(expected_clip, alpha=runner.alpha)
        assert len(pathways) == len(expected) == 2
        for got, want in zip(pathways, expected, strict=True):
            assert torch.equal(got, want)
        np.testing.assert_array_equal(px, expected_boxes)


def test_render_keeps_source_times_and_draws_boxes(
    presence_runner: VideoActionDetector, tmp_path: Path
) -> None:
    video = write_index_video(tmp_path / "presence.mp4", cfr_times(100, Fraction(25)), image=_presence_frames)
    options = OutputOptions(
        output_dir=tmp_path / "out",
        class_names={},
        render=tmp_path / "render.mp4",
        render_short_side=64,
        action_threshold=0.0,
    )
    summary = run_videos(presence_runner, [video], options, progress=False)
    assert summary.done == [video]
    with av.open(str(tmp_path / "render.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        frames = [(Fraction(f.pts or 0) * stream.time_base, f.to_ndarray(format="rgb24"))
                  for f in container.decode(stream)]
    assert [t for t, _ in frames] == cfr_times(100, Fraction(25))
    width, height = render_size(160, 96, 64)
    assert frames[0][1].shape == (height, width, 3) == (64, 106, 3)

    def coloured(rgb: np.ndarray) -> bool:  # box outlines are saturated palette colours; the video is grey
        return bool((rgb.max(axis=2).astype(int) - rgb.min(axis=2)).max() > 120)

    # frames within half a stride of keyframes 0 and 2 show boxes; those nearest to 1 and 3 do not
    for i, (t, rgb) in enumerate(frames):
        nearest = min(range(4), key=lambda k: (abs(t - k), k))  # noqa: B023 (used at once)
        assert coloured(rgb) == (nearest in (0, 2)), (i, float(t))


def test_cli_rejects_bad_setup(assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = write_index_video(tmp_path / "v.mp4", cfr_times(10, Fraction(30)))
    argv = [
        str(video),
        "--config",
        str(assets.config),
        "--weights",
        str(tmp_path / "missing.pth"),
        "--output-dir",
        str(tmp_path / "out"),
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert run_cli(main, get_args_parser(), argv) == 2
    assert "missing.pth does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("DATA: {NUM_FRAMEZ: 8}\n")
    argv[2] = str(bad)
    assert run_cli(main, get_args_parser(), argv) == 2
    assert "NUM_FRAMEZ" in capsys.readouterr().err
    # detector weights that are not this detector's (here: the SlowFast checkpoint) fail loudly
    argv[2], argv[4] = str(assets.config), str(assets.slowfast_weights)
    argv += ["--detector-config", DETECTOR_CONFIG, "--detector-weights", str(assets.slowfast_weights),
             "--detector-opts", *DETECTOR_OPTS]
    assert run_cli(main, get_args_parser(), argv) == 2
    assert "slowfast.pth do not match the detector config: missing: backbone" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        get_args_parser().parse_args([*argv, "--stride", "-1"])
    assert "expected a stride > 0 seconds, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        get_args_parser().parse_args([*argv, "--stride", "0"])
    assert "expected a stride > 0 seconds, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# reliability: checks before model loads, settings records, non-finite scores, locks, messages
# ---------------------------------------------------------------------------------------------------------


def _small_video(folder: Path, name: str = "v.mp4", frames: int = 30) -> Path:
    """A 30 fps index video of ``frames`` frames (1 s by default: keyframe 0 only)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_index_video(folder / name, cfr_times(frames, Fraction(30)), width=96, height=64)


@contextmanager
def _unwritable(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files: immutable (chattr +i) as root, read-only permissions otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without a working chattr: cannot make a folder unwritable")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = []
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip(f"{folder} stays writable here")
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            folder.chmod(0o755)


def test_inputs_and_output_folder_are_checked_before_any_model_loads(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SlowFast checkpoint passed as *detector* weights is a tripwire: loading the models would fail with
    "do not match the detector config", so every other message below proves the check came first."""
    video = _small_video(tmp_path / "in")
    (tmp_path / "in" / "zero.mp4").touch()
    tripwire = {"detector_weights": assets.slowfast_weights}
    out = tmp_path / "out"

    def error(inputs: list[str], output: Path) -> str:
        assert _cli(assets, inputs, output, **tripwire) == 2
        err = capsys.readouterr().err
        assert "do not match the detector config" not in err
        return err

    assert "absent.mp4: no such file or folder" in error([str(tmp_path / "absent.mp4")], out)
    assert "zero.mp4: empty file (0 bytes)" in error([str(tmp_path / "in" / "zero.mp4")], out)
    assert "no file matches this pattern" in error([str(tmp_path / "*.mkv")], out)
    assert not out.exists()

    # --output-dir that is a regular file: the folder is blamed, not the video
    regular = tmp_path / "results.txt"
    regular.write_text("not a folder\n")
    err = error([str(video)], regular)
    assert f"--output-dir {regular} is a file, not a folder" in err and "v.mp4" not in err
    err = error([str(video)], regular / "sub")
    assert f"--output-dir {regular / 'sub'} cannot be created: {regular} is a file, not a folder" in err
    frozen = tmp_path / "frozen"
    with _unwritable(frozen):
        assert f"--output-dir {frozen} is not writable" in error([str(video)], frozen)
        assert f"cannot be created: {frozen} is not writable" in error([str(video)], frozen / "new")
        assert not (frozen / "new").exists()
        # the render folder is checked as well
        assert _cli(assets, [str(video)], out, "--render", str(frozen / "r"), **tripwire) == 2
        assert f"--render folder {frozen / 'r'} cannot be created" in capsys.readouterr().err
    assert not out.exists()

    # usable and unusable inputs together: the unusable ones are reported at once, before the models load
    assert _cli(assets, [str(tmp_path / "absent.mp4"), str(video)], out, **tripwire) == 2
    err = capsys.readouterr().err
    assert err.index("absent.mp4: no such file or folder") < err.index("do not match the detector config")
    assert not out.exists()  # the failed setup leaves no empty output folder either


def test_int8_precision_runs_on_cpu_and_is_recorded(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _small_video(tmp_path / "in", frames=60)
    assert _cli(assets, [str(video)], tmp_path / "plain", "--precision", "int8", "--no-optimize") == 2
    assert "--precision int8 runs the optimised model on CPU" in capsys.readouterr().err
    assert _cli(assets, [str(video)], tmp_path / "int8", "--precision", "int8") == 0
    assert "done: 1" in capsys.readouterr().out
    assert _meta(tmp_path / "int8", "v")["settings"]["model"]["precision"] == "int8"
    assert _cli(assets, [str(video)], tmp_path / "int8") == 1  # fp32 does not reuse int8 outputs
    assert "model.precision" in capsys.readouterr().out


def _meta(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}.meta.json").read_text())


def test_rerun_skips_only_outputs_made_with_the_same_settings(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _small_video(tmp_path / "in", frames=60)
    out = tmp_path / "out"
    assert _cli(assets, [str(video)], out) == 0
    assert "done: 1" in capsys.readouterr().out
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert _cli(assets, [str(video)], out) == 0  # same settings: skipped
    assert "done: 0, skipped (outputs exist): 1, failed: 0" in capsys.readouterr().out

    other_weights = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(build_model(load_config(assets.config)).state_dict(), other_weights)
    cases = [
        (("--stride", "0.5"), 'keyframes.stride: "1" -> "1/2"'),
        (("--start", "0.5"), 'keyframes.start: "0" -> "1/2"'),
        (("--end", "1"), "keyframes.end: null -> \"1\""),
        (("--action-threshold", "0.7"), "output.action_threshold: 0.5 -> 0.7"),
        (("--topk", "2"), "output.topk: null -> 2"),
        (("--detector-threshold", "0.6"), "detector.threshold: 0.5 -> 0.6"),
        (("--opts", "MODEL.DROPOUT_RATE", "0.25"), "model.config.MODEL.DROPOUT_RATE: 0.5 -> 0.25"),
        (("--weights", str(other_weights)), "model.weights_sha256: "),
    ]
    for extra, difference in cases:
        kwargs = {"weights": other_weights} if extra[0] == "--weights" else {}
        assert _cli(assets, [str(video)], out, *([] if kwargs else extra), **kwargs) == 1, extra
        report = capsys.readouterr().out
        line = next(line for line in report.splitlines() if "FAILED" in line)
        assert "v.mp4" in line and "made with other settings" in line and difference in line, (extra, line)
        assert "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing was touched
    meta = _meta(out, "v")
    assert meta["settings"]["keyframes"] == {"stride": "1", "start": "0", "end": None}
    sha = hashlib.sha256(assets.slowfast_weights.read_bytes()).hexdigest()
    assert meta["settings"]["model"]["weights_sha256"] == sha
    assert meta["settings"]["model"]["config"]["MODEL"]["NUM_CLASSES"] == 80

    # outputs without a record (an older version, or a run killed between table and record) are not trusted
    record = (out / "v.meta.json").read_bytes()
    (out / "v.meta.json").unlink()
    assert _cli(assets, [str(video)], out) == 1
    assert "no readable settings record v.meta.json" in capsys.readouterr().out
    (out / "v.meta.json").write_bytes(record)

    # --overwrite redoes the video with the new settings, which a later rerun then matches
    assert _cli(assets, [str(video)], out, "--stride", "0.5", "--overwrite") == 0
    assert "done: 1" in capsys.readouterr().out
    assert _meta(out, "v")["settings"]["keyframes"]["stride"] == "1/2"
    assert sorted(set(pd.read_csv(out / "v.actions.csv")["timestamp"])) == [0.0, 0.5, 1.0, 1.5]
    assert _cli(assets, [str(video)], out, "--stride", "0.5") == 0
    assert "skipped (outputs exist): 1" in capsys.readouterr().out
    # the weights were hashed once per file, then read from the index in the cache folder
    index = json.loads((assets.config.parent / "cache" / ".sha256-index.json").read_text())
    assert str(assets.slowfast_weights.resolve()) in index


def test_temporary_outputs_of_a_killed_run_are_removed(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed while writing leaves ``.<output>.<random>.tmp`` (atomic writes); the next run of that video
    (holding its lock, so no live writer can own them) removes them; other files are left alone."""
    video = _small_video(tmp_path / "in", frames=60)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".v.actions.csv.k3j2x9.tmp", out / ".v.meta.json.a1b2c3.tmp"]
    for f in stale:
        f.write_bytes(b"")
    other = out / ".w.actions.csv.zz.tmp"  # another video's: not this run's business
    other.write_bytes(b"")
    assert _cli(assets, [str(video)], out) == 0
    assert "done: 1" in capsys.readouterr().out
    assert not any(f.exists() for f in stale) and other.exists()
    assert (out / "v.actions.csv").is_file() and (out / "v.meta.json").is_file()


def _nan_checkpoint(source: Path, target: Path, key: str, index: int) -> Path:
    state = torch.load(source, map_location="cpu")
    model_state = state["model"] if "model" in state else state
    with torch.no_grad():
        model_state[key].view(-1)[index] = float("nan")
    torch.save(state, target)
    return target


def test_non_finite_scores_fail_the_video(assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = _small_video(tmp_path / "in", frames=45)
    good = _small_video(tmp_path / "in2", "good.mp4")
    nan_head = _nan_checkpoint(assets.slowfast_weights, tmp_path / "nan_head.pth", "head.projection.bias", 3)
    out = tmp_path / "out"
    # the detector that fires everywhere keeps 3 boxes per keyframe: 3 people x 80 classes, class 4 is NaN
    assert _cli(assets, [str(video)], out, weights=nan_head) == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if "FAILED" in line)
    assert str(video) in line and str(nan_head) in line, line
    assert "3 of 240 action scores (3 people x 80 classes) are non-finite (NaN/inf) at keyframe 0 s" in line
    assert "--allow-nonfinite" in line
    assert not (out / "v.actions.csv").exists()

    assert _cli(assets, [str(video)], out, "--allow-nonfinite", weights=nan_head) == 0
    report = capsys.readouterr().out
    assert "WARNING" in report and "non-finite slowfast outputs written anyway" in report
    table = pd.read_csv(out / "v.actions.csv")
    assert set(table["timestamp"]) == {0.0, 1.0} and (table["action_id"] != 4).all()

    # a detector whose box classifier gives NaN: detectron2 would drop every box without a word
    nan_det = _nan_checkpoint(assets.detector_everywhere, tmp_path / "nan_det.pth",
                              "roi_heads.box_predictor.cls_score.bias", 0)
    assert _cli(assets, [str(video), str(good)], tmp_path / "out2", detector_weights=nan_det) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert len(failed) == 2, failed  # every video fails, each with its own name
    assert str(video) in failed[1] or str(video) in failed[0]
    assert all(str(nan_det) in line and "detector outputs" in line and "are non-finite" in line for line in failed)


def test_start_after_the_end_warns_and_bad_values_are_refused(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _small_video(tmp_path / "in")  # 30 frames at 30 fps: 1 s, last frame at 0.967 s
    out = tmp_path / "out"
    assert _cli(assets, [str(video)], out, "--start", "5") == 0
    report = capsys.readouterr().out
    assert (f"WARNING {video}: no keyframe lies in [5 s, the end] of a video of duration 1.000 s (last frame at "
            "0.967 s)") in report
    assert (out / "v.actions.csv").read_text() == ",".join(ACTION_COLUMNS) + "\n"
    assert _cli(assets, [str(video)], tmp_path / "out2", "--start", "0.98", "--end", "0.99") == 0
    assert "no keyframe lies in [0.98 s, 0.99 s]" in capsys.readouterr().out

    parser = get_args_parser()
    base = [str(video), "--config", "c", "--weights", "w", "--output-dir", "o"]
    for extra, message in [
        (["--action-threshold", "2"], "expected a score threshold in [0, 1] (scores are probabilities), got 2"),
        (["--action-threshold", "-0.1"], "got -0.1"),
        (["--action-threshold", "nan"], "got nan"),
        (["--detector-threshold", "1.5"], "in [0, 1]"),
        (["--topk", "0"], "expected an integer >= 1, got 0"),
        (["--batch-size", "0"], "expected an integer >= 1, got 0"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(base + extra)
        assert message in capsys.readouterr().err, extra
    assert _cli(assets, [str(video)], out, "--start", "2", "--end", "1") == 2
    assert "--end 1 is before --start 2" in capsys.readouterr().err


def test_label_map_must_fit_the_model(assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = _small_video(tmp_path / "in")
    nine = ["--opts", "MODEL.NUM_CLASSES", "9"]
    weights = tmp_path / "nine.pth"
    torch.manual_seed(0)
    torch.save(build_model(load_config(assets.config, nine[1:])).state_dict(), weights)
    out = tmp_path / "out"
    assert _cli(assets, [str(video)], out, *nine, weights=weights) == 2
    err = capsys.readouterr().err
    assert "the model has 9 classes (MODEL.NUM_CLASSES of" in err
    assert "the default label map (bundled ava_action_list_v2.2.pbtxt) has 80" in err and "--label-map" in err
    assert not out.exists()

    labels = tmp_path / "nine.pbtxt"
    labels.write_text("".join(f'item {{\n  name: "move {i}"\n  id: {i}\n}}\n' for i in range(1, 10)))
    assert _cli(assets, [str(video)], out, *nine, "--label-map", str(labels), "--action-threshold", "0",
                weights=weights) == 0
    table = pd.read_csv(out / "v.actions.csv")
    assert set(table["action_name"]) == {f"move {i}" for i in range(1, 10)}
    eight = tmp_path / "eight.pbtxt"
    eight.write_text("".join(f'item {{\n  name: "move {i}"\n  id: {i}\n}}\n' for i in range(1, 9)))
    assert _cli(assets, [str(video)], out, *nine, "--label-map", str(eight), weights=weights) == 2
    assert f"but {eight} has 8 (its largest id)" in capsys.readouterr().err


def test_unavailable_device_is_one_line(assets: Assets, tmp_path: Path) -> None:
    """The console script, in a subprocess: one line, no traceback (--debug: tests/test_entry_points.py)."""
    video = _small_video(tmp_path / "in")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = "cuda" if count == 0 else f"cuda:{count}"
    exe = Path(sys.executable).parent / "detect-video"
    command = [str(exe) if exe.exists() else "detect-video", str(video), "--config", str(assets.config),
               "--weights", str(assets.slowfast_weights), "--output-dir", str(tmp_path / "out"), "--device", device]
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"detect-video: error: --device {device}:" in r.stderr and "available: cpu" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr  # the error, the --debug hint, maybe a warning


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_video_locked_by_another_run_is_left_to_it(
    assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _small_video(tmp_path / "in", "a.mp4")
    second = _small_video(tmp_path / "in", "b.mp4")
    out = tmp_path / "out"
    out.mkdir()
    # another process holds a.lock as a concurrent run of detect-video would while it processes a.mp4
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out / "a.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert _cli(assets, [str(first), str(second)], out) == 0
        report = capsys.readouterr().out
        assert "done: 1, skipped (outputs exist): 0, failed: 0, locked by another run: 1" in report
        assert f"locked {first}: locked by another run" in report
        assert not (out / "a.actions.csv").exists() and (out / "b.actions.csv").is_file()
    finally:
        holder.kill()
        holder.wait()
    # the holder died (as a killed run would): its lock is gone with it, the next run does the video
    assert _cli(assets, [str(first), str(second)], out) == 0
    assert "done: 1, skipped (outputs exist): 1, failed: 0" in capsys.readouterr().out
    assert (out / "a.actions.csv").is_file()
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".lock") == []


_RENDER = """
import sys
from slowfast_det.video.render import render_video
render_video(sys.argv[1], sys.argv[2], [], hold=0.5)
"""


def test_temporary_render_of_a_killed_run_is_removed(bikes_mp4: Path, tmp_path: Path) -> None:
    from slowfast_det.video.render import render_video

    dst = tmp_path / "renders" / "bikes.mp4"
    dst.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _RENDER, str(bikes_mp4), str(dst)])
    try:
        deadline = time.monotonic() + 120
        while not list(dst.parent.glob(".bikes.mp4.*.tmp.mp4")):
            assert proc.poll() is None, "the render finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = list(dst.parent.glob(".bikes.mp4.*.tmp.mp4"))
    assert len(left) == 1 and not dst.exists()
    # a temporary file of a render still running (here: a live process's pid) is not touched
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        running = dst.parent / f".bikes.mp4.abcd1234.{alive.pid}.tmp.mp4"
        running.write_bytes(b"partial")
        short = _small_video(tmp_path / "in")
        assert render_video(short, dst, [], hold=Fraction(1, 2)) == 30
        assert dst.is_file() and not left[0].exists()
        assert running.exists()
    finally:
        alive.kill()
        alive.wait()


# ---------------------------------------------------------------------------------------------------------
# the overlapped pipeline (--pipeline overlapped, the default) against the sequential one
# ---------------------------------------------------------------------------------------------------------


def _stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stage-")]


def test_overlapped_pipeline_writes_the_sequential_outputs(
    assets: Assets, bikes_mp4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {}
    for mode in ("sequential", "overlapped"):
        out = tmp_path / mode
        # stride 0.5 s on bikes (last frame 9.96 s): 20 keyframes, 5 batches of 4 in flight through the stages
        assert _cli(assets, [str(bikes_mp4)], out, "--pipeline", mode, "--json", "--stride", "0.5",
                    "--action-threshold", "0.2") == 0
        report = capsys.readouterr().out
        assert f"pipeline {mode}" in report
        assert re.search(r"^20 keyframes in [\d.]+ s: [\d.]+ keyframes/s", report, re.M), report
        assert re.search(r"^stage busy seconds: decode [\d.]+, detect [\d.]+, prepare [\d.]+, slowfast [\d.]+, "
                         r"track [\d.]+, write [\d.]+, render [\d.]+; sum [\d.]+, slowest \w+", report, re.M), report
        outputs[mode] = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.endswith((".csv", ".json"))
                         and not p.name.endswith(".meta.json")}
        assert set(outputs[mode]) == {"bikes.actions.csv", "bikes.actions.json"}
    assert outputs["overlapped"] == outputs["sequential"]  # byte for byte
    table = pd.read_csv(io.BytesIO(outputs["overlapped"]["bikes.actions.csv"]))
    assert len(table["timestamp"].unique()) == 20
    assert not _stage_threads()


def test_a_failing_stage_ends_the_run_with_its_error(
    assets: Assets, bikes_mp4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the action-model stage fails (NaN scores), and the decode stage fails after some keyframes went through
    # (a file cut in the middle, its index at the front): the same one-line reasons as the sequential pipeline
    nan_head = _nan_checkpoint(assets.slowfast_weights, tmp_path / "nan_head.pth", "head.projection.bias", 3)
    full = write_index_video(tmp_path / "full.mp4", cfr_times(150, Fraction(30)), width=96, height=64,
                             faststart=True)
    cut = tmp_path / "in" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 3 // 4])
    failures = {}
    for mode in ("sequential", "overlapped"):
        lines = []
        for name, inputs, weights in (("nan", [str(bikes_mp4)], nan_head), ("cut", [str(cut)], None)):
            out = tmp_path / f"{mode}_{name}"
            assert _cli(assets, inputs, out, "--pipeline", mode, weights=weights) == 1
            lines += [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
            assert not (out / f"{Path(inputs[0]).stem}.actions.csv").exists()
            assert not _stage_threads()  # every stage thread ended
        failures[mode] = lines
    assert failures["overlapped"] == failures["sequential"]
    nan_line, cut_line = failures["overlapped"]
    assert "are non-finite (NaN/inf) at keyframe 0 s" in nan_line and str(nan_head) in nan_line
    assert "cut.mp4: truncated" in cut_line
