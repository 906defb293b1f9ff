"""detectron2 v0.6 (Python-only install) imports through slowfast_det.detection.compat and runs Faster R-CNN."""

from __future__ import annotations

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
