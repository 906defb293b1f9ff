"""Draw person boxes, ids and top actions on a video, streaming (one frame in memory at a time).

Which results a frame shows: those of the keyframe nearest to the frame's time, if it is at most ``hold``
seconds away (``detect-video`` uses half the keyframe stride, so every frame shows the keyframe it is closest
to; on a tie the earlier keyframe). Frames farther from every keyframe are written without boxes.

The output is H.264 (``libx264``, yuv420p) in MP4 with the source frame times (variable frame rates stay
variable), at the source's displayed size (rotation applied) or scaled so its short side is ``short_side``;
sizes are rounded down to even numbers as yuv420p requires. It is written to a temporary file and renamed.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
from PIL import Image, ImageDraw, ImageFont

from ava_tools.atomic import atomic_output
from slowfast_det.video.probe import probe_video
from slowfast_det.video.sources import iter_frames

__all__ = ["RenderBox", "RenderKeyframe", "render_video", "render_size"]

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
]
_OUT_TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock: exact for 24, 25, 30, 50, 60 and 30000/1001 fps


@dataclass(frozen=True)
class RenderBox:
    """One person to draw: ``box`` (4,) normalised ``x1, y1, x2, y2``; ``labels`` lines under the id."""

    person_id: int
    box: tuple[float, float, float, float]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenderKeyframe:
    """The people of one keyframe at ``time`` seconds."""

    time: Fraction
    boxes: tuple[RenderBox, ...] = field(default_factory=tuple)


def render_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Output (width, height): the source size or short side -> ``short_side`` (aspect kept), even numbers."""
    if short_side is not None:
        if short_side < 2:
            raise ValueError(f"render short side must be >= 2 pixels, got {short_side}")
        scale = short_side / min(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def _draw(image: Image.Image, boxes: Sequence[RenderBox], font: ImageFont.ImageFont | ImageFont.FreeTypeFont
          ) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    line_height = max(10, h // 40)
    for person in boxes:
        colour = _PALETTE[person.person_id % len(_PALETTE)]
        x1, y1, x2, y2 = (person.box[0] * w, person.box[1] * h, person.box[2] * w, person.box[3] * h)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, h // 200))
        lines = [f"#{person.person_id}", *person.labels]
        y = max(0.0, y1 - line_height) if len(lines) == 1 else y1 + 1
        for text in lines:
            left, top, right, bottom = draw.textbbox((x1 + 2, y), text, font=font)
            draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
            draw.text((x1 + 2, y), text, fill=colour, font=font)
            y += line_height


def render_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keyframes: Sequence[RenderKeyframe],
    *,
    hold: Fraction | float,
    short_side: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
) -> int:
    """Write ``src`` with the boxes of ``keyframes`` drawn on it to ``dst`` (MP4); returns frames written.

    Args:
        src: the source video (decoded with the clock and rotation of :mod:`slowfast_det.video.stream`).
        dst: output ``.mp4``.
        keyframes: results sorted by time.
        hold: a frame shows the nearest keyframe's boxes if it is at most this many seconds away.
        short_side: output short side in pixels (None: the source size).
        crf, preset: x264 quality settings.
    """
    src, dst = Path(src), Path(dst)
    times = [k.time for k in keyframes]
    if times != sorted(times):
        raise ValueError("render keyframes must be sorted by time")
    hold = Fraction(hold) if not isinstance(hold, float) else Fraction(repr(hold))
    info = probe_video(src)
    out_w, out_h = render_size(info.width, info.height, short_side)
    font = ImageFont.load_default()
    count = 0
    last_pts = -1  # the first frame gets pts >= 0
    with atomic_output(dst, suffix=".tmp.mp4") as tmp, av.open(str(tmp), "w", format="mp4") as container:
        rate = Fraction(info.average_fps).limit_denominator(1001) if info.average_fps else Fraction(30)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        stream.codec_context.time_base = _OUT_TIME_BASE
        stream.time_base = _OUT_TIME_BASE
        stream.options = {"crf": str(crf), "preset": preset}
        for t, rgb in iter_frames(src, format="rgb24"):
            if rgb.shape[:2] != (out_h, out_w):
                rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
            image = Image.fromarray(rgb)
            k = _nearest(times, t)
            if k is not None and abs(times[k] - t) <= hold:
                _draw(image, keyframes[k].boxes, font)
            frame = av.VideoFrame.from_image(image)
            # source times on the 90 kHz clock; strictly increasing as the muxer requires
            pts = max(round(t / _OUT_TIME_BASE), last_pts + 1)
            frame.pts, frame.time_base, last_pts = pts, _OUT_TIME_BASE, pts
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return count


def _nearest(times: Sequence[Fraction], t: Fraction) -> int | None:
    """Index of the time nearest to ``t`` (the earlier one on a tie), None when ``times`` is empty."""
    if not times:
        return None
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i - 1 if t - times[i - 1] <= times[i] - t else i
