"""AVA-format detection rows: one row per box and class, box-major, ids ascending; no boxes gives no rows."""

from __future__ import annotations

import numpy as np
import pytest

from slowfast_det.pipeline.tables import AVA_DETECTION_COLUMNS, detections_frame


def test_rows_per_box_and_class() -> None:
    scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 1.0]])
    frame = detections_frame(video_ids=["a", "b"], timestamps=[902, 903], boxes=boxes, scores=scores,
                             class_ids=[3, 1])
    assert list(frame.columns) == AVA_DETECTION_COLUMNS
    assert frame["action_id"].tolist() == [1, 3, 1, 3]
    assert frame["score"].tolist() == pytest.approx([0.1, 0.3, 0.4, 0.6])
    assert frame["video_id"].tolist() == ["a", "a", "b", "b"] and frame["timestamp"].tolist() == [902, 902, 903, 903]
    assert frame[["x1", "y1", "x2", "y2"]].to_numpy()[2].tolist() == [0.5, 0.5, 0.9, 1.0]
    with pytest.raises(ValueError, match="class ids must lie in 1..3"):
        detections_frame(video_ids=["a"], timestamps=[902], boxes=boxes[:1], scores=scores[:1], class_ids=[4])


def test_no_boxes_gives_an_empty_frame() -> None:
    """A test set where no box passed the detection threshold has no score columns at all."""
    frame = detections_frame(video_ids=[], timestamps=[], boxes=np.zeros((0, 4)), scores=np.zeros((0, 0)),
                             class_ids=[1, 2])
    assert frame.empty and list(frame.columns) == AVA_DETECTION_COLUMNS
