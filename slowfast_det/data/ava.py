"""The AVA keyframe dataset (PySlowFast's ``Ava`` dataset, OpenCV backend) and its collate function.

One item per keyframe that has boxes: the clip of ``num_frames`` frames every ``sampling_rate`` frames centred
on the keyframe (:func:`slowfast_det.data.clips.clip_frame_indices`), split into pathways, with the
keyframe's boxes in input pixels, multi-hot labels and metadata. Frames come from JPEG frame folders listed
in PySlowFast frame lists, or (``video_dir``) are decoded from the original videos with PyAV, choosing the
same frames ``ava_tools.prepare`` would extract.

Keyframes without any box (after the score threshold) are not items, at training and at test time alike:
PySlowFast builds its keyframe list from the seconds that have boxes, and so do we
(:mod:`slowfast_det.data.annotations`).

Bad input:

* a frame file that is missing: :class:`SampleError` at once (PySlowFast's open() fails the same way);
* a frame that does not decode: re-read ``read_retries`` times ``retry_wait_s`` apart (PySlowFast retries 10
  times 1 s apart, for flaky network file systems), then :class:`SampleError`;
* frames of different sizes in one clip, an undecodable video: :class:`SampleError`;
* boxes reaching outside [0, 1]: clipped to the frame as PySlowFast does (a warning counts them per file);
  action ids outside 1..num_classes, boxes of a video absent from the frame lists, malformed rows:
  :class:`ava_tools.io.AvaFormatError` naming the file, line and column, when the dataset is built;
* a keyframe whose centre frame lies beyond the video's frames: clamped like any clip frame (PySlowFast's
  behaviour, so the inputs stay identical), with a warning naming the video and second.

Every :class:`SampleError` names the keyframe (index, video, second) and the file. A clip running over a
video's ends repeats the first/last frame (PySlowFast's clamping); boxes outside the frame are clipped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ava_tools.cli import UserError
from ava_tools.timeline import AVA_END_SEC, AVA_FPS, AVA_KEYFRAME_RANGE, AVA_START_SEC
from slowfast_det.data.annotations import (
    FrameLists,
    Keyframes,
    describe,
    load_boxes_and_labels,
    load_frame_lists,
)
from slowfast_det.data.clips import (
    clip_frame_indices,
    keyframe_center_index,
    pack_pathways,
)
from slowfast_det.data.transforms import preprocess_clip_test, preprocess_clip_train, preprocess_clip_val

__all__ = [
    "AvaDataset",
    "FrameReadError",
    "SampleError",
    "VideoBatchSampler",
    "ava_collate",
    "read_frames_bgr",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Decoders inherited by forked workers: kept referenced, never closed (closing in the child can hang)
_ABANDONED_READERS: list[Any] = []
_PCA_EIGVAL = (0.225, 0.224, 0.229)
_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class FrameReadError(UserError, OSError):
    """A frame image is missing or cannot be decoded (the message names the file)."""


class SampleError(UserError, RuntimeError):
    """A keyframe's sample cannot be built; the message names the keyframe, video, second and file."""


def read_frames_bgr(paths: Sequence[str], *, retries: int = 3, retry_wait_s: float = 0.5) -> list[np.ndarray]:
    """Decode image files with ``cv2.imdecode(..., IMREAD_COLOR)`` (BGR uint8), as PySlowFast does.

    A path repeated in ``paths`` is decoded once and its array shared.

    Args:
        paths: image files.
        retries: attempts for a file that exists but does not decode.
        retry_wait_s: pause between attempts.

    Returns:
        one (H, W, 3) uint8 BGR array per path.

    Raises:
        FrameReadError: a missing file (at once) or a file still undecodable after ``retries`` attempts.
    """
    decoded: dict[str, np.ndarray] = {}
    for path in dict.fromkeys(paths):
        for attempt in range(max(1, retries)):
            try:
                data = np.fromfile(path, dtype=np.uint8)
            except FileNotFoundError as exc:
                raise FrameReadError(f"{path}: frame file not found") from exc
            except OSError as exc:
                raise FrameReadError(f"{path}: cannot be read ({exc})") from exc
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if image is not None:
                decoded[path] = image
                break
            if attempt + 1 < retries:
                logger.warning("%s: cannot decode the image, retrying (%d/%d)", path, attempt + 1, retries)
                time.sleep(retry_wait_s)
        else:
            raise FrameReadError(
                f"{path}: not a decodable image ({max(1, retries)} attempts, {data.size} bytes)"
            )
    return [decoded[p] for p in paths]


def _find_video(video_dir: Path, video_id: str, listing: dict[str, list[str]]) -> Path:
    names = listing.get(video_id, [])
    if not names:
        raise FileNotFoundError(f"{video_dir}: no video file named {video_id}.* (AVA.VIDEO_DIR)")
    if len(names) > 1:
        raise FileNotFoundError(f"{video_dir}: several files for video {video_id}: {sorted(names)}")
    return video_dir / names[0]


class AvaDataset(torch.utils.data.Dataset):
    """AVA keyframes as model inputs (see the module docstring).

    Args:
        split: "train" (augmentation, GT + predicted boxes), "val" (short side to ``test_crop_size``, centre
            crop) or "test" (short side to ``test_crop_size``, full frame).
        frame_lists: PySlowFast frame lists (AVA.TRAIN_LISTS / TEST_LISTS joined to AVA.FRAME_LIST_DIR); may
            be empty when ``video_dir`` is given.
        frame_dir: folder the frame-list paths are relative to (AVA.FRAME_DIR).
        gt_box_lists: ground-truth CSVs (AVA.TRAIN_GT_BOX_LISTS; normally empty unless ``split == "train"``).
        predicted_box_lists: predicted-box CSVs (AVA.TRAIN_PREDICT_BOX_LISTS / AVA.TEST_PREDICT_BOX_LISTS).
        score_thresh: AVA.DETECTION_SCORE_THRESH (predicted boxes below it are dropped).
        num_classes: MODEL.NUM_CLASSES (multi-hot label width; action ids 1..num_classes).
        num_frames, sampling_rate: DATA.NUM_FRAMES (T) and DATA.SAMPLING_RATE (frames between clip frames).
        slowfast_alpha: SLOWFAST.ALPHA for two-pathway models, None for single-pathway ones.
        mean, std: DATA.MEAN / DATA.STD (BGR channel order, as PySlowFast applies them).
        bgr: AVA.BGR (feed BGR instead of RGB).
        train_jitter_scales, train_crop_size, random_flip: DATA.TRAIN_JITTER_SCALES, DATA.TRAIN_CROP_SIZE,
            DATA.RANDOM_FLIP.
        color_augmentation, pca_jitter_only, pca_eigval, pca_eigvec: AVA.TRAIN_USE_COLOR_AUGMENTATION,
            AVA.TRAIN_PCA_JITTER_ONLY, DATA.TRAIN_PCA_EIGVAL/EIGVEC.
        test_crop_size: DATA.TEST_CROP_SIZE (val/test short side).
        test_force_flip: AVA.TEST_FORCE_FLIP.
        keyframe_stride: keep seconds divisible by it (PySlowFast's val split: 4 unless AVA.FULL_TEST_ON_VAL).
        keyframe_range: inclusive keyframe seconds (AVA: 902..1798).
        frame_origin_sec, fps: frame index ``(s - frame_origin_sec) * fps`` is second ``s``'s keyframe.
        video_dir: decode from ``{video_dir}/{video_id}.*`` instead of frame lists (AVA.VIDEO_DIR); then
            videos are indexed by first appearance in the box CSVs.
        video_cut_sec: the ``[start, end)`` seconds ``ava_tools.prepare`` extracts (AVA: 900, 1801); frame
            index 0 of a video is the frame extracted at ``start``.
        read_retries, retry_wait_s: attempts for frames that do not decode (see :func:`read_frames_bgr`).
        cache_clips: keep each item's decoded clip (its T raw uint8 BGR frames, before any transform) in
            memory after its first read, so later epochs decode nothing (DATA_LOADER.CACHE_CLIPS). Random
            augmentation still runs on every read, on the cached frames, so a sample equals the uncached one
            for the same RNG state. Costs ``T * H * W * 3`` bytes per keyframe (a 16-frame 192x144 clip:
            1.3 MB): for small datasets such as SynthAVA. The cache lives in the process that reads: with
            DataLoader workers (restarted every epoch) it is refilled each epoch and gains nothing; use it
            with ``num_workers=0``.
    """

    def __init__(
        self,
        *,
        split: str,
        frame_lists: Sequence[str | os.PathLike[str]],
        frame_dir: str | os.PathLike[str],
        gt_box_lists: Sequence[str | os.PathLike[str]],
        predicted_box_lists: Sequence[str | os.PathLike[str]],
        score_thresh: float,
        num_classes: int,
        num_frames: int,
        sampling_rate: int,
        slowfast_alpha: int | None,
        mean: Sequence[float],
        std: Sequence[float],
        bgr: bool = False,
        train_jitter_scales: Sequence[int] = (256, 320),
        train_crop_size: int = 224,
        random_flip: bool = True,
        color_augmentation: bool = False,
        pca_jitter_only: bool = True,
        pca_eigval: Sequence[float] = _PCA_EIGVAL,
        pca_eigvec: Sequence[Sequence[float]] = _PCA_EIGVEC,
        test_crop_size: int = 256,
        test_force_flip: bool = False,
        keyframe_stride: int = 1,
        keyframe_range: tuple[int, int] = AVA_KEYFRAME_RANGE,
        frame_origin_sec: int = AVA_START_SEC,
        fps: int = AVA_FPS,
        video_dir: str | os.PathLike[str] | None = None,
        video_cut_sec: tuple[float, float | None] = (float(AVA_START_SEC), float(AVA_END_SEC)),
        read_retries: int = 3,
        retry_wait_s: float = 0.5,
        cache_clips: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.slowfast_alpha = slowfast_alpha
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.bgr = bgr
        self.train_jitter_scales = (int(train_jitter_scales[0]), int(train_jitter_scales[1]))
        self.train_crop_size = train_crop_size
        self.random_flip = random_flip
        self.color_augmentation = color_augmentation
        self.pca_jitter_only = pca_jitter_only
        self.pca_eigval = tuple(float(v) for v in pca_eigval)
        self.pca_eigvec = tuple(tuple(float(v) for v in row) for row in pca_eigvec)
        self.test_crop_size = test_crop_size
        self.test_force_flip = test_force_flip
        self.frame_origin_sec = frame_origin_sec
        self.fps = fps
        self.read_retries = read_retries
        self.retry_wait_s = retry_wait_s
        self.cache_clips = cache_clips
        # item index -> (T, H, W, 3) read-only uint8 BGR clip (cache_clips)
        self._clip_cache: dict[int, np.ndarray] = {}
        self.video_dir = None if video_dir is None else Path(video_dir)
        self.video_cut_sec = video_cut_sec

        self.frame_lists: FrameLists | None = None
        if self.video_dir is None:
            self.frame_lists = load_frame_lists(frame_lists, frame_dir)
            video_names: list[str] | None = self.frame_lists.video_names
        else:
            video_names = None
            if not self.video_dir.is_dir():
                raise FileNotFoundError(f"{self.video_dir}: video folder (AVA.VIDEO_DIR) does not exist")
        self.keyframes: Keyframes = load_boxes_and_labels(
            gt_box_lists,
            predicted_box_lists,
            score_thresh=score_thresh,
            num_classes=num_classes,
            video_names=video_names,
            keyframe_range=keyframe_range,
            keyframe_stride=keyframe_stride,
        )
        self.video_names = self.keyframes.video_names
        self._video_listing: dict[str, list[str]] | None = None
        self._timelines: dict[int, np.ndarray] = {}
        self._warned_short: set[int] = set()
        self._reader: Any = None  # (video_idx, VideoClipReader, pid) of the last video decoded
        logger.info("AVA %s: %s", split, describe(self.keyframes, self.frame_lists))

    # -- bookkeeping -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keyframes)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None  # open files stay in the process that opened them
        return state

    def keyframe(self, index: int) -> tuple[int, int]:
        """``(video_idx, second)`` of item ``index``."""
        return int(self.keyframes.video_idx[index]), int(self.keyframes.second[index])

    @property
    def keyframe_video_indices(self) -> np.ndarray:
        """(K,) int64 video index of every item (for batch samplers that keep videos apart)."""
        return self.keyframes.video_idx

    def num_video_frames(self, video_idx: int) -> int:
        """Frames in the video's frame list (or that ``ava_tools.prepare`` would extract from the video)."""
        if self.frame_lists is not None:
            return self.frame_lists.num_frames(video_idx)
        return int(self._timeline(video_idx).shape[0])

    def clip_indices(self, index: int) -> np.ndarray:
        """0-based frame indices of item ``index``'s clip (clamped to the video)."""
        video_idx, second = self.keyframe(index)
        center = keyframe_center_index(second, origin_sec=self.frame_origin_sec, fps=self.fps)
        n = self.num_video_frames(video_idx)
        if not 0 <= center < n and video_idx not in self._warned_short:
            # PySlowFast clamps silently; we clamp too (same inputs) but say so, once per video
            self._warned_short.add(video_idx)
            logger.warning(
                "keyframe %d (video %s, second %d): centre frame index %d is outside the video's %d frames "
                "(%s); the clip repeats the video's %s frame",
                index, self.video_names[video_idx], second, center, n, self._frame_source(video_idx),
                "first" if center < 0 else "last",
            )
        return clip_frame_indices(
            center, num_frames=self.num_frames, sampling_rate=self.sampling_rate, video_frames=n
        )

    def _frame_source(self, video_idx: int) -> str:
        if self.frame_lists is not None:
            return f"frame lists {', '.join(self.frame_lists.sources)}"
        return str(self._video_path(video_idx))

    # -- videos ------------------------------------------------------------------------------------------

    def _video_path(self, video_idx: int) -> Path:
        assert self.video_dir is not None
        if self._video_listing is None:
            listing: dict[str, list[str]] = {}
            for name in os.listdir(self.video_dir):
                stem, ext = os.path.splitext(name)
                if ext and not name.startswith("."):
                    listing.setdefault(stem, []).append(name)
            self._video_listing = listing
        return _find_video(self.video_dir, self.video_names[video_idx], self._video_listing)

    def _timeline(self, video_idx: int) -> np.ndarray:
        timeline = self._timelines.get(video_idx)
        if timeline is None:
            from slowfast_det.video.reader import extraction_timeline

            start, end = self.video_cut_sec
            timeline = extraction_timeline(
                self._video_path(video_idx), start_sec=start, end_sec=end, fps=self.fps
            )
            self._timelines[video_idx] = timeline
        return timeline

    def _video_frames(self, video_idx: int, indices: np.ndarray) -> list[np.ndarray]:
        import av

        from slowfast_det.video.probe import VideoDecodeError
        from slowfast_det.video.reader import VideoClipReader

        if self._reader is not None and self._reader[2] != os.getpid():
            # inherited through fork (a DataLoader worker): never touch the parent's decoder here
            _ABANDONED_READERS.append(self._reader[1])
            self._reader = None
        if self._reader is None or self._reader[0] != video_idx:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (video_idx, VideoClipReader(self._video_path(video_idx)), os.getpid())
        pts = self._timeline(video_idx)[indices]
        try:
            return list(self._reader[1].read([int(p) for p in pts]))
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{self._reader[1].path}: {exc}") from exc

    # -- samples -----------------------------------------------------------------------------------------

    def load_frames(self, index: int) -> list[np.ndarray]:
        """The raw clip of item ``index``: T (H, W, 3) BGR uint8 frames, before any transform.

        With ``cache_clips`` the frames are read-only views of the cached clip (transforms never write
        into their input).

        Raises:
            SampleError: naming the keyframe, the video, the second and the file at fault.
        """
        if self.cache_clips:
            cached = self._clip_cache.get(index)
            if cached is None:
                cached = np.stack(self._read_frames(index))
                cached.flags.writeable = False  # shared by every later read: nothing may modify it
                self._clip_cache[index] = cached
            return list(cached)
        return self._read_frames(index)

    def _read_frames(self, index: int) -> list[np.ndarray]:
        video_idx, second = self.keyframe(index)
        indices = self.clip_indices(index)
        try:
            if self.frame_lists is not None:
                paths = [self.frame_lists.frame_path(video_idx, int(i)) for i in indices]
                frames = read_frames_bgr(paths, retries=self.read_retries, retry_wait_s=self.retry_wait_s)
            else:
                frames = self._video_frames(video_idx, indices)
        except (FrameReadError, FileNotFoundError, RuntimeError) as exc:  # VideoDecodeError is a RuntimeError
            raise SampleError(
                f"keyframe {index} (video {self.video_names[video_idx]}, second {second}): {exc}"
            ) from exc
        sizes = {f.shape for f in frames}
        if len(sizes) > 1:
            raise SampleError(
                f"keyframe {index} (video {self.video_names[video_idx]}, second {second}): frames of "
                f"different sizes {sorted(sizes)} in one clip ({self._frame_source(video_idx)})"
            )
        return frames

    def _rng(self) -> np.random.Generator:
        # drawn from torch's generator: seeded by torch.manual_seed, distinct per DataLoader worker and epoch
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``.

        Returns:
            dict with ``inputs`` (list per pathway of (3, T_p, H, W) float32 tensors), ``boxes`` ((N, 4)
            float64 pixels of the input), ``ori_boxes`` ((N, 4) float64 normalised boxes as read),
            ``labels`` ((N, num_classes) float32 multi-hot), ``box_scores`` ((N,) float64 person score of
            each box, 1.0 for ground-truth boxes), ``metadata`` ((N, 2) int64: video index, second),
            ``video_id`` (str), ``index`` (int).
        """
        if not 0 <= index < len(self):
            raise IndexError(f"keyframe index {index} out of range 0..{len(self) - 1}")
        video_idx, second = self.keyframe(index)
        boxes_norm, labels = self.keyframes.boxes_of(index)
        frames = self.load_frames(index)
        if self.split == "train":
            clip, boxes = preprocess_clip_train(
                frames,
                boxes_norm,
                jitter_scales=self.train_jitter_scales,
                crop_size=self.train_crop_size,
                random_flip=self.random_flip,
                color_augmentation=self.color_augmentation,
                pca_jitter_only=self.pca_jitter_only,
                pca_eigval=self.pca_eigval,
                pca_eigvec=self.pca_eigvec,
                mean=self.mean,
                std=self.std,
                bgr=self.bgr,
                rng=self._rng(),
            )
        else:
            # val adds a centre square crop to the test-time preprocessing
            preprocess_eval = preprocess_clip_val if self.split == "val" else preprocess_clip_test
            clip, boxes = preprocess_eval(
                frames,
                boxes_norm,
                crop_size=self.test_crop_size,
                mean=self.mean,
                std=self.std,
                bgr=self.bgr,
                force_flip=self.test_force_flip,
            )
        n = boxes.shape[0]
        return {
            "inputs": pack_pathways(clip, alpha=self.slowfast_alpha),
            "boxes": boxes,
            "ori_boxes": boxes_norm,
            "labels": labels.astype(np.float32),
            "box_scores": self.keyframes.box_scores_of(index),
            "metadata": np.tile(np.array([[video_idx, second]], dtype=np.int64), (n, 1)),
            "video_id": self.video_names[video_idx],
            "index": int(index),
        }


def ava_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`AvaDataset` items; boxes of all clips are concatenated (PySlowFast's detection collate).

    Returns:
        dict with
        ``inputs``: list per pathway of (B, 3, T_p, H, W) float32;
        ``boxes``: (N, 5) float32 ``batch_index, x1, y1, x2, y2`` in input pixels (float64 rounded once);
        ``labels``: (N, num_classes) float32 multi-hot;
        ``ori_boxes``: (N, 4) float64 normalised boxes as read;
        ``box_scores``: (N,) float64 person score of each box (1.0 for ground-truth boxes, and for items
        without ``box_scores``);
        ``metadata``: (N, 2) int64 ``video_index, second``;
        ``video_ids``: list of N str, the video id of each box;
        ``index``: (B,) int64 dataset indices.

    Raises:
        ValueError: clips of different sizes (test-time clips keep each video's aspect ratio: batch one
            video at a time, e.g. with :class:`VideoBatchSampler`).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    n_path = len(samples[0]["inputs"])
    inputs = []
    for p in range(n_path):
        shapes = {tuple(s["inputs"][p].shape) for s in samples}
        if len(shapes) > 1:
            where = ", ".join(f"{s['video_id']}@{tuple(s['inputs'][p].shape)}" for s in samples)
            raise ValueError(f"clips of different sizes in one batch ({where}); batch videos separately")
        inputs.append(torch.stack([s["inputs"][p] for s in samples]))
    boxes = np.concatenate(
        [
            np.concatenate([np.full((s["boxes"].shape[0], 1), float(b)), s["boxes"]], axis=1)
            for b, s in enumerate(samples)
        ]
    )
    return {
        "inputs": inputs,
        "boxes": torch.from_numpy(boxes).float(),
        "labels": torch.from_numpy(np.concatenate([s["labels"] for s in samples])).float(),
        "ori_boxes": torch.from_numpy(np.concatenate([s["ori_boxes"] for s in samples])),
        # items of datasets without person scores (e.g. registered ones with ground-truth boxes only) score 1.0
        "box_scores": torch.from_numpy(np.concatenate(
            [s.get("box_scores", np.ones(s["boxes"].shape[0])) for s in samples]
        )),  # fmt: skip
        "metadata": torch.from_numpy(np.concatenate([s["metadata"] for s in samples])),
        "video_ids": [s["video_id"] for s in samples for _ in range(s["boxes"].shape[0])],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
    }


class VideoBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Consecutive keyframes in batches of at most ``batch_size`` that never mix videos (test time).

    With ``world_size > 1``, batch ``j`` goes to rank ``j % world_size``.

    Args:
        video_indices: (K,) video index of each dataset item, items of a video contiguous (as AvaDataset).
        batch_size: maximum items per batch.
        rank, world_size: this process's share.
    """

    def __init__(
        self, video_indices: np.ndarray, batch_size: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batches: list[list[int]] = []
        start = 0
        k = len(video_indices)
        while start < k:
            stop = start + 1
            while stop < k and stop - start < batch_size and video_indices[stop] == video_indices[start]:
                stop += 1
            batches.append(list(range(start, stop)))
            start = stop
        self.batches = batches[rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
