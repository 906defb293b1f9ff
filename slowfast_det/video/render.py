"""Draw person boxes, ids and top actions on a video, streaming (one frame in memory at a time).

Which results a frame shows: those of the keyframe nearest to the frame's time, if it is at most ``hold``
seconds away (``detect-video`` uses half the keyframe stride, so every frame shows the keyframe it is closest
to; on a tie the earlier keyframe). Frames farther from every keyframe are written without boxes.

The output is H.264 (``libx264``, yuv420p) in MP4 with the source frame times (variable frame rates stay
variable), at the source's displayed size (rotation applied) upscaled so its short side is at least
:data:`RENDER_MIN_SHORT_SIDE` (480) pixels, or scaled so its short side is ``short_side`` when given; sizes
are rounded down to even numbers as yuv420p requires. It is written to a temporary file and renamed.
The temporary file's name carries the writer's process id (``.<name>.<random>.<pid>.tmp.mp4``), so temporary
files of a render that was killed are recognised (their process is gone) and removed by the next render to the
same file.

What a person is drawn with: a box outline in a colour fixed by the person id (:func:`id_colour`), and a
label filled with that colour holding ``#id`` and the top actions with their scores. Labels never overlap
each other and never leave the frame: :func:`place_labels` puts each label above its box, else below, else
inside its top, else at the nearest free place; a label that finds no room is retried as ``#id`` alone.

Beside the MP4, :func:`render_video` writes a contact sheet PNG (:func:`contact_sheet_path`,
``<render>.contact.png``): up to :data:`CONTACT_SHEET_FRAMES` annotated keyframes spread over the video,
each with its time, so the result can be checked without a video player.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ava_tools.atomic import atomic_output, set_default_permissions
from slowfast_det.video.probe import probe_video
from slowfast_det.video.sources import iter_frames

__all__ = [
    "CONTACT_SHEET_FRAMES",
    "RENDER_MIN_SHORT_SIDE",
    "RenderBox",
    "RenderKeyframe",
    "StreamRenderer",
    "contact_sheet_path",
    "contact_sheet_size",
    "id_colour",
    "place_labels",
    "render_size",
    "render_video",
]

#: Renders of smaller sources are upscaled to this short side (pixels) unless a size is given.
RENDER_MIN_SHORT_SIDE = 480
#: At most this many keyframes on the contact sheet (3 x 3).
CONTACT_SHEET_FRAMES = 9
_SHEET_COLUMNS = 3
_TILE_LONG_SIDE = 640  # contact sheet tiles are at most this long (render frames are downscaled, never upscaled)
_SHEET_GAP = 6

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
]
logger = logging.getLogger(__name__)
_OUT_TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock: exact for 24, 25, 30, 50, 60 and 30000/1001 fps

Rect = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels (x2, y2 exclusive)


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


def render_size(width: int, height: int, short_side: int | None, *, min_short_side: int | None = None
                ) -> tuple[int, int]:
    """Output (width, height), aspect kept, even numbers.

    Args:
        width, height: source size in pixels.
        short_side: the output short side; None: the source size, or ``min_short_side`` when the source is
            smaller than that.
        min_short_side: upscale sources whose short side is smaller (only when ``short_side`` is None).
    """
    if short_side is None and min_short_side is not None and min(width, height) < min_short_side:
        short_side = min_short_side
    if short_side is not None:
        if short_side < 2:
            raise ValueError(f"render short side must be >= 2 pixels, got {short_side}")
        scale = short_side / min(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def id_colour(person_id: int) -> tuple[int, int, int]:
    """The RGB colour of a person id: fixed per id (a 12-colour palette, by id modulo 12)."""
    return _PALETTE[person_id % len(_PALETTE)]


# ----------------------------------------------------------------------------------------------------------
# Label layout
# ----------------------------------------------------------------------------------------------------------


def _overlaps(a: Rect, b: Rect) -> bool:
    """Positive-area intersection (rectangles that only touch do not overlap)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _free(x: float, y: float, w: float, h: float, frame_size: tuple[float, float], taken: Sequence[Rect]) -> bool:
    """Whether a ``w`` x ``h`` label at (x, y) lies in the frame and overlaps none of ``taken``."""
    if x < 0 or y < 0 or x + w > frame_size[0] or y + h > frame_size[1]:
        return False
    rect = (x, y, x + w, y + h)
    return not any(_overlaps(rect, t) for t in taken)


def place_labels(
    frame_size: tuple[float, float],
    boxes: Sequence[Rect],
    label_sizes: Sequence[tuple[float, float]],
    *,
    obstacles: Sequence[Rect] = (),
) -> list[Rect | None]:
    """Where each box's label goes: inside the frame, overlapping no other label, as close to its box as can be.

    Labels are placed one at a time, boxes nearest the top first (then leftmost, then input order), each at
    the first free place of:

    1. above its box (left edges aligned; moved sideways only as far as needed to stay in the frame);
    2. below its box;
    3. inside its box, at its top;
    4. the free place nearest (L1 distance of the top-left corner) to the "above" place pulled into the frame.

    "Free" means inside the frame and overlapping neither a label placed before nor an ``obstacle``
    (rectangles that only touch do not overlap). Step 4 searches the corners made by the frame edges and the
    edges of the labels already placed, which contain the nearest free place whenever one exists, so a label
    is None only when no place in the frame is free.

    Args:
        frame_size: (width, height) in pixels.
        boxes: N boxes (x1, y1, x2, y2) in pixels (x2, y2 exclusive); may extend past the frame.
        label_sizes: N label sizes (width, height) in pixels.
        obstacles: rectangles labels must not cover (e.g. labels already drawn).

    Returns:
        N label rectangles (x1, y1, x2, y2) in input order, None where no free place exists. With integer
        inputs the outputs are integers.
    """
    if len(boxes) != len(label_sizes):
        raise ValueError(f"{len(boxes)} boxes but {len(label_sizes)} label sizes")
    fw, fh = frame_size
    taken: list[Rect] = list(obstacles)
    out: list[Rect | None] = [None] * len(boxes)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0], i))
    for i in order:
        bx1, by1, bx2, by2 = boxes[i]
        w, h = label_sizes[i]
        if w > fw or h > fh:
            continue
        x0 = min(max(bx1, 0), fw - w)
        preferred = [(x0, by1 - h), (x0, by2), (x0, by1)]  # above, below, inside
        spot = next(((x, y) for x, y in preferred if _free(x, y, w, h, frame_size, taken)), None)
        if spot is None:
            ay = min(max(by1 - h, 0), fh - h)
            xs = {x0, 0, fw - w, *(t[2] for t in taken), *(t[0] - w for t in taken)}
            ys = {ay, 0, fh - h, *(t[3] for t in taken), *(t[1] - h for t in taken)}
            candidates = [(abs(x - x0) + abs(y - ay), abs(y - ay), y, x) for x in xs for y in ys]
            candidates.sort()
            spot = next(((x, y) for _, _, y, x in candidates if _free(x, y, w, h, frame_size, taken)), None)
        if spot is not None:
            rect = (spot[0], spot[1], spot[0] + w, spot[1] + h)
            taken.append(rect)
            out[i] = rect
    return out


# ----------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    """Sizes (pixels) for one output size."""

    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    line_height: int
    pad: int
    thickness: int

    @staticmethod
    def for_size(width: int, height: int) -> _Style:
        size = max(10, round(min(width, height) / 30))  # 16 px at 480
        try:
            font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=size)
        except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        bottom = font.getbbox("Ag#|")[3]
        return _Style(font, int(bottom) + max(1, size // 8), max(2, size // 6),
                      max(2, round(min(width, height) / 240)))

    def text_width(self, text: str) -> int:
        return int(math.ceil(self.font.getlength(text)))


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light fills, white on dark ones (ITU-R BT.601 luma)."""
    return (0, 0, 0) if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else (255, 255, 255)


def _fit(text: str, style: _Style, max_width: int) -> str:
    """``text``, cut with an ellipsis so that it is at most ``max_width`` pixels wide."""
    if style.text_width(text) <= max_width:
        return text
    while text and style.text_width(text + "…") > max_width:
        text = text[:-1]
    return text + "…"


def _label_lines(person: RenderBox, compact: bool) -> list[str]:
    head = f"#{person.person_id}"
    if compact or not person.labels:
        return [head]
    return [f"{head}  {person.labels[0]}", *person.labels[1:]]


def _draw(image: Image.Image, boxes: Sequence[RenderBox], style: _Style) -> None:
    """Draw the boxes, then their labels (placed by :func:`place_labels`), on ``image`` in place."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    pixel_boxes = [
        (round(p.box[0] * w), round(p.box[1] * h), round(p.box[2] * w), round(p.box[3] * h)) for p in boxes
    ]
    for person, (x1, y1, x2, y2) in zip(boxes, pixel_boxes, strict=True):
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=id_colour(person.person_id),
                       width=style.thickness)
    max_text = w - 2 * style.pad
    full = [[_fit(t, style, max_text) for t in _label_lines(p, compact=False)] for p in boxes]
    compact = [[_fit(t, style, max_text) for t in _label_lines(p, compact=True)] for p in boxes]

    def size(lines: list[str]) -> tuple[int, int]:
        return (max(style.text_width(t) for t in lines) + 2 * style.pad,
                len(lines) * style.line_height + 2 * style.pad)

    rects = place_labels((w, h), pixel_boxes, [size(lines) for lines in full])
    texts = list(full)
    missing = [i for i, r in enumerate(rects) if r is None]
    if missing:  # no room for the full label: try "#id" alone around the labels already placed
        placed = [r for r in rects if r is not None]
        retry = place_labels((w, h), [pixel_boxes[i] for i in missing], [size(compact[i]) for i in missing],
                             obstacles=placed)
        for i, r in zip(missing, retry, strict=True):
            rects[i], texts[i] = r, compact[i]
    for person, rect, lines in zip(boxes, rects, texts, strict=True):
        if rect is None:
            continue
        fill = id_colour(person.person_id)
        x1, y1, x2, y2 = (int(v) for v in rect)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=fill)
        for n, text in enumerate(lines):
            draw.text((x1 + style.pad, y1 + style.pad + n * style.line_height), text, fill=_text_colour(fill),
                      font=style.font)


# ----------------------------------------------------------------------------------------------------------
# Contact sheet
# ----------------------------------------------------------------------------------------------------------


def contact_sheet_path(render: str | os.PathLike[str]) -> Path:
    """The contact sheet written beside a render: ``out/video.mp4`` -> ``out/video.contact.png``."""
    return Path(render).with_suffix(".contact.png")


def _tile_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, _TILE_LONG_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _sheet_bands(style: _Style) -> tuple[int, int]:
    """Heights (pixels) of the title band and of each tile's caption band."""
    return style.line_height + 2 * _SHEET_GAP, style.line_height + _SHEET_GAP


def contact_sheet_size(tiles: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the contact sheet of ``tiles`` frames of a ``width`` x ``height`` render.

    Tiles are the render frames scaled so their long side is at most 640 pixels, in rows of three, each with
    a caption band (time, people) under it, below a title band; 6-pixel gaps.
    """
    tw, th = _tile_size(width, height)
    style = _Style.for_size(tw, th)
    title, caption = _sheet_bands(style)
    cols = max(1, min(_SHEET_COLUMNS, tiles))
    rows = max(1, math.ceil(tiles / cols))
    return cols * tw + (cols + 1) * _SHEET_GAP, title + rows * (th + caption) + rows * _SHEET_GAP


def _sheet_targets(times: Sequence[Fraction], count: int) -> list[int]:
    """Indices of at most ``count`` keyframes spread evenly over ``times`` (first and last included)."""
    if len(times) <= count:
        return list(range(len(times)))
    return sorted({round(float(v)) for v in np.linspace(0, len(times) - 1, count)})


def _write_contact_sheet(path: Path, tiles: Sequence[tuple[Fraction, int, Image.Image]], title: str) -> None:
    """Compose ``(time, people, annotated frame)`` tiles into a PNG at ``path`` (atomic)."""
    frame_w, frame_h = tiles[0][2].size
    tw, th = _tile_size(frame_w, frame_h)
    style = _Style.for_size(tw, th)
    title_h, caption_h = _sheet_bands(style)
    sheet = Image.new("RGB", contact_sheet_size(len(tiles), frame_w, frame_h), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    draw.text((_SHEET_GAP, _SHEET_GAP), _fit(title, style, sheet.width - 2 * _SHEET_GAP), fill=(255, 255, 255),
              font=style.font)
    cols = min(_SHEET_COLUMNS, len(tiles))
    for n, (t, people, image) in enumerate(tiles):
        row, col = divmod(n, cols)
        x = _SHEET_GAP + col * (tw + _SHEET_GAP)
        y = title_h + row * (th + caption_h + _SHEET_GAP)
        sheet.paste(image.resize((tw, th), Image.Resampling.LANCZOS) if image.size != (tw, th) else image, (x, y))
        caption = f"t = {float(t):.2f} s   {people} {'person' if people == 1 else 'people'}"
        draw.text((x, y + th + _SHEET_GAP // 2), caption, fill=(230, 230, 230), font=style.font)
    with atomic_output(path, suffix=".tmp.png") as tmp:
        sheet.save(tmp, format="PNG")


# ----------------------------------------------------------------------------------------------------------
# Video
# ----------------------------------------------------------------------------------------------------------


def render_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keyframes: Sequence[RenderKeyframe],
    *,
    hold: Fraction | float,
    short_side: int | None = None,
    min_short_side: int | None = RENDER_MIN_SHORT_SIDE,
    contact_sheet: bool = True,
    crf: int = 23,
    preset: str = "veryfast",
) -> int:
    """Write ``src`` with the boxes of ``keyframes`` drawn on it to ``dst`` (MP4); returns frames written.

    Args:
        src: the source video (decoded with the clock and rotation of :mod:`slowfast_det.video.stream`).
        dst: output ``.mp4``.
        keyframes: results sorted by time.
        hold: a frame shows the nearest keyframe's boxes if it is at most this many seconds away.
        short_side: output short side in pixels (None: the source size, upscaled to ``min_short_side``).
        min_short_side: smallest output short side when ``short_side`` is None (None: never upscale).
        contact_sheet: also write :func:`contact_sheet_path` (``dst`` with ``.contact.png``): the frames
            nearest to up to :data:`CONTACT_SHEET_FRAMES` keyframes spread over the video, as drawn in the MP4.
        crf, preset: x264 quality settings.
    """
    src, dst = Path(src), Path(dst)
    times = [k.time for k in keyframes]
    if times != sorted(times):
        raise ValueError("render keyframes must be sorted by time")
    hold = Fraction(hold) if not isinstance(hold, float) else Fraction(repr(hold))
    info = probe_video(src)
    out_w, out_h = render_size(info.width, info.height, short_side, min_short_side=min_short_side)
    style = _Style.for_size(out_w, out_h)
    # contact sheet: for each chosen keyframe, the drawn frame nearest to it so far (|dt|, frame time, image)
    targets = _sheet_targets(times, CONTACT_SHEET_FRAMES) if contact_sheet else []
    if contact_sheet and not targets:
        times_for_sheet, targets = [Fraction(0)], [0]  # no keyframes: show the first frame
    else:
        times_for_sheet = times
    best: dict[int, tuple[Fraction, Fraction, Image.Image]] = {}
    count = 0
    last_pts = -1  # the first frame gets pts >= 0
    _remove_stale_temporaries(dst)
    with atomic_output(dst, suffix=f".{os.getpid()}{_TMP_SUFFIX}") as tmp, \
            av.open(str(tmp), "w", format="mp4") as container:
        rate = Fraction(info.average_fps).limit_denominator(1001) if info.average_fps else Fraction(30)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        stream.codec_context.time_base = _OUT_TIME_BASE
        stream.time_base = _OUT_TIME_BASE
        stream.options = {"crf": str(crf), "preset": preset}
        for t, rgb in iter_frames(src, format="rgb24"):
            if rgb.shape[:2] != (out_h, out_w):
                upscale = out_h > rgb.shape[0]
                rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA)
            image = Image.fromarray(rgb)
            k = _nearest(times, t)
            if k is not None and abs(times[k] - t) <= hold:
                _draw(image, keyframes[k].boxes, style)
            for j in targets:
                gap = abs(times_for_sheet[j] - t)
                if j not in best or gap < best[j][0]:
                    best[j] = (gap, t, image)  # a new Image per frame: keeping a reference is enough
            frame = av.VideoFrame.from_image(image)
            # source times on the 90 kHz clock; strictly increasing as the muxer requires
            pts = max(round(t / _OUT_TIME_BASE), last_pts + 1)
            frame.pts, frame.time_base, last_pts = pts, _OUT_TIME_BASE, pts
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    if best:
        tiles = []
        for j in sorted(best):
            _, t, image = best[j]
            k = _nearest(times, t)
            people = len(keyframes[k].boxes) if k is not None and abs(times[k] - t) <= hold else 0
            tiles.append((t, people, image))
        title = f"{src.name}: {len(tiles)} of {len(keyframes)} keyframes, as drawn in {dst.name}"
        _write_contact_sheet(contact_sheet_path(dst), tiles, title)
    return count


_TMP_SUFFIX = ".tmp.mp4"


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(dst: Path) -> None:
    """Remove ``.<dst name>.<random>.<pid>.tmp.mp4`` files next to ``dst`` left by renders that were killed
    (their pid no longer runs); files of renders still running, ours included, are kept."""
    prefix = f".{dst.name}."
    try:
        candidates = [p for p in dst.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(_TMP_SUFFIX)]
    except OSError:
        return  # no folder yet: nothing stale
    for path in candidates:
        pid_text = path.name[: -len(_TMP_SUFFIX)].rpartition(".")[2]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _process_alive(int(pid_text)):
            continue
        try:
            path.unlink()
            logger.info("removed %s, left by a render that was interrupted", path)
        except OSError as exc:
            logger.warning("cannot remove the stale temporary render %s: %s", path, exc)


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


# ----------------------------------------------------------------------------------------------------------
# Live streams
# ----------------------------------------------------------------------------------------------------------


class StreamRenderer:
    """Renders a live stream as it is processed: the file counterpart of :func:`render_video` for sources that
    cannot be decoded a second time.

    Frames are handed in as they arrive (:meth:`add_frame`, any thread) and written once the keyframes around
    them are decided (:meth:`decide`: processed with results, or skipped), with the same drawing rule as
    :func:`render_video` (a frame shows the nearest decided keyframe within ``hold`` seconds). At most
    ``max_frames`` frames wait; when more arrive, the oldest are written with what is decided so far (so memory
    stays bounded when inference falls behind). The MP4 is fragmented (readable even if the run is killed) and
    written to a pid-named temporary file renamed at :meth:`close`. No contact sheet is made.

    Args:
        dst: output ``.mp4``.
        hold: seconds a keyframe's boxes stay on screen around it (half the stride).
        short_side, min_short_side: as :func:`render_video`.
        max_frames: frames waiting for their keyframes, at most.
    """

    def __init__(self, dst: str | os.PathLike[str], *, hold: Fraction, short_side: int | None = None,
                 min_short_side: int | None = RENDER_MIN_SHORT_SIDE, max_frames: int = 300, crf: int = 23,
                 preset: str = "veryfast") -> None:
        import threading
        from collections import deque

        self.dst = Path(dst)
        self.hold = hold
        self.short_side = short_side
        self.min_short_side = min_short_side
        self.max_frames = max_frames
        self.crf, self.preset = crf, preset
        self.frames_written = 0
        self.frames_forced = 0  # written before their keyframes were decided (the wait was full)
        self._pending: deque[tuple[Fraction, Any]] = deque()
        self._lock = threading.Lock()
        self._decided: list[tuple[Fraction, tuple[RenderBox, ...]]] = []  # recent keyframes, time order
        self._decided_until: Fraction | None = None
        self._container: Any = None
        self._stream: Any = None
        self._tmp: Path | None = None
        self._last_pts = -1
        self._style: _Style | None = None

    def add_frame(self, frame: Any) -> None:
        """Queue a :class:`~slowfast_det.video.sources.SourceFrame` (its pixels are converted when written)."""
        with self._lock:
            self._pending.append((frame.time, frame))

    def decide(self, time: Fraction, boxes: Sequence[RenderBox] | None) -> None:
        """Keyframe ``time`` is decided: its boxes (None: skipped, nothing drawn). Calls come in time order."""
        if boxes is not None:
            self._decided.append((time, tuple(boxes)))
        self._decided_until = time if self._decided_until is None else max(self._decided_until, time)
        self._write(final=False)

    def _write(self, *, final: bool) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                t, frame = self._pending[0]
                ready = final or (self._decided_until is not None and t <= self._decided_until)
                forced = not ready and len(self._pending) > self.max_frames
                if not (ready or forced):
                    return
                self._pending.popleft()
            self.frames_forced += forced
            self._encode(t, frame)

    def _encode(self, t: Fraction, frame: Any) -> None:
        rgb = frame.to_ndarray("rgb24")
        if self._container is None:
            self._start(rgb.shape[1], rgb.shape[0])
        out_w, out_h = self._stream.width, self._stream.height
        if rgb.shape[:2] != (out_h, out_w):
            upscale = out_h > rgb.shape[0]
            rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA)
        image = Image.fromarray(rgb)
        times = [k for k, _ in self._decided]
        k = _nearest(times, t)
        if k is not None and abs(times[k] - t) <= self.hold:
            assert self._style is not None
            _draw(image, self._decided[k][1], self._style)
        # keyframes that no later frame can be nearest to are forgotten (bounded memory)
        while len(self._decided) > 2 and self._decided[1][0] + self.hold < t:
            self._decided.pop(0)
        video_frame = av.VideoFrame.from_image(image)
        pts = max(round(t / _OUT_TIME_BASE), self._last_pts + 1)
        video_frame.pts, video_frame.time_base, self._last_pts = pts, _OUT_TIME_BASE, pts
        self._container.mux(self._stream.encode(video_frame))
        self.frames_written += 1

    def _start(self, width: int, height: int) -> None:
        import tempfile

        _remove_stale_temporaries(self.dst)
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.dst.name}.", suffix=f".{os.getpid()}{_TMP_SUFFIX}",
                                    dir=self.dst.parent)
        os.close(fd)
        self._tmp = Path(name)
        out_w, out_h = render_size(width, height, self.short_side, min_short_side=self.min_short_side)
        self._style = _Style.for_size(out_w, out_h)
        self._container = av.open(str(self._tmp), "w", format="mp4",
                                  options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
        stream = self._container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        stream.codec_context.time_base = _OUT_TIME_BASE
        stream.time_base = _OUT_TIME_BASE
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream

    def close(self) -> int:
        """Write the frames still waiting, finish the file and move it to ``dst``; returns frames written."""
        self._write(final=True)
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            assert self._tmp is not None
            set_default_permissions(self._tmp)
            os.replace(self._tmp, self.dst)
        return self.frames_written
