"""AVA's timeline and frame-index rules, defined once.

* AVA videos are cut to seconds ``[AVA_START_SEC, AVA_END_SEC)`` = [900, 1801) of the original movie and
  extracted at ``AVA_FPS`` = 30 frames per second;
* frame file ``{vid}_{k:06d}.jpg`` (k from 1) is 0-based index ``k - 1`` of the video's frame list and shows
  time ``AVA_START_SEC + (k - 1) / AVA_FPS`` of the original video;
* keyframes are every second in ``AVA_KEYFRAME_RANGE`` = 902..1798 inclusive (PySlowFast's
  ``AVA_VALID_FRAMES = range(902, 1799)``); keyframe second ``s`` is frame-list index ``(s - 900) * 30``, as
  PySlowFast's ``ava_helper.py`` (MMAction2 is off by one here).

Only the standard library is used.
"""

from __future__ import annotations

__all__ = [
    "AVA_END_SEC",
    "AVA_FPS",
    "AVA_KEYFRAME_RANGE",
    "AVA_START_SEC",
    "frame_file_name",
    "keyframe_center_index",
]

AVA_FPS = 30
AVA_START_SEC = 900  # the cut start: the second shown by frame index 0
AVA_END_SEC = 1801  # the cut end (exclusive)
AVA_KEYFRAME_RANGE = (902, 1798)  # inclusive


def frame_file_name(video_id: str, frame_index: int) -> str:
    """File name of 0-based frame ``frame_index``: ``{video_id}_{frame_index + 1:06d}.jpg``."""
    return f"{video_id}_{frame_index + 1:06d}.jpg"


def keyframe_center_index(second: int, *, origin_sec: int = AVA_START_SEC, fps: int = AVA_FPS) -> int:
    """0-based frame-list index of the keyframe at ``second``: ``(second - origin_sec) * fps``."""
    return (int(second) - int(origin_sec)) * int(fps)
