"""Per-person actions from videos: keyframes -> person boxes -> tracks -> SlowFast scores -> tables.

:class:`VideoActionDetector` runs one video (:meth:`~VideoActionDetector.run`):

1. :class:`slowfast_det.video.stream.ClipStream` decodes the video once, streaming, and yields each keyframe
   (every ``stride`` seconds from ``start``) with its clip sampled by time at the model's 30 fps (the rule is
   in that module), every clip frame resized once to the test short side by
   :func:`slowfast_det.data.transforms.resize_frames` (``cv2.INTER_LINEAR``, PySlowFast's test resize);
2. keyframes are grouped in batches of ``batch_size``; the detector
   (:class:`slowfast_det.detection.person.PersonDetector`) finds the people of a whole batch in one call;
3. the tracker (:class:`slowfast_det.pipeline.tracking.IoUTracker`) gives each box a person id, keyframe by keyframe;
4. the clips of the batch (with at least one person) go through SlowFast in one forward: pixels normalised
   by :func:`slowfast_det.data.transforms.normalize_to_clip`, boxes mapped exactly as PySlowFast's test
   loader maps its predicted-box CSV (normalised -> pixels of the frame, clipped, scaled by the resize
   factor, clipped), pathways split by :func:`slowfast_det.data.clips.pack_pathways`; scores are the head's
   logits through ``MODEL.HEAD_ACT`` (sigmoid for AVA).

Memory does not grow with the video's length: at most ``batch_size`` finished clips plus the clips still being
filled by the stream (see :mod:`slowfast_det.video.stream`) are held, each T frames at the test size plus one
full-size keyframe; results are a few numbers per person and keyframe.

:func:`run_videos` runs many videos into an output folder with per-video outputs written atomically,
skips finished ones, and returns a summary (done / skipped / failed with the reason).
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm import tqdm

from slowfast_det.boxes import BoxMode, clip, convert
from slowfast_det.data.clips import pack_pathways
from slowfast_det.data.transforms import (
    frames_to_float,
    normalize_to_clip,
    pixel_boxes,
    resize_frames,
    short_side_scale,
    short_side_scale_size,
)
from slowfast_det.detection.person import PersonDetector
from slowfast_det.pipeline import tables
from slowfast_det.pipeline.tracking import IoUTracker
from slowfast_det.video.probe import VideoDecodeError, probe_video
from slowfast_det.video.render import RenderBox, RenderKeyframe, render_video
from slowfast_det.video.stream import ClipStream, KeyframeClip, as_fraction

__all__ = [
    "VIDEO_EXTENSIONS",
    "KeyframeResult",
    "OutputOptions",
    "PersonResult",
    "RunSummary",
    "VideoActionDetector",
    "VideoResult",
    "expand_inputs",
    "output_paths",
    "run_videos",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")

#: Errors that fail one video (recorded in the summary) while the others go on.
VIDEO_ERRORS: tuple[type[BaseException], ...] = (VideoDecodeError, av.FFmpegError, OSError)


@dataclass
class PersonResult:
    """One person at one keyframe.

    Attributes:
        person_id: tracker id, stable across keyframes.
        box: (4,) float64 ``x1, y1, x2, y2`` normalised to [0, 1] of the displayed frame.
        detector_score: person detector score.
        scores: (C,) float32 action scores, index ``k`` for action id ``k + 1``.
    """

    person_id: int
    box: np.ndarray
    detector_score: float
    scores: np.ndarray


@dataclass
class KeyframeResult:
    """The people of one keyframe at ``time`` seconds on the video's clock."""

    time: Fraction
    persons: list[PersonResult] = field(default_factory=list)


@dataclass
class VideoResult:
    """Everything :meth:`VideoActionDetector.run` found in one video.

    Attributes:
        video_id: the file name without its extension.
        path: the video file.
        width, height: displayed frame size (pixels, rotation applied).
        keyframes: one entry per keyframe, in time order (persons may be empty).
        timings: seconds spent in ``decode`` (decoding, conversion, resize, clip bookkeeping), ``detect``,
            ``track``, ``slowfast`` (clip tensors + forward + activation); ``write``/``render`` are added by
            :func:`run_videos`.
        stats: ``frames_decoded``, ``packets_skipped``, ``max_frames_held``, ``truncated``.
    """

    video_id: str
    path: Path
    width: int
    height: int
    keyframes: list[KeyframeResult]
    timings: dict[str, float]
    stats: dict[str, Any]

    def table(self, *, class_names: dict[int, str], threshold: float, topk: int | None = None) -> Any:
        """The per-person action table (:func:`slowfast_det.pipeline.tables.person_actions_frame`)."""
        persons = [(k.time, p) for k in self.keyframes for p in k.persons]
        num_classes = persons[0][1].scores.shape[0] if persons else 1
        return tables.person_actions_frame(
            video_id=self.video_id,
            timestamps=np.asarray([round(float(t), 6) for t, _ in persons], dtype=np.float64),
            person_ids=np.asarray([p.person_id for _, p in persons], dtype=np.int64),
            boxes=np.asarray([p.box for _, p in persons], dtype=np.float64).reshape(-1, 4),
            detector_scores=np.asarray([p.detector_score for _, p in persons], dtype=np.float64),
            scores=np.asarray([p.scores for _, p in persons], dtype=np.float64).reshape(-1, num_classes),
            class_names=class_names,
            threshold=threshold,
            topk=topk,
        )


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1),
    "none": lambda x: x,
}


class VideoActionDetector:
    """Person detector + tracker + SlowFast over a video's keyframes.

    Args:
        model: SlowFast/Slow model with an RoI head: ``model(pathways, boxes (N, 5)) -> logits (N, C)``.
        detector: the person detector.
        num_frames: T, frames of the (fast) clip (DATA.NUM_FRAMES).
        sampling_rate: r, in frames at ``target_fps`` (DATA.SAMPLING_RATE).
        crop_size: test short side in pixels (DATA.TEST_CROP_SIZE).
        mean, std: per-channel normalisation (DATA.MEAN, DATA.STD).
        bgr: feed BGR instead of RGB (AVA.BGR).
        alpha: SlowFast's Fast/Slow frame ratio (SLOWFAST.ALPHA); None for a single-pathway model.
        head_act: ``sigmoid`` (AVA), ``softmax`` or ``none`` (raw logits).
        target_fps: frame rate the sampling rate refers to (30 as AVA).
        device: torch device of the model.
        batch_size: keyframes per detector call and per SlowFast forward.
        tracker_iou, tracker_max_age: :class:`slowfast_det.pipeline.tracking.IoUTracker` settings.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        detector: PersonDetector,
        num_frames: int,
        sampling_rate: int,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        bgr: bool = False,
        alpha: int | None = None,
        head_act: str = "sigmoid",
        target_fps: int = 30,
        device: str = "cpu",
        batch_size: int = 4,
        tracker_iou: float = 0.3,
        tracker_max_age: int = 3,
    ) -> None:
        if head_act not in _ACTIVATIONS:
            raise ValueError(f"head_act must be one of {sorted(_ACTIVATIONS)}, got {head_act!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.detector = detector
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.crop_size = crop_size
        self.mean = list(mean)
        self.std = list(std)
        self.bgr = bgr
        self.alpha = alpha
        self.activation = _ACTIVATIONS[head_act]
        self.target_fps = target_fps
        self.batch_size = batch_size
        self.tracker_iou = tracker_iou
        self.tracker_max_age = tracker_max_age

    # ----------------------------------------------------------------------------------------------------
    def resize_frame(self, bgr: np.ndarray) -> np.ndarray:
        """Test-time resize of one frame (short side -> crop_size), applied once per decoded frame."""
        new_h, new_w = short_side_scale_size(bgr.shape[0], bgr.shape[1], self.crop_size)
        return resize_frames([bgr], new_h, new_w)[0]

    def clip_inputs(self, clip_: KeyframeClip, boxes_norm: np.ndarray) -> tuple[list[torch.Tensor], np.ndarray]:
        """Model inputs of one keyframe: pathway tensors (3, T_p, H', W') and (N, 4) float64 pixel boxes.

        Equal to :func:`slowfast_det.data.transforms.preprocess_clip_test` on the full-size frames (the frames
        were resized one by one with the same function, and boxes follow PySlowFast's test mapping).
        """
        height, width = clip_.keyframe.shape[:2]
        boxes_px = pixel_boxes(boxes_norm, height=height, width=width)
        resized_key, boxes_px = short_side_scale([clip_.keyframe], boxes_px, self.crop_size)
        tensor = normalize_to_clip(frames_to_float(clip_.frames), mean=self.mean, std=self.std, bgr=self.bgr)
        boxes_px = clip(boxes_px, BoxMode.ABS_XYXY, width=tensor.shape[3], height=tensor.shape[2])
        if resized_key[0].shape[:2] != tensor.shape[2:]:
            raise RuntimeError(f"clip frames {tuple(tensor.shape)} and keyframe {resized_key[0].shape} differ")
        return pack_pathways(tensor, alpha=self.alpha), boxes_px

    def _score(self, clips: list[KeyframeClip], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """(N_i, C) float32 scores for the boxes of each clip, one SlowFast forward for all."""
        pathways: list[list[torch.Tensor]] = []
        rows = []
        for b, (c, norm) in enumerate(zip(clips, boxes, strict=True)):
            inputs, px = self.clip_inputs(c, norm)
            if not pathways:
                pathways = [[] for _ in inputs]
            for p, x in enumerate(inputs):
                pathways[p].append(x)
            rows.append(np.concatenate([np.full((len(px), 1), b, dtype=np.float64), px], axis=1))
        batch = [torch.stack(p).to(self.device) for p in pathways]
        box_tensor = torch.as_tensor(np.concatenate(rows), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            scores = self.activation(self.model(batch, box_tensor).float()).cpu().numpy()
        out, start = [], 0
        for norm in boxes:
            out.append(scores[start:start + len(norm)])
            start += len(norm)
        return out

    def _process_batch(self, batch: list[KeyframeClip], tracker: IoUTracker, timings: dict[str, float]
                       ) -> list[KeyframeResult]:
        tic = time.perf_counter()
        detections = self.detector([c.keyframe for c in batch])
        timings["detect"] += time.perf_counter() - tic
        tic = time.perf_counter()
        norm_boxes, ids = [], []
        for c, det in zip(batch, detections, strict=True):
            h, w = c.keyframe.shape[:2]
            norm = clip(convert(det.boxes.astype(np.float64), BoxMode.ABS_XYXY, BoxMode.NORM_XYXY, width=w, height=h),
                        BoxMode.NORM_XYXY)
            norm_boxes.append(norm)
            ids.append(tracker.update(norm))
        timings["track"] += time.perf_counter() - tic
        tic = time.perf_counter()
        with_people = [i for i, n in enumerate(norm_boxes) if len(n)]
        scores: dict[int, np.ndarray] = {}
        if with_people:
            per_clip = self._score([batch[i] for i in with_people], [norm_boxes[i] for i in with_people])
            scores = dict(zip(with_people, per_clip, strict=True))
        timings["slowfast"] += time.perf_counter() - tic
        results = []
        for i, c in enumerate(batch):
            persons = [
                PersonResult(int(ids[i][j]), norm_boxes[i][j], float(detections[i].scores[j]),
                             scores[i][j].astype(np.float32))
                for j in range(len(norm_boxes[i]))
            ]
            results.append(KeyframeResult(c.time, persons))
        return results

    def run(
        self,
        video_path: str | os.PathLike[str],
        *,
        stride: float | str | Fraction = 1,
        start: float | str | Fraction = 0,
        end: float | str | Fraction | None = None,
        allow_truncated: bool = False,
        progress: bool = False,
        progress_position: int = 0,
    ) -> VideoResult:
        """Detect, track and score every keyframe of one video.

        Args:
            video_path: anything PyAV decodes.
            stride: seconds between keyframes (exact decimal, e.g. "0.5").
            start, end: first and last keyframe time in seconds (end None: up to the last frame).
            allow_truncated: keep the decodable part of a truncated file instead of failing.
            progress: show a tqdm bar of keyframes (with ETA when the length is known).
            progress_position: tqdm line of the bar.
        Raises:
            VideoDecodeError: the file cannot be used (the message names it and says why).
        """
        path = Path(video_path)
        stream = ClipStream(
            path, num_frames=self.num_frames, sampling_rate=self.sampling_rate, stride=stride, start=start,
            end=end, target_fps=self.target_fps, frame_transform=self.resize_frame, allow_truncated=allow_truncated,
        )
        info = probe_video(path)
        total = _expected_keyframes(info.duration_s, stream.start, stream.stride, stream.end)
        timings = {"decode": 0.0, "detect": 0.0, "track": 0.0, "slowfast": 0.0}
        tracker = IoUTracker(iou_threshold=self.tracker_iou, max_age=self.tracker_max_age)
        results: list[KeyframeResult] = []
        with tqdm(total=total, desc=path.name, unit="kf", disable=not progress, position=progress_position,
                  leave=False, dynamic_ncols=True) as bar:
            for batch in _batched(iter(stream), self.batch_size):
                results.extend(self._process_batch(batch, tracker, timings))
                bar.update(len(batch))
        timings["decode"] = stream.decode_seconds
        return VideoResult(
            video_id=path.stem,
            path=path,
            width=info.width,
            height=info.height,
            keyframes=results,
            timings=timings,
            stats={
                "frames_decoded": stream.frames_decoded,
                "packets_skipped": stream.packets_skipped,
                "max_frames_held": stream.max_frames_held,
                "truncated": stream.truncated,
            },
        )


def _expected_keyframes(duration_s: float | None, start: Fraction, stride: Fraction, end: Fraction | None
                        ) -> int | None:
    """Keyframes a video should give (for the progress bar); None when its length is unknown."""
    candidates = [Fraction(repr(duration_s))] if duration_s is not None else []
    if end is not None:
        candidates.append(end)
    if not candidates:
        return None
    last = min(candidates)
    return int((last - start) / stride) + 1 if last >= start else 0


def _batched(items: Iterator[KeyframeClip], size: int) -> Iterator[list[KeyframeClip]]:
    batch: list[KeyframeClip] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------------------
# many videos -> output folder
# ---------------------------------------------------------------------------------------------------------


def expand_inputs(specs: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Video files named by ``specs``: files, folders (their video files, sorted) and glob patterns.

    Returns ``(videos, problems)``: the videos in order without duplicates, and ``(spec, reason)`` for specs
    that name nothing (a missing file, a pattern without matches, a folder without videos).
    """
    videos: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            videos.append(path)

    for spec in specs:
        text = os.fspath(spec)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                problems.append((text, f"folder has no video files ({', '.join(VIDEO_EXTENSIONS)})"))
            for p in found:
                add(p)
        elif path.is_file():
            add(path)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                problems.append((text, "no file matches this pattern"))
            for p in files:
                add(p)
        else:
            problems.append((text, "no such file or folder"))
    return videos, problems


@dataclass(frozen=True)
class OutputOptions:
    """What :func:`run_videos` writes per video.

    Attributes:
        output_dir: folder of the per-video outputs.
        format: ``csv`` (``<name>.actions.csv``, header, person ids) or ``ava`` (``<name>.ava.csv``, the
            8-column AVA detection format without header, rows with an action only).
        json: also write ``<name>.actions.json`` (keyframes -> persons -> actions).
        render: None, or where renders go: a ``.mp4`` path (one input video) or a folder (``<name>.mp4``).
        render_short_side: render size (None: source size).
        action_threshold: smallest action score written.
        topk: at most this many actions per person (None: all above the threshold).
        class_names: ``{action id: name}`` (the label map).
        overwrite: redo videos whose outputs exist.
    """

    output_dir: Path
    class_names: dict[int, str]
    format: str = "csv"
    json: bool = False
    render: Path | None = None
    render_short_side: int | None = None
    action_threshold: float = 0.5
    topk: int | None = None
    overwrite: bool = False


def output_paths(video: Path, options: OutputOptions, *, single: bool) -> dict[str, Path]:
    """The files one video produces (``table``, optionally ``json`` and ``render``)."""
    stem = video.stem
    paths = {"table": options.output_dir / (f"{stem}.actions.csv" if options.format == "csv" else f"{stem}.ava.csv")}
    if options.json:
        paths["json"] = options.output_dir / f"{stem}.actions.json"
    if options.render is not None:
        if single and options.render.suffix.lower() == ".mp4":
            paths["render"] = options.render
        else:
            paths["render"] = options.render / f"{stem}.mp4"
    return paths


@dataclass
class RunSummary:
    """Outcome of :func:`run_videos`: ``done`` / ``skipped`` videos and ``failed`` ``(input, reason)``."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    video_seconds: float = 0.0

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"done: {len(self.done)}, skipped (outputs exist): {len(self.skipped)}, failed: {len(self.failed)}"]
        out += [f"  skipped {p}" for p in self.skipped]
        out += [f"  FAILED {spec}: {reason}" for spec, reason in self.failed]
        return out


def _json_document(result: VideoResult, options: OutputOptions) -> dict[str, Any]:
    keyframes = []
    for k in result.keyframes:
        persons = []
        for p in k.persons:
            order = np.argsort(-p.scores, kind="stable")
            kept = [int(c) for c in order if p.scores[c] >= options.action_threshold]
            if options.topk is not None:
                kept = kept[: options.topk]
            persons.append({
                "person_id": p.person_id,
                "box": [float(v) for v in p.box],
                "detector_score": p.detector_score,
                "actions": [{"id": c + 1, "name": options.class_names.get(c + 1, ""), "score": float(p.scores[c])}
                            for c in kept],
            })
        keyframes.append({"timestamp": round(float(k.time), 6), "persons": persons})
    return {"video_id": result.video_id, "source": str(result.path), "width": result.width,
            "height": result.height, "keyframes": keyframes}


def _render_keyframes(result: VideoResult, options: OutputOptions, max_labels: int = 3) -> list[RenderKeyframe]:
    out = []
    for k in result.keyframes:
        boxes = []
        for p in k.persons:
            order = [int(c) for c in np.argsort(-p.scores, kind="stable") if p.scores[c] >= options.action_threshold]
            labels = tuple(f"{options.class_names.get(c + 1, c + 1)} {p.scores[c]:.2f}" for c in order[:max_labels])
            boxes.append(RenderBox(p.person_id, (float(p.box[0]), float(p.box[1]), float(p.box[2]), float(p.box[3])),
                                   labels))
        out.append(RenderKeyframe(k.time, tuple(boxes)))
    return out


def run_videos(
    detector: VideoActionDetector,
    inputs: Sequence[str | os.PathLike[str]],
    options: OutputOptions,
    *,
    stride: float | str | Fraction = 1,
    start: float | str | Fraction = 0,
    end: float | str | Fraction | None = None,
    allow_truncated: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Run ``detector`` on every video of ``inputs`` (files, folders, globs) into ``options.output_dir``.

    Each video's outputs are written atomically (temporary file + rename) once the video is finished, so an
    interrupted run leaves only complete files; a video whose outputs all exist is skipped unless
    ``options.overwrite``. A video that fails (unreadable, truncated, no video stream, ...) is recorded with
    its reason and the others go on; nothing written before is touched.
    """
    if options.format not in ("csv", "ava"):
        raise ValueError(f"output format must be 'csv' or 'ava', got {options.format!r}")
    videos, problems = expand_inputs(inputs)
    summary = RunSummary(failed=list(problems))
    summary.timings = {"decode": 0.0, "detect": 0.0, "track": 0.0, "slowfast": 0.0, "write": 0.0, "render": 0.0}
    single = len(videos) == 1
    if options.render is not None and not single and options.render.suffix.lower() == ".mp4":
        raise ValueError(f"--render {options.render}: with {len(videos)} videos, name a folder, not an .mp4 file")
    claimed: dict[Path, Path] = {}
    stride_s = as_fraction(stride)
    with tqdm(total=len(videos), desc="videos", unit="video", disable=not progress, position=0,
              dynamic_ncols=True) as overall:
        for video in videos:
            paths = output_paths(video, options, single=single)
            clash = claimed.get(paths["table"])
            if clash is not None:
                summary.failed.append((str(video), f"its outputs would overwrite those of {clash} (same file name)"))
                overall.update(1)
                continue
            claimed[paths["table"]] = video
            if not options.overwrite and all(p.is_file() for p in paths.values()):
                summary.skipped.append(video)
                overall.update(1)
                continue
            try:
                result = detector.run(video, stride=stride_s, start=start, end=end, allow_truncated=allow_truncated,
                                      progress=progress, progress_position=1)
                tic = time.perf_counter()
                table = result.table(class_names=options.class_names, threshold=options.action_threshold,
                                     topk=options.topk)
                if options.format == "csv":
                    tables.write_actions_csv(paths["table"], table)
                else:
                    tables.set_default_permissions(
                        tables.write_detections_csv(paths["table"], tables.actions_to_ava_frame(table)))
                if "json" in paths:
                    tables.write_json_atomic(_json_document(result, options), paths["json"])
                result.timings["write"] = time.perf_counter() - tic
                if "render" in paths:
                    tic = time.perf_counter()
                    render_video(video, paths["render"], _render_keyframes(result, options), hold=stride_s / 2,
                                 short_side=options.render_short_side)
                    result.timings["render"] = time.perf_counter() - tic
            except VIDEO_ERRORS as exc:
                reason = str(exc) if str(video) in str(exc) else f"{video}: {exc}"
                logger.error("%s", reason)
                summary.failed.append((str(video), reason))
            else:
                summary.done.append(video)
                for key, value in result.timings.items():
                    summary.timings[key] = summary.timings.get(key, 0.0) + value
                if result.keyframes:
                    summary.video_seconds += float(result.keyframes[-1].time - result.keyframes[0].time + stride_s)
            overall.update(1)
    return summary
