"""Per-person actions from videos: keyframes -> person boxes -> tracks -> SlowFast scores -> tables.

:class:`VideoActionDetector` runs one video (:meth:`~VideoActionDetector.run`):

1. :class:`slowfast_det.video.stream.ClipStream` decodes the video once, streaming, and yields each keyframe
   (every ``stride`` seconds from ``start``) with its clip sampled by time at the model's 30 fps (the rule is
   in that module), every clip frame resized once to the test short side by
   :func:`slowfast_det.data.transforms.resize_frames` (``cv2.INTER_LINEAR``, PySlowFast's test resize);
2. keyframes are grouped in batches of ``batch_size``; the detector
   (:class:`slowfast_det.detection.person.PersonDetector`) finds the people of a whole batch in one call;
3. the tracker (:class:`slowfast_det.pipeline.tracking.PersonTracker`) gives each box a person id, keyframe by keyframe;
4. the clips of the batch (with at least one person) go through SlowFast in one forward: pixels normalised
   by :func:`slowfast_det.data.transforms.normalize_to_clip`, boxes mapped exactly as PySlowFast's test
   loader maps its predicted-box CSV (normalised -> pixels of the frame, clipped, scaled by the resize
   factor, clipped), pathways split by :func:`slowfast_det.data.clips.pack_pathways`; scores are the head's
   logits through ``MODEL.HEAD_ACT`` (sigmoid for AVA).

**Overlapped stages** (``pipeline="overlapped"``, the default): steps 1-4 run as threads joined by bounded
queues (:func:`slowfast_det.pipeline.stages.run_stages`): decode + clip assembly | detect | clip tensors |
SlowFast | track, so a video takes about as long as its slowest stage; results and errors are those of
``pipeline="sequential"``, which runs the same steps one after the other in the calling thread.

Memory does not grow with the video's length: the clips still being filled by the stream (see
:mod:`slowfast_det.video.stream`) plus finished clips, each T frames at the test size plus one full-size keyframe:
one batch of ``batch_size`` sequentially; overlapped, at most two batches per stage (one worked on, one waiting
in the queue after it; three of them as float tensors at most); results are a few numbers per person and
keyframe.

:func:`run_videos` runs many videos into an output folder with per-video outputs written atomically,
skips finished ones, and returns a summary (done / skipped / failed with the reason).

**Reruns.** Next to each video's outputs, ``<name>.meta.json`` records the settings that made them (model
config, weights sha256, detector, keyframe times, thresholds, format, label map, tool version: see
:func:`run_videos`). A rerun skips a video only when its outputs exist *and* were made with the same settings;
outputs made with other settings are kept and reported with the settings that differ (``--overwrite`` redoes
them). While a video is processed, ``<name>.lock`` in the output folder is held with ``flock``, so a second run
into the same folder moves on to other videos instead of doing the same work; the kernel releases the lock when
the process ends, however it ends.

**Non-finite scores.** NaN or infinite action scores (broken weights, overflowing activations) and non-finite
detector outputs (which detectron2 drops silently, so people would just be missing) fail the video with a
message naming the weights, the video and the keyframe time, unless ``allow_nonfinite``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm import tqdm

from ava_tools.atomic import check_output_folder, leftover_temporaries, set_default_permissions, write_json_atomic
from ava_tools.cli import UserError, version_string
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
from slowfast_det.pipeline.stages import run_stages
from slowfast_det.pipeline.tracking import PersonTracker
from slowfast_det.video.probe import VideoDecodeError, probe_video
from slowfast_det.video.render import RenderBox, RenderKeyframe, contact_sheet_path, render_video
from slowfast_det.video.stream import ClipStream, KeyframeClip, as_fraction

__all__ = [
    "CPU_POLICIES",
    "PIPELINES",
    "VIDEO_EXTENSIONS",
    "KeyframeResult",
    "NonFiniteScoresError",
    "OutputOptions",
    "PersonResult",
    "RunSummary",
    "VideoActionDetector",
    "VideoResult",
    "expand_inputs",
    "meta_path",
    "output_paths",
    "run_videos",
    "settings_differences",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")



class NonFiniteScoresError(UserError, RuntimeError):
    """The model or the detector produced NaN/inf scores; the message names the weights, video and keyframe."""


#: Errors that fail one video (recorded in the summary) while the others go on.
VIDEO_ERRORS: tuple[type[BaseException], ...] = (VideoDecodeError, NonFiniteScoresError, av.FFmpegError, OSError)


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
        timings: busy seconds of each stage: ``decode`` (decoding, conversion, resize, clip bookkeeping),
            ``detect`` (person detector), ``prepare`` (clip tensors), ``slowfast`` (forward + activation),
            ``track`` (tracker + results); ``write``/``render`` are added by :func:`run_videos`. With the
            overlapped pipeline the stages run at the same time, so their sum exceeds the wall time.
        stats: ``frames_decoded``, ``packets_skipped``, ``max_frames_held``, ``truncated``, ``pipeline``,
            ``wall_s`` (seconds from the first decode to the last result).
        warnings: things the user should know about the result (no keyframe in the time range, non-finite
            scores written with ``allow_nonfinite``).
    """

    video_id: str
    path: Path
    width: int
    height: int
    keyframes: list[KeyframeResult]
    timings: dict[str, float]
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

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


@dataclass
class _Prepared:
    """A batch's model inputs: the indices (in the batch) of the keyframes with people, and
    :meth:`VideoActionDetector._prepare`'s tensors for them (None when no keyframe has people)."""

    with_people: list[int]
    inputs: tuple[list[torch.Tensor], torch.Tensor] | None


#: ``VideoActionDetector(pipeline=...)`` values.
PIPELINES = ("overlapped", "sequential")
#: ``VideoActionDetector(cpu_policy=...)`` values.
CPU_POLICIES = ("split", "shared", "all")

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
        multiply_person_score: action scores times the person detector's score of the box
            (``AVA.MULTIPLY_PERSON_SCORE``: P(person doing the action) instead of P(action | person)).
        target_fps: frame rate the sampling rate refers to (30 as AVA).
        device: torch device of the model.
        batch_size: keyframes per detector call and per SlowFast forward.
        tracker_iou, tracker_max_age: :class:`slowfast_det.pipeline.tracking.PersonTracker` settings.
        allow_nonfinite: write NaN/inf scores (as a warning) instead of failing the video.
        weights_name, detector_weights_name: how error messages name the SlowFast and detector weights.
        pipeline: ``overlapped`` (decode, detection, preprocessing, SlowFast and tracking as threads joined by
            bounded queues, :meth:`_run_overlapped`) or ``sequential`` (one step after the other, in the
            calling thread; for debugging). Both give the same results.
        cpu_policy: how the overlapped pipeline's two model stages share a CPU's cores: ``split`` (each half of
            torch's threads), ``shared`` (they take turns, all threads) or ``all`` (each all threads); see
            :meth:`_run_overlapped`.
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
        multiply_person_score: bool = False,
        target_fps: int = 30,
        device: str = "cpu",
        batch_size: int = 4,
        tracker_iou: float = 0.3,
        tracker_max_age: int = 3,
        allow_nonfinite: bool = False,
        weights_name: str | None = None,
        detector_weights_name: str | None = None,
        pipeline: str = "overlapped",
        cpu_policy: str = "split",
    ) -> None:
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
        if cpu_policy not in CPU_POLICIES:
            raise ValueError(f"cpu_policy must be one of {CPU_POLICIES}, got {cpu_policy!r}")
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
        self.multiply_person_score = multiply_person_score
        self.target_fps = target_fps
        self.batch_size = batch_size
        self.tracker_iou = tracker_iou
        self.tracker_max_age = tracker_max_age
        self.allow_nonfinite = allow_nonfinite
        self.weights_name = weights_name or "the SlowFast weights"
        self.detector_weights_name = detector_weights_name or "the detector weights"
        self.pipeline = pipeline
        self.cpu_policy = cpu_policy
        self._detector_nonfinite = _watch_nonfinite_outputs(detector)

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

    def _prepare(self, clips: list[KeyframeClip], boxes: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forward's inputs for the clips: pathway batches (B, 3, T_p, H', W') and (N, 5) float32 boxes
        ``[batch_index, x1, y1, x2, y2]`` (CPU tensors; page-locked when the model is on a GPU, so that the copy
        in :meth:`_forward` overlaps other work)."""
        pathways: list[list[torch.Tensor]] = []
        rows = []
        for b, (c, norm) in enumerate(zip(clips, boxes, strict=True)):
            inputs, px = self.clip_inputs(c, norm)
            if not pathways:
                pathways = [[] for _ in inputs]
            for p, x in enumerate(inputs):
                pathways[p].append(x)
            rows.append(np.concatenate([np.full((len(px), 1), b, dtype=np.float64), px], axis=1))
        batch = [torch.stack(p) for p in pathways]
        box_tensor = torch.as_tensor(np.concatenate(rows), dtype=torch.float32)
        if self.device.type == "cuda":
            batch = [x.pin_memory() for x in batch]
            box_tensor = box_tensor.pin_memory()
        return batch, box_tensor

    def _forward(self, batch: list[torch.Tensor], box_tensor: torch.Tensor, boxes: list[np.ndarray]
                 ) -> list[np.ndarray]:
        """(N_i, C) float32 scores for the boxes of each clip from :meth:`_prepare`'s inputs, one forward."""
        # non_blocking: from page-locked memory the copies are queued on the stream like the forward itself
        batch = [x.to(self.device, non_blocking=True) for x in batch]
        box_tensor = box_tensor.to(self.device, non_blocking=True)
        with torch.inference_mode():
            scores = self.activation(self.model(batch, box_tensor).float()).cpu().numpy()
        out, start = [], 0
        for norm in boxes:
            out.append(scores[start:start + len(norm)])
            start += len(norm)
        return out

    # ---- the steps of one batch of keyframes, shared by the sequential and the overlapped pipelines ----
    def _detect(self, batch: list[KeyframeClip], path: Path, warnings: dict[str, list[str]]
                ) -> tuple[list[Any], list[np.ndarray]]:
        """The detector's people of each keyframe: raw detections and (N_i, 4) float64 normalised boxes."""
        self._detector_nonfinite.reset()
        detections = self.detector([c.keyframe for c in batch])
        if self._detector_nonfinite.bad:
            bad, total = self._detector_nonfinite.bad, self._detector_nonfinite.total
            where = (f"keyframe {_seconds(batch[0].time)} s" if len(batch) == 1 else
                     f"keyframes {_seconds(batch[0].time)}-{_seconds(batch[-1].time)} s")
            what = (f"{bad} of {total} detector outputs (RPN objectness, box scores and deltas) are non-finite "
                    f"(NaN/inf) at {where} with detector weights {self.detector_weights_name}")
            if not self.allow_nonfinite:
                raise NonFiniteScoresError(
                    f"{path}: {what}; detectron2 drops such boxes silently, so people would be missing "
                    "(pass --allow-nonfinite to write the outputs anyway)")
            warnings["detector"].append(what)
        norm_boxes = []
        for c, det in zip(batch, detections, strict=True):
            h, w = c.keyframe.shape[:2]
            norm_boxes.append(clip(convert(det.boxes.astype(np.float64), BoxMode.ABS_XYXY, BoxMode.NORM_XYXY,
                                           width=w, height=h), BoxMode.NORM_XYXY))
        return detections, norm_boxes

    def _track(self, batch: list[KeyframeClip], detections: list[Any], norm_boxes: list[np.ndarray],
               tracker: PersonTracker) -> list[np.ndarray]:
        """Person ids of each keyframe's boxes, keyframe by keyframe (the only place the tracker is called).
        The keyframe image gives the tracker each box's colours; the detector scores rank doubtful boxes last."""
        return [tracker.update(norm, scores=det.scores, image=c.keyframe)
                for c, det, norm in zip(batch, detections, norm_boxes, strict=True)]

    def _prepare_batch(self, batch: list[KeyframeClip], norm_boxes: list[np.ndarray]) -> _Prepared:
        """Model inputs of the keyframes with people (None when no keyframe of the batch has any)."""
        with_people = [i for i, n in enumerate(norm_boxes) if len(n)]
        if not with_people:
            return _Prepared(with_people, None)
        return _Prepared(with_people, self._prepare([batch[i] for i in with_people],
                                                    [norm_boxes[i] for i in with_people]))

    def _score_batch(self, batch: list[KeyframeClip], norm_boxes: list[np.ndarray], prepared: _Prepared,
                     path: Path, warnings: dict[str, list[str]]) -> dict[int, np.ndarray]:
        """``{keyframe index in batch: (N_i, C) scores}`` of the keyframes with people; non-finite checked."""
        if prepared.inputs is None:
            return {}
        per_clip = self._forward(*prepared.inputs, [norm_boxes[i] for i in prepared.with_people])
        scores = dict(zip(prepared.with_people, per_clip, strict=True))
        for i in prepared.with_people:
            bad = int(np.count_nonzero(~np.isfinite(scores[i])))
            if bad:
                n, c = scores[i].shape
                what = (f"{bad} of {n * c} action scores ({n} people x {c} classes) are non-finite (NaN/inf) at "
                        f"keyframe {_seconds(batch[i].time)} s with weights {self.weights_name}")
                if not self.allow_nonfinite:
                    raise NonFiniteScoresError(
                        f"{path}: {what}: the weights or the model's activations are broken "
                        "(pass --allow-nonfinite to write the outputs anyway)")
                warnings["slowfast"].append(what)
        return scores

    def _results(self, batch: list[KeyframeClip], detections: list[Any], norm_boxes: list[np.ndarray],
                 ids: list[np.ndarray], scores: dict[int, np.ndarray]) -> list[KeyframeResult]:
        results = []
        for i, c in enumerate(batch):
            person = [float(detections[i].scores[j]) for j in range(len(norm_boxes[i]))]
            if not person:  # keyframes without people have no scores
                results.append(KeyframeResult(c.time, []))
                continue
            weight = np.asarray(person, dtype=scores[i].dtype)[:, None]
            actions = scores[i] * weight if self.multiply_person_score else scores[i]
            persons = [
                PersonResult(int(ids[i][j]), norm_boxes[i][j], person[j], actions[j].astype(np.float32))
                for j in range(len(norm_boxes[i]))
            ]
            results.append(KeyframeResult(c.time, persons))
        return results

    def _process_batch(self, batch: list[KeyframeClip], tracker: PersonTracker, timings: dict[str, float],
                       path: Path, warnings: dict[str, list[str]]) -> list[KeyframeResult]:
        """Detect, track and score one batch in the calling thread (the sequential pipeline, and live runs)."""
        tic = time.perf_counter()
        detections, norm_boxes = self._detect(batch, path, warnings)
        timings["detect"] += time.perf_counter() - tic
        tic = time.perf_counter()
        ids = self._track(batch, detections, norm_boxes, tracker)
        timings["track"] += time.perf_counter() - tic
        tic = time.perf_counter()
        prepared = self._prepare_batch(batch, norm_boxes)
        timings["prepare"] = timings.get("prepare", 0.0) + time.perf_counter() - tic
        tic = time.perf_counter()
        scores = self._score_batch(batch, norm_boxes, prepared, path, warnings)
        timings["slowfast"] += time.perf_counter() - tic
        return self._results(batch, detections, norm_boxes, ids, scores)

    def _run_overlapped(self, batches: Iterator[list[KeyframeClip]], tracker: PersonTracker,
                        timings: dict[str, float], path: Path, warnings: dict[str, list[str]]
                        ) -> Generator[list[KeyframeResult], None, None]:
        """:meth:`_process_batch` on every batch, as overlapped stages (:func:`run_stages`): decode + clip
        assembly (the ``batches`` iterator) | detect | prepare | slowfast | track (the caller's thread).

        On a CPU, ``cpu_policy`` shares the cores between the two model stages: ``split`` (the default) gives
        each half of torch's threads (at least one) for the run, as both run at the same time; ``shared`` lets
        them take turns with all threads; ``all`` gives each all threads (oversubscribed; for comparison). See
        the README for the measurements behind the default. On a GPU, both stages queue their CUDA work while
        decoding and preprocessing (page-locked inputs, non-blocking copies) go on in the other threads.
        """

        cpu = self.device.type == "cpu"
        # "shared": the two model stages take turns, each with all threads (a lock around their forwards)
        turns = threading.Lock() if cpu and self.cpu_policy == "shared" else contextlib.nullcontext()

        def detect(batch: list[KeyframeClip]) -> tuple[Any, ...]:
            with turns:
                return (batch, *self._detect(batch, path, warnings))

        def prepare(item: tuple[Any, ...]) -> tuple[Any, ...]:
            batch, _, norm_boxes = item
            return (*item, self._prepare_batch(batch, norm_boxes))

        def score(item: tuple[Any, ...]) -> tuple[Any, ...]:
            batch, detections, norm_boxes, prepared = item
            with turns:
                return batch, detections, norm_boxes, self._score_batch(batch, norm_boxes, prepared, path, warnings)

        busy: dict[str, float] = {}
        threads = torch.get_num_threads()
        if cpu and self.cpu_policy == "split":
            # torch's thread count is one setting for the whole process (OpenMP): both stages get the half
            torch.set_num_threads(max(1, threads // 2))
        try:
            stages: list[tuple[str, Callable[[Any], Any]]] = [("detect", detect), ("prepare", prepare),
                                                              ("slowfast", score)]
            for batch, detections, norm_boxes, scores in run_stages(batches, stages, source_name="decode",
                                                                    capacity=1, busy=busy):
                tic = time.perf_counter()
                ids = self._track(batch, detections, norm_boxes, tracker)
                results = self._results(batch, detections, norm_boxes, ids, scores)
                timings["track"] += time.perf_counter() - tic
                yield results
        finally:
            torch.set_num_threads(threads)
            for key in ("detect", "prepare", "slowfast"):
                timings[key] = timings.get(key, 0.0) + busy.get(key, 0.0)

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
        timings = {"decode": 0.0, "detect": 0.0, "prepare": 0.0, "slowfast": 0.0, "track": 0.0}
        tracker = PersonTracker(iou_threshold=self.tracker_iou, max_age=self.tracker_max_age)
        results: list[KeyframeResult] = []
        nonfinite: dict[str, list[str]] = {"detector": [], "slowfast": []}
        tic = time.perf_counter()
        with tqdm(total=total, desc=path.name, unit="kf", disable=not progress, position=progress_position,
                  leave=False, dynamic_ncols=True) as bar:
            batches = _batched(iter(stream), self.batch_size)
            if self.pipeline == "sequential":
                done = (self._process_batch(batch, tracker, timings, path, nonfinite) for batch in batches)
            else:
                done = self._run_overlapped(batches, tracker, timings, path, nonfinite)
            try:
                for batch_results in done:
                    results.extend(batch_results)
                    bar.update(len(batch_results))
            finally:
                done.close()  # stops and joins the stage threads now, also when this loop is interrupted
        wall = time.perf_counter() - tic
        timings["decode"] = stream.decode_seconds
        warnings = []
        for kind, found in nonfinite.items():
            if found:
                warnings.append(f"{len(found)} {'batches' if kind == 'detector' else 'keyframes'} with non-finite "
                                f"{kind} outputs written anyway (--allow-nonfinite); first: {found[0]}")
        if not results:
            last = stream.last_frame_time
            length = info.duration_s if info.duration_s is not None else (float(last) if last is not None else None)
            end_text = "the end" if stream.end is None else f"{_seconds(stream.end)} s"
            warnings.append(
                f"no keyframe lies in [{_seconds(stream.start)} s, {end_text}] of a video of duration "
                + (f"{length:.3f} s" if length is not None else "unknown")
                + (f" (last frame at {float(last):.3f} s)" if last is not None else "")
                + ": the outputs hold no rows; check --start/--end"
            )
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
                "pipeline": self.pipeline,
                "wall_s": wall,
            },
            warnings=warnings,
        )


def _seconds(t: Fraction) -> str:
    """A time for messages: ``2``, ``0.5``, ``0.333333``."""
    return f"{float(t):.6g}"


class _NonFiniteCounter:
    """Counts non-finite values in the floating-point outputs of the modules it is hooked to."""

    def __init__(self) -> None:
        self.bad = 0
        self.total = 0

    def reset(self) -> None:
        self.bad = self.total = 0

    def __call__(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        stack = [output]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                if item.is_floating_point() and item.numel():
                    self.bad += int((~torch.isfinite(item)).sum())
                    self.total += item.numel()
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.values())


def _watch_nonfinite_outputs(detector: PersonDetector) -> _NonFiniteCounter:
    """Hook a counter to the raw outputs of the detector's RPN head and box predictor.

    detectron2's inference drops proposals and boxes with non-finite scores without a word
    (``find_top_rpn_proposals``, ``fast_rcnn_inference``), so broken detector weights would only show as
    "nobody in the video"; the raw outputs are where such values arise.
    """
    counter = _NonFiniteCounter()
    # the model that runs: with optimize (the default) an optimised copy, so hooks on ``detector.model`` never fire
    model = detector.inference_model() if hasattr(detector, "inference_model") else getattr(detector, "model", None)
    watched = [getattr(getattr(model, "proposal_generator", None), "rpn_head", None),
               getattr(getattr(model, "roi_heads", None), "box_predictor", None)]
    for module in watched:
        if isinstance(module, torch.nn.Module):
            module.register_forward_hook(counter)
    return counter


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


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a video input (empty, unreadable), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        return "not readable (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return "empty file (0 bytes)" if size == 0 else None


def expand_inputs(specs: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Video files named by ``specs``: files, folders (their video files, sorted) and glob patterns.

    Returns ``(videos, problems)``: the videos in order without duplicates, and ``(spec, reason)`` for specs
    that name nothing (a missing file, a pattern without matches, a folder without videos) and for files that
    cannot be inputs (empty, unreadable). Nothing is decoded: this is the cheap check made before any model
    loads.
    """
    videos: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        problem = _file_problem(path)
        if problem is None:
            videos.append(path)
        else:
            problems.append((str(path), problem))

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
        render: None, or where renders go: a ``.mp4`` path (one input video) or a folder (``<name>.mp4``);
            each render gets a contact sheet beside it (``<name>.contact.png``).
        render_short_side: render short side in pixels (None: the source size, sources with a short side
            under :data:`slowfast_det.video.render.RENDER_MIN_SHORT_SIDE` upscaled to it).
        action_threshold: smallest action score written.
        topk: at most this many actions per person (None: all above the threshold).
        class_names: ``{action id: name}`` (the label map).
        overwrite: redo videos whose outputs exist.
        settings: JSON-able description of what else decides the outputs (model config, weights sha256,
            detector, tracker); recorded in ``<name>.meta.json`` with the settings :func:`run_videos` knows
            itself, and compared on reruns.
        info: JSON-able notes recorded in ``<name>.meta.json`` but not compared (e.g. weights paths).
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
    settings: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def output_paths(video: Path, options: OutputOptions, *, single: bool) -> dict[str, Path]:
    """The files one video produces (``table``, optionally ``json``, ``render`` and its ``contact_sheet``)."""
    stem = video.stem
    paths = {"table": options.output_dir / (f"{stem}.actions.csv" if options.format == "csv" else f"{stem}.ava.csv")}
    if options.json:
        paths["json"] = options.output_dir / f"{stem}.actions.json"
    if options.render is not None:
        if single and options.render.suffix.lower() == ".mp4":
            paths["render"] = options.render
        else:
            paths["render"] = options.render / f"{stem}.mp4"
        paths["contact_sheet"] = contact_sheet_path(paths["render"])
    return paths


def meta_path(video: Path, options: OutputOptions) -> Path:
    """``<output_dir>/<name>.meta.json``: the settings that made a video's outputs."""
    return options.output_dir / f"{video.stem}.meta.json"


def _lock_path(video: Path, options: OutputOptions) -> Path:
    return options.output_dir / f"{video.stem}.lock"


@dataclass
class RunSummary:
    """Outcome of :func:`run_videos`.

    Attributes:
        done, skipped: videos processed, and videos whose outputs exist with the same settings.
        failed: ``(input, reason)``, including outputs made with other settings (left as they were).
        locked: videos another run was processing (its lock was held).
        warnings: ``(video, message)`` about finished videos.
        timings: busy seconds per stage, summed over the finished videos (see :class:`VideoResult`), plus
            ``write`` and ``render``.
        video_seconds: video time covered by the keyframes of the finished videos.
        keyframes: keyframes processed (finished videos).
        wall_seconds: seconds from the first decode to the outputs written, summed over the finished videos
            (model loading and skipped videos not included): ``keyframes / wall_seconds`` is the throughput.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    locked: list[Path] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    video_seconds: float = 0.0
    keyframes: int = 0
    wall_seconds: float = 0.0

    def keyframes_per_second(self) -> float | None:
        """Keyframes processed per second of :attr:`wall_seconds` (None before any)."""
        return self.keyframes / self.wall_seconds if self.wall_seconds > 0 else None

    def stage_lines(self) -> list[str]:
        """Throughput and per-stage busy seconds (empty when no video was processed).

        Stages that overlap in time (the overlapped pipeline) have busy seconds summing to more than the wall
        time; the slowest stage bounds the wall time from below.
        """
        if not self.done:
            return []
        rate = self.keyframes_per_second()
        busy = {k: v for k, v in self.timings.items() if k != "render"}
        slowest = max(busy, key=lambda k: busy[k]) if busy else ""
        out = [f"{self.keyframes} keyframes in {self.wall_seconds:.1f} s: "
               + (f"{rate:.2f} keyframes/s" if rate is not None else "-")
               + f"; {self.video_seconds:.1f} s of video ({self.video_seconds / max(self.wall_seconds, 1e-9):.2f}x)"]
        if busy:
            out.append("stage busy seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items())
                       + f"; sum {sum(busy.values()):.1f}, slowest {slowest} {busy[slowest]:.1f}")
        return out

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        head = f"done: {len(self.done)}, skipped (outputs exist): {len(self.skipped)}, failed: {len(self.failed)}"
        if self.locked:
            head += f", locked by another run: {len(self.locked)}"
        out = [head]
        out += [f"  skipped {p}" for p in self.skipped]
        out += [f"  locked {p}: locked by another run (it is processing this video now)" for p in self.locked]
        out += [f"  WARNING {video}: {message}" for video, message in self.warnings]
        out += [f"  FAILED {spec}: {reason}" for spec, reason in self.failed]
        return out


# ---------------------------------------------------------------------------------------------------------
# settings records (<name>.meta.json) and per-video locks
# ---------------------------------------------------------------------------------------------------------

_META_FORMAT = 1


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "..."  # a sha256
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


_ABSENT = object()


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every setting (dotted key) whose value differs, in ``new``'s order."""
    a = _flatten(json.loads(json.dumps(old)))
    b = _flatten(json.loads(json.dumps(new)))
    keys = list(b) + [k for k in a if k not in b]
    return [f"{k}: {_show(a.get(k, _ABSENT))} -> {_show(b.get(k, _ABSENT))}"
            for k in keys if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _read_meta(path: Path) -> dict[str, Any] | None:
    """The ``settings`` of a meta file, None when it is missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    settings = doc.get("settings") if isinstance(doc, dict) else None
    return settings if isinstance(settings, dict) else None


def _run_settings(video: Path, options: OutputOptions, *, stride: Fraction, start: Fraction,
                  end: Fraction | None) -> dict[str, Any]:
    """Everything that decides one video's outputs (compared on reruns)."""
    names = json.dumps(sorted(options.class_names.items()))
    return {
        "tool": version_string(),
        **options.settings,
        "keyframes": {"stride": str(stride), "start": str(start), "end": None if end is None else str(end)},
        "output": {
            "format": options.format,
            "action_threshold": options.action_threshold,
            "topk": options.topk,
            "label_map": f"{len(options.class_names)} names, sha256 {hashlib.sha256(names.encode()).hexdigest()[:16]}",
        },
        "video": {"name": video.name, "bytes": video.stat().st_size},
    }


def _plan(paths: dict[str, Path], meta: Path, settings: dict[str, Any], overwrite: bool) -> tuple[str, str]:
    """``("run" | "skip" | "refuse", reason)`` for one video whose outputs are ``paths``."""
    existing = [p for p in paths.values() if p.is_file()]
    if overwrite or not existing:
        return "run", ""
    recorded = _read_meta(meta)
    names = ", ".join(p.name for p in existing)
    if recorded is None:
        return "refuse", (f"outputs exist ({names}) but no readable settings record {meta.name} (made by an older "
                          "version or an interrupted run); pass --overwrite to redo them")
    differences = settings_differences(recorded, settings)
    if differences:
        shown = differences[:8] + ([f"... and {len(differences) - 8} more"] if len(differences) > 8 else [])
        return "refuse", (f"outputs exist ({names}) but were made with other settings: " + "; ".join(shown)
                          + ". Pass --overwrite to redo them with the new settings (or use another --output-dir)")
    if len(existing) == len(paths):
        return "skip", ""
    return "run", ""  # same settings, some requested output (e.g. --json, --render) is missing


def _remove_interrupted_writes(outputs: Sequence[Path]) -> None:
    """Remove the :func:`ava_tools.atomic.atomic_output` temporaries of this video's outputs. Called while holding
    the video's lock: only the holder writes them, so any found belong to a run killed mid-write."""
    for out in outputs:
        for f in leftover_temporaries(out):
            try:
                f.unlink()
                logger.info("removed %s, left by a run that was interrupted while writing", f)
            except OSError as exc:
                logger.warning("cannot remove the stale temporary file %s: %s", f, exc)


class _VideoLock:
    """An exclusive, non-blocking ``flock`` on ``<name>.lock``; the file is removed on release.

    ``flock`` locks are released by the kernel when the process ends (even killed), so a crash never leaves a
    video locked; a lock file left behind by a killed run is simply locked again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            # the previous holder removes the file on release: if it did so after we opened it, we hold a lock
            # on a file nobody else sees, so lock the one that is there now
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # while still holding the lock (see acquire)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


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
                # inf passes a threshold; JSON has no inf, so it is written as null (only with allow_nonfinite)
                "actions": [{"id": c + 1, "name": options.class_names.get(c + 1, ""),
                             "score": float(p.scores[c]) if np.isfinite(p.scores[c]) else None}
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



#: A detector, or a function that builds one (called only when some video needs work, so a rerun that has
#: nothing to do loads no model).
DetectorOrFactory = VideoActionDetector | Callable[[], VideoActionDetector]


def run_videos(
    detector: DetectorOrFactory,
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
    interrupted run leaves only complete files; then ``<name>.meta.json`` records the settings that made them:
    ``options.settings`` plus the keyframe times, output format, action threshold, top-k, label map, the
    input's name and size, and the tool version. A video whose outputs all exist with the same recorded
    settings is skipped unless ``options.overwrite``; outputs made with other settings (or without a record)
    are left untouched and the video is reported as failed, naming the settings that differ. A video that
    fails (unreadable, truncated, no video stream, non-finite scores, ...) is recorded with its reason and the
    others go on. While a video is processed its ``<name>.lock`` is held; a video locked by another run is
    left to that run.

    Args:
        detector: the :class:`VideoActionDetector`, or a function building it (called at most once, and only
            if some video needs work).
    Raises:
        UserError: the output or render folder cannot be written, or a ``.mp4`` render path with many videos
            (checked before any video is processed); errors of the detector factory.
    """
    if options.format not in ("csv", "ava"):
        raise ValueError(f"output format must be 'csv' or 'ava', got {options.format!r}")
    videos, problems = expand_inputs(inputs)
    summary = RunSummary(failed=list(problems))
    summary.timings = {"decode": 0.0, "detect": 0.0, "prepare": 0.0, "slowfast": 0.0, "track": 0.0, "write": 0.0,
                       "render": 0.0}
    single = len(videos) == 1
    if options.render is not None and not single and options.render.suffix.lower() == ".mp4":
        raise UserError(f"--render {options.render}: with {len(videos)} videos, name a folder, not an .mp4 file")
    if not videos:
        return summary
    check_output_folder(options.output_dir, what="output folder")
    if options.render is not None:
        check_output_folder(options.render.parent if single and options.render.suffix.lower() == ".mp4"
                            else options.render, what="render folder")
    built: list[VideoActionDetector] = [detector] if isinstance(detector, VideoActionDetector) else []

    def get_runner() -> VideoActionDetector:
        if not built:
            assert not isinstance(detector, VideoActionDetector)
            built.append(detector())
        return built[0]

    created = not options.output_dir.exists()
    options.output_dir.mkdir(parents=True, exist_ok=True)  # for the lock files
    claimed: dict[Path, Path] = {}
    try:
        with tqdm(total=len(videos), desc="videos", unit="video", disable=not progress, position=0,
                  dynamic_ncols=True) as overall:
            for video in videos:
                paths = output_paths(video, options, single=single)
                clash = claimed.get(paths["table"])
                if clash is not None:
                    reason = f"its outputs would overwrite those of {clash} (same file name)"
                    summary.failed.append((str(video), reason))
                else:
                    claimed[paths["table"]] = video
                    _run_one(get_runner, video, paths, options, summary, stride=stride, start=start, end=end,
                             allow_truncated=allow_truncated, progress=progress)
                overall.update(1)
    finally:
        if created:
            try:
                options.output_dir.rmdir()  # succeeds only when nothing was written: no empty folder is left
            except OSError:
                pass
    return summary


def _run_one(
    get_runner: Callable[[], VideoActionDetector],
    video: Path,
    paths: dict[str, Path],
    options: OutputOptions,
    summary: RunSummary,
    *,
    stride: float | str | Fraction,
    start: float | str | Fraction,
    end: float | str | Fraction | None,
    allow_truncated: bool,
    progress: bool,
) -> None:
    """One video of :func:`run_videos`: lock, compare settings, run, write; the outcome goes to ``summary``."""
    stride_s, start_s = as_fraction(stride), as_fraction(start)
    end_s = None if end is None else as_fraction(end)
    lock = _VideoLock(_lock_path(video, options))
    if not lock.acquire():
        summary.locked.append(video)
        return
    try:
        meta = meta_path(video, options)
        _remove_interrupted_writes([*paths.values(), meta])
        settings = _run_settings(video, options, stride=stride_s, start=start_s, end=end_s)
        action, reason = _plan(paths, meta, settings, options.overwrite)
        if action == "skip":
            summary.skipped.append(video)
            return
        if action == "refuse":
            summary.failed.append((str(video), reason))
            return
        runner = get_runner()
        try:
            meta.unlink(missing_ok=True)  # outputs being redone are described by no record until they are complete
            started = time.perf_counter()
            result = runner.run(video, stride=stride_s, start=start_s, end=end_s, allow_truncated=allow_truncated,
                                progress=progress, progress_position=1)
            _write_outputs(result, video, paths, meta, settings, options, stride=stride_s)
        except VIDEO_ERRORS as exc:
            text = str(exc)
            reason = text if str(video) in text else f"{video}: {text}"
            logger.error("%s", reason)
            summary.failed.append((str(video), reason))
            return
    finally:
        lock.release()
    summary.done.append(video)
    for message in result.warnings:
        logger.warning("%s: %s", video, message)
        summary.warnings.append((str(video), message))
    for key, value in result.timings.items():
        summary.timings[key] = summary.timings.get(key, 0.0) + value
    summary.keyframes += len(result.keyframes)
    summary.wall_seconds += time.perf_counter() - started
    if result.keyframes:
        summary.video_seconds += float(result.keyframes[-1].time - result.keyframes[0].time + stride_s)


def _write_outputs(result: VideoResult, video: Path, paths: dict[str, Path], meta: Path, settings: dict[str, Any],
                   options: OutputOptions, *, stride: Fraction) -> None:
    """Write the table, JSON and render of one video, then its settings record (all atomically)."""
    tic = time.perf_counter()
    table = result.table(class_names=options.class_names, threshold=options.action_threshold, topk=options.topk)
    if options.format == "csv":
        tables.write_actions_csv(paths["table"], table)
    else:
        set_default_permissions(tables.write_detections_csv(paths["table"], tables.actions_to_ava_frame(table)))
    if "json" in paths:
        write_json_atomic(_json_document(result, options), paths["json"], indent=1, allow_nan=False)
    result.timings["write"] = time.perf_counter() - tic
    if "render" in paths:
        tic = time.perf_counter()
        render_video(video, paths["render"], _render_keyframes(result, options), hold=stride / 2,
                     short_side=options.render_short_side)
        result.timings["render"] = time.perf_counter() - tic
    write_json_atomic(
        {
            "format": _META_FORMAT,
            "settings": settings,
            "info": {"video": str(video), "outputs": {k: str(p) for k, p in paths.items()}, **options.info,
                     "warnings": result.warnings},
        },
        meta,
        indent=1,
        allow_nan=False,
    )
