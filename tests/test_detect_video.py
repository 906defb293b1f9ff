"""detect-video end to end: real MP4s, real Detectron2 Faster R-CNN, real (tiny) SlowFast, real outputs.

No pretrained weights exist offline, so two detectors are made from a seeded random Faster R-CNN (R18-FPN,
small input): one whose box classifier is set to call every proposal a person ("fires everywhere"), and one
whose box classifier is briefly trained to tell a frame with a bright figure from a black frame ("presence").
The SlowFast model is a narrow R50 SlowFast with random weights. Tests check properties, not scores.
"""

from __future__ import annotations

import shutil
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


def _cli(assets: Assets, inputs: list[str], out: Path, *extra: str) -> int:
    argv = [
        *inputs,
        "--config",
        str(assets.config),
        "--weights",
        str(assets.slowfast_weights),
        "--detector-config",
        DETECTOR_CONFIG,
        "--detector-weights",
        str(assets.detector_everywhere),
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
        *extra,
    ]
    return main(get_args_parser().parse_args(argv))


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
        "carphone_pristine.actions.csv",
        "rotated.actions.csv",
        "short.actions.csv",
    ]

    # a rerun skips finished videos (files untouched); --overwrite redoes them
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert _cli(assets, [str(bikes_mp4), str(tmp_path / "inputs" / "short.mp4")], out) == 0
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
    ]
    assert main(get_args_parser().parse_args(argv)) == 2
    assert "missing.pth does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("DATA: {NUM_FRAMEZ: 8}\n")
    argv[2] = str(bad)
    assert main(get_args_parser().parse_args(argv)) == 2
    assert "NUM_FRAMEZ" in capsys.readouterr().err
    # detector weights that are not this detector's (here: the SlowFast checkpoint) fail loudly
    argv[2], argv[4] = str(assets.config), str(assets.slowfast_weights)
    argv += ["--detector-config", DETECTOR_CONFIG, "--detector-weights", str(assets.slowfast_weights),
             "--detector-opts", *DETECTOR_OPTS]
    assert main(get_args_parser().parse_args(argv)) == 2
    assert "slowfast.pth do not match the detector config: missing: backbone" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        get_args_parser().parse_args([*argv, "--stride", "-1"])
    assert "expected seconds >= 0" in capsys.readouterr().err
