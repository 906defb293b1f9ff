"""detectron2 v0.6 (Python-only install) runs Faster R-CNN for real: alone and through slowfast_det.detection.compat."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from slowfast_det.detection import compat


def test_import_of_slowfast_det_is_cheap() -> None:
    code = (
        "import sys, slowfast_det, ava_tools; "
        "heavy = [m for m in ('torch', 'detectron2', 'cv2', 'av') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_USER_SCRIPT = """
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor

cfg = get_cfg()
cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
cfg.MODEL.DEVICE = "cpu"
cfg.MODEL.WEIGHTS = ""  # random weights: nothing to download
cfg.INPUT.MIN_SIZE_TEST = 272
torch.manual_seed(0)
instances = DefaultPredictor(cfg)(np.load(sys.argv[1]))["instances"]
print("BOXES", len(instances), tuple(instances.image_size))
print("SLOWFAST_DET", sorted(m for m in sys.modules if m.startswith("slowfast_det")))
"""


def test_users_own_detectron2_script_runs_without_slowfast_det(bikes_mp4: Path, tmp_path: Path) -> None:
    """The environment's detectron2 is self-sufficient: model zoo + DefaultPredictor on a real frame, no compat."""
    with av.open(str(bikes_mp4)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    np.save(tmp_path / "frame.npy", frame)
    # cwd and PYTHONPATH away from this repository; the editable slowfast_det install is never imported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _USER_SCRIPT, str(tmp_path / "frame.npy")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "BOXES" in result.stdout and "(272, 640)" in result.stdout
    assert "SLOWFAST_DET []" in result.stdout


def test_faster_rcnn_from_model_zoo_config_runs_on_a_real_frame(bikes_mp4: Path) -> None:
    compat.patch()
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    with av.open(str(bikes_mp4)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert frame.shape == (272, 640, 3)

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.MIN_SIZE_TEST = 272
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.roi_heads.box_predictor.cls_score.out_features == 81  # 80 COCO classes + background
    image = torch.as_tensor(np.ascontiguousarray(frame.transpose(2, 0, 1)))
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 272, "width": 640}])
    instances = out["instances"]
    boxes = instances.pred_boxes.tensor
    assert boxes.shape[1] == 4 and len(boxes) > 0  # random weights still produce ranked proposals
    assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 272).all())
    assert bool((instances.scores >= cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST).all())


def test_missing_extension_ops_raise_a_clear_error() -> None:
    compat.patch()
    from detectron2.layers import nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    if compat.has_real_extension():
        pytest.skip("the official detectron2 build with its C++ extension is installed")
    with pytest.raises(compat.MissingDetectron2Op, match="nms_rotated.*official detectron2 build"):
        nms_rotated(torch.zeros(1, 5), torch.zeros(1), 0.5)
    with pytest.raises(compat.MissingDetectron2Op, match="box_iou_rotated"):
        pairwise_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5))


def test_pillow_linear_alias() -> None:
    compat.patch()
    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR


_WARNINGS_SCRIPT = """
import importlib, pkgutil, sys, warnings
import numpy as np
import torch
torch.set_num_threads(1)
import slowfast_det, ava_tools
from slowfast_det.detection import compat
compat.import_detectron2()
for package in (slowfast_det, ava_tools):  # every module of the project, as the console scripts import them
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith(".__main__"):  # `python -m` entry points run when imported
            importlib.import_module(info.name)
from slowfast_det.detection.person import PersonDetector
detector = PersonDetector(weights=None, opts=["INPUT.MIN_SIZE_TEST", "136"], score_threshold=0.0)
detector([np.load(sys.argv[1])])
# the filters are narrow: the same messages attributed to the project's modules still show
warnings.warn_explicit("pkg_resources is deprecated as an API (ours)", UserWarning, "detector.py", 1,
                       module="slowfast_det.detection.person")
warnings.warn_explicit("`torch.jit.script` is deprecated (ours)", FutureWarning, "pipeline.py", 2,
                       module="slowfast_det.pipeline.detector")
warnings.warn_explicit("our own deprecation", DeprecationWarning, "compat.py", 3,
                       module="slowfast_det.detection.compat")
print("DONE")
"""


def test_no_third_party_warnings_from_importing_and_running_the_detector(bikes_mp4: Path, tmp_path: Path) -> None:
    """With every warning enabled (-W default): none from detectron2/fvcore/torch, while the project's still show."""
    with av.open(str(bikes_mp4)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    np.save(tmp_path / "frame.npy", frame)
    result = subprocess.run([sys.executable, "-W", "default", "-c", _WARNINGS_SCRIPT, str(tmp_path / "frame.npy")],
                            capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and "DONE" in result.stdout, result.stderr
    warning_lines = [line for line in result.stderr.splitlines() if "Warning: " in line]
    assert [line.split(": ", 1)[0] for line in warning_lines] == [
        "detector.py:1", "pipeline.py:2", "compat.py:3"
    ], result.stderr


def test_optimized_detector_gives_the_same_boxes_on_a_real_frame(bikes_mp4: Path) -> None:
    # BN folded into the convs + channels-last backbone: boxes within 1e-3 px of detectron2's own model
    from slowfast_det.detection.fused import optimize_detector
    from slowfast_det.detection.person import PersonDetector

    torch.set_num_threads(1)
    with av.open(str(bikes_mp4)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    torch.manual_seed(0)
    opts = ["INPUT.MIN_SIZE_TEST", "272", "INPUT.MAX_SIZE_TEST", "640"]
    plain = PersonDetector(weights=None, opts=opts, score_threshold=0.2, optimize=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # spread the random scores so that rounding decides no box
        for layer in (plain.model.proposal_generator.rpn_head.objectness_logits,
                      plain.model.roi_heads.box_predictor.cls_score):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 3e-4)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
        deltas = plain.model.proposal_generator.rpn_head.anchor_deltas, plain.model.roi_heads.box_predictor.bbox_pred
        for layer in deltas:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 1e-5)  # box deltas ~0.1, not clamped
            layer.bias.zero_()
        plain.model.roi_heads.box_predictor.cls_score.bias[0] = 5.0  # person: ~0.65 before the weights' spread
    fast = PersonDetector(weights=None, opts=opts, score_threshold=0.2)
    fast.model.load_state_dict(plain.model.state_dict())
    (expected,) = plain([frame])
    (got,) = fast([frame])
    assert len(expected) > 0
    assert fast.inference_model() is not fast.model  # the detectron2-layout model is kept for its state dict
    assert not any("norm" in k for k in fast.inference_model().state_dict())  # every FrozenBN folded
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3, rtol=0)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4, rtol=0)
    model = optimize_detector(plain.model)  # in place, and idempotent
    assert optimize_detector(model) is model


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_channels_last_roi_align_equals_torchvision(aligned: bool, sampling_ratio: int) -> None:
    # the optimised detector's box pooler: separable RoIAlign on channels-last features, against torchvision's
    # op on boxes of every size, partly or wholly outside the map, degenerate, on both images of a batch
    from torchvision.ops import roi_align

    from slowfast_det.roi_align import roi_align_channels_last

    gen = torch.Generator().manual_seed(0)
    scale = 0.25
    features = torch.randn(2, 32, 30, 50, generator=gen).contiguous(memory_format=torch.channels_last)
    n = 200
    size = torch.tensor([50 / scale, 30 / scale])
    corner = torch.rand(n, 2, generator=gen) * size * 1.3 - 0.15 * size
    extent = torch.rand(n, 2, generator=gen) ** 2 * size
    boxes = torch.cat([torch.randint(0, 2, (n, 1), generator=gen).float(), corner, corner + extent], dim=1)
    boxes[:3, 3:] = boxes[:3, 1:3]  # zero width and height
    boxes[3] = torch.tensor([1.0, -40.0, -40.0, -30.0, -30.0])  # wholly outside
    expected = roi_align(features.contiguous(), boxes, 7, scale, sampling_ratio, aligned)
    got = roi_align_channels_last(features, boxes, 7, scale, sampling_ratio, aligned)
    assert got.shape == expected.shape == (n, 32, 7, 7)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    assert roi_align_channels_last(features, boxes[:0], 7, scale, sampling_ratio, aligned).shape == (0, 32, 7, 7)


def test_optimized_detector_runs_a_cpu_batch_one_image_per_pass(bikes_mp4: Path) -> None:
    # batched passes cost more CPU time per keyframe than single ones at detector sizes: the optimised model
    # splits a batch on CPU, with the results of separate calls
    from slowfast_det.detection.person import PersonDetector

    torch.set_num_threads(1)
    with av.open(str(bikes_mp4)) as container:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(2), container.decode(video=0), strict=False)]
    frames[1] = frames[1][:200, :500].copy()  # another size
    torch.manual_seed(0)
    opts = ["INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "400"]
    det = PersonDetector(weights=None, opts=opts, score_threshold=0.0, batch_size=2)
    passes = []
    det.inference_model().backbone.register_forward_hook(lambda m, i, o: passes.append(i[0].shape[0]))
    batched = det(frames)
    assert passes == [1, 1]
    singles = [det([f])[0] for f in frames]
    for got, expected in zip(batched, singles, strict=True):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
