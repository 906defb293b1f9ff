"""Score ``detect-video``'s own output on a held-out video against the truth the generator knows.

Two measures, both on the truth's keyframes of that one video:

* **actions**: frame-level AVA mAP (:func:`ava_tools.evaluate.evaluate`, the official numbers) of the
  actions in ``detect-video``'s per-person CSV against the truth's action rows. Every truth keyframe is
  scored, also those where nobody acts (their detections are false positives); excluded keyframes (people
  hidden behind others) are dropped from both sides, as AVA's protocol drops them.
* **identity**: multi-object-tracking metrics of ``detect-video``'s person ids against the true person ids,
  computed by the maintained library ``motmetrics`` (CLEAR MOT and the identity measures of Ristani et al.
  2016): IDF1, ID precision/recall, identity switches, MOTA, box precision/recall. A predicted box matches a
  true box when their IoU is at least ``iou_threshold`` (0.5), keyframe by keyframe.

Time: a truth keyframe at AVA second ``s`` (SynthAVA: ``0902``, ...) is the keyframe ``detect-video`` writes
at ``s - time_origin`` seconds on the video's clock (SynthAVA's videos start at second 900, so ``902`` is
``2.0``). The match is exact (decimal text, not floats); ``detect-video`` keyframes with no truth keyframe
(the first and last seconds, or times between whole seconds) are not scored.

The truth's people: the AVA CSV lists only people with an action. For identity scores the COCO file that
SynthAVA writes beside it (``coco_person_<split>.json``: every annotated person at every keyframe, with its
``person_id``) is the complete truth; pass it as ``truth_boxes``. Without it the CSV's people stand for all.

The action scores in the CSV are those ``detect-video`` kept (``--action-threshold``, default 0.5, and
``--topk``); lower scores are missing, which can only lower the mAP. Run ``detect-video`` with
``--action-threshold 0`` to score every action; :attr:`HeldoutScore.lowest_action_score` records what was kept.

No torch import: ``ava_tools`` must import without it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ava_tools.atomic import write_json_atomic
from ava_tools.evaluate import MAP_KEY, evaluate, read_exclusions_csv, read_groundtruth_csv
from ava_tools.labelmap import AvaFormatError, LabelMap, read_labelmap

__all__ = ["ACTIONS_CSV_COLUMNS", "HeldoutScore", "score_heldout", "score_synth_heldout"]

#: Columns of ``detect-video``'s ``<name>.actions.csv`` (``slowfast_det.pipeline.tables.ACTION_COLUMNS``).
ACTIONS_CSV_COLUMNS = [
    "video_id", "timestamp", "person_id", "x1", "y1", "x2", "y2", "detector_score", "action_id", "action_name",
    "score",
]
_COORDS = ["x1", "y1", "x2", "y2"]


@dataclass
class HeldoutScore:
    """What :func:`score_heldout` measured on one video.

    Attributes:
        video_id: the video scored.
        keyframes: truth keyframes scored (excluded ones left out).
        excluded_keyframes: truth keyframes left out (listed in the exclusions file).
        frame_map: official frame-level AVA mAP@0.5 of the actions on those keyframes (NaN: no truth action).
        class_ap: ``{class name: AP}`` (NaN for classes without truth on this video).
        lowest_action_score: the smallest action score in the CSV (None: no action rows), i.e. about the
            ``--action-threshold`` ``detect-video`` ran with.
        idf1, idp, idr: identity F1, precision, recall (motmetrics).
        id_switches: times a true person's matched predicted id changes (motmetrics ``num_switches``).
        mota: multi-object tracking accuracy, 1 - (misses + false positives + switches) / true boxes.
        precision, recall: box precision / recall at ``iou_threshold`` (each keyframe, one-to-one).
        mean_match_iou: mean IoU of the matched boxes (1 - motmetrics' MOTP on IoU distances).
        true_boxes, predicted_boxes, misses, false_positives: box counts over the scored keyframes.
        true_people, predicted_ids: distinct true person ids / predicted ids seen there.
        iou_threshold: IoU needed for a match.
        truth: the files scored against.
    """

    video_id: str
    keyframes: int
    excluded_keyframes: int
    frame_map: float
    class_ap: dict[str, float]
    lowest_action_score: float | None
    idf1: float
    idp: float
    idr: float
    id_switches: int
    mota: float
    precision: float
    recall: float
    mean_match_iou: float
    true_boxes: int
    predicted_boxes: int
    misses: int
    false_positives: int
    true_people: int
    predicted_ids: int
    iou_threshold: float
    truth: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as None)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return {k: clean(v) for k, v in asdict(self).items()}

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically; returns the path."""
        return write_json_atomic(self.to_dict(), path, indent=1)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        return [
            f"held-out {self.video_id}: {self.keyframes} keyframes scored ({self.excluded_keyframes} excluded)",
            f"  actions:  frame-mAP {self.frame_map:.3f}"
            + (f" (actions kept >= {self.lowest_action_score:.2f})" if self.lowest_action_score is not None else ""),
            f"  identity: IDF1 {self.idf1:.3f}, ID switches {self.id_switches}, MOTA {self.mota:.3f}, "
            f"recall {self.recall:.3f}, precision {self.precision:.3f} "
            f"({self.true_people} people, {self.predicted_ids} predicted ids, IoU >= {self.iou_threshold})",
        ]


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


def _read_actions_csv(path: Path) -> pd.DataFrame:
    """``detect-video``'s per-person CSV, timestamps kept as text (matched exactly later)."""
    if not path.is_file():
        raise AvaFormatError(f"{path}: no such file (expected detect-video's <name>.actions.csv)")
    frame = pd.read_csv(path, dtype={"video_id": str, "timestamp": str}, keep_default_na=True)
    missing = [c for c in ACTIONS_CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise AvaFormatError(
            f"{path}: missing columns {missing}; expected detect-video's --format csv header "
            f"{','.join(ACTIONS_CSV_COLUMNS)}"
        )
    for c in ("person_id", *_COORDS, "action_id", "score"):
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = values.isna() & frame[c].notna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
            raise AvaFormatError(f"{path}, line {line}: column {c} must be a number, got {frame[c][bad].iloc[0]!r}")
        frame[c] = values
    if frame["person_id"].isna().any() or frame[_COORDS].isna().any().any():
        line = int(np.flatnonzero((frame["person_id"].isna() | frame[_COORDS].isna().any(axis=1)).to_numpy())[0]) + 2
        raise AvaFormatError(f"{path}, line {line}: every row needs a person_id and a box")
    return frame


def _second_of(text: str, origin: int, where: str) -> int | None:
    """The truth second of a ``detect-video`` timestamp (``"2.0"`` + 900 -> 902); None if not a whole second."""
    try:
        value = Fraction(text.strip()) + origin
    except (ValueError, ZeroDivisionError):
        raise AvaFormatError(f"{where}: timestamp {text!r} is not a number of seconds") from None
    return int(value) if value.denominator == 1 else None


def _truth_people_from_coco(path: Path, video_id: str) -> tuple[list[int], pd.DataFrame]:
    """Keyframe seconds and all annotated people (second, person_id, normalised box) of one video."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = {
            int(im["id"]): (int(im["timestamp"]), float(im["width"]), float(im["height"]))
            for im in doc["images"] if str(im.get("video_id")) == video_id
        }
        rows = []
        for ann in doc["annotations"]:
            if int(ann["image_id"]) in images:
                second, w, h = images[int(ann["image_id"])]
                x, y, bw, bh = (float(v) for v in ann["bbox"])
                rows.append((second, int(ann["person_id"]), x / w, y / h, (x + bw) / w, (y + bh) / h))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AvaFormatError(
            f"{path}: not a SynthAVA COCO person file (images with video_id/timestamp/width/height, "
            f"annotations with image_id/bbox/person_id): {exc}"
        ) from None
    if not images:
        raise AvaFormatError(f"{path}: no image of video {video_id!r}")
    people = pd.DataFrame(rows, columns=["second", "person_id", *_COORDS])
    return sorted({s for s, _, _ in images.values()}), people


# ----------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------


def _iou_distances(gt: np.ndarray, hyp: np.ndarray, threshold: float) -> np.ndarray:
    """(G, H) float64 ``1 - IoU`` of x1y1x2y2 boxes, NaN (no match allowed) where IoU < ``threshold``.

    motmetrics' own ``distances.iou_matrix`` (1.4.0) calls ``np.asfarray``, removed in numpy 2.
    """
    if len(gt) == 0 or len(hyp) == 0:
        return np.zeros((len(gt), len(hyp)))
    ix = np.clip(np.minimum(gt[:, None, 2], hyp[None, :, 2]) - np.maximum(gt[:, None, 0], hyp[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(gt[:, None, 3], hyp[None, :, 3]) - np.maximum(gt[:, None, 1], hyp[None, :, 1]), 0, None)
    inter = ix * iy
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    area_h = (hyp[:, 2] - hyp[:, 0]) * (hyp[:, 3] - hyp[:, 1])
    union = area_g[:, None] + area_h[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(iou >= threshold, 1.0 - iou, np.nan)


def _identity_metrics(seconds: list[int], truth: pd.DataFrame, predicted: pd.DataFrame, threshold: float
                      ) -> dict[str, float]:
    """motmetrics over the keyframes ``seconds`` (in order): truth/predicted rows (second, person_id, box)."""
    try:
        import motmetrics as mm
    except ImportError:
        raise ImportError("held-out identity scores need motmetrics: pip install motmetrics") from None

    acc = mm.MOTAccumulator(auto_id=True)
    by_truth = dict(tuple(truth.groupby("second", sort=False)))
    by_pred = dict(tuple(predicted.groupby("second", sort=False)))
    empty = pd.DataFrame(columns=["person_id", *_COORDS])
    for s in seconds:
        g, p = by_truth.get(s, empty), by_pred.get(s, empty)
        acc.update(
            [int(v) for v in g["person_id"]], [int(v) for v in p["person_id"]],
            _iou_distances(g[_COORDS].to_numpy(np.float64), p[_COORDS].to_numpy(np.float64), threshold),
        )
    names = ["idf1", "idp", "idr", "num_switches", "mota", "motp", "precision", "recall", "num_objects",
             "num_predictions", "num_misses", "num_false_positives"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="heldout")
    return {n: float(summary[n].iloc[0]) for n in names}


def score_heldout(
    truth_csv: str | os.PathLike[str],
    actions_csv: str | os.PathLike[str],
    labelmap: str | os.PathLike[str] | LabelMap,
    *,
    video_id: str | None = None,
    truth_boxes: str | os.PathLike[str] | None = None,
    exclusions: str | os.PathLike[str] | None = None,
    time_origin: int = 900,
    iou_threshold: float = 0.5,
    out_json: str | os.PathLike[str] | None = None,
) -> HeldoutScore:
    """Score ``detect-video``'s per-person CSV of one video against the truth of that video.

    Args:
        truth_csv: AVA annotation CSV (``video_id,second,x1,y1,x2,y2,action_id,person_id``, no header), e.g.
            SynthAVA's ``annotations/ava_val_v2.2.csv``; rows of other videos are ignored.
        actions_csv: ``detect-video``'s ``<name>.actions.csv`` (``--format csv``) of the same video.
        labelmap: the label map the actions are scored with (``.pbtxt`` or LabelMap).
        video_id: the video to score (None: the one video of ``actions_csv``, else of ``truth_csv``).
        truth_boxes: SynthAVA's ``coco_person_<split>.json``: every true person at every keyframe (identity
            truth, and the keyframe list). None: the people and keyframes of ``truth_csv``.
        exclusions: ``video_id,second`` CSV of keyframes not to score (SynthAVA's excluded timestamps).
        time_origin: the truth second of the video's t = 0 (SynthAVA: 900).
        iou_threshold: IoU for a box match (tracking metrics; the mAP uses the official 0.5).
        out_json: also write the result there (atomic).

    Raises:
        AvaFormatError: unreadable inputs, or keyframes that cannot line up with the truth's.
    """
    truth_csv, actions_csv = Path(truth_csv), Path(actions_csv)
    lm = labelmap if isinstance(labelmap, LabelMap) else read_labelmap(labelmap)
    gt = read_groundtruth_csv(truth_csv)
    gt = gt[gt["action_id"].notna()].copy()
    gt["video_id"] = gt["video_id"].astype(str)
    pred = _read_actions_csv(actions_csv)
    if video_id is None:
        videos = sorted(set(pred["video_id"])) or sorted(set(gt["video_id"]))
        if len(videos) != 1:
            raise AvaFormatError(f"{actions_csv}: holds videos {videos}; name the one to score (video_id=...)")
        video_id = videos[0]
    gt = gt[gt["video_id"] == video_id].copy()
    pred = pred[pred["video_id"] == video_id].copy()
    try:
        gt["second"] = [int(Fraction(str(t))) for t in gt["timestamp"]]
    except (ValueError, ZeroDivisionError):
        raise AvaFormatError(f"{truth_csv}: timestamps must be whole seconds") from None

    if truth_boxes is not None:
        seconds, truth_people = _truth_people_from_coco(Path(truth_boxes), video_id)
    else:
        if gt.empty:
            raise AvaFormatError(f"{truth_csv}: no row of video {video_id!r}")
        seconds = sorted(set(gt["second"]))
        truth_people = gt.drop_duplicates(["second", "person_id"])[["second", "person_id", *_COORDS]]
    excluded: set[int] = set()
    if exclusions is not None:
        ex = read_exclusions_csv(exclusions)
        excluded = {int(Fraction(str(t))) for v, t in zip(ex["video_id"], ex["timestamp"], strict=True)
                    if str(v) == video_id}
    scored = [s for s in seconds if s not in excluded]
    keep = set(scored)

    pred["second"] = [_second_of(str(t), time_origin, str(actions_csv)) for t in pred["timestamp"]]
    if len(pred) and not pred["second"].isin(keep).any():
        shown = sorted(set(pred["timestamp"]))[:5]
        raise AvaFormatError(
            f"{actions_csv}: no keyframe lines up with the truth of {video_id}: detect-video times {shown}... + "
            f"time origin {time_origin} s never equal a truth second ({scored[:1]} .. {scored[-1:]}); run "
            "detect-video with whole-second keyframes (--stride 1 --start 0) on the same video"
        )
    pred = pred[pred["second"].isin(keep)]
    gt = gt[gt["second"].isin(keep)]
    truth_people = truth_people[truth_people["second"].isin(keep)]

    # actions: truth rows plus an empty (2-column) row per scored keyframe, so keyframes where nobody acts
    # are scored too (their detections are false positives)
    gt_frame = pd.concat([
        pd.DataFrame({"video_id": video_id, "timestamp": gt["second"].to_numpy(), **{c: gt[c].to_numpy() for c in
                      _COORDS}, "action_id": gt["action_id"].to_numpy(), "person_id": gt["person_id"].to_numpy()}),
        pd.DataFrame({"video_id": video_id, "timestamp": scored, **{c: np.nan for c in _COORDS},
                      "action_id": pd.array([None] * len(scored), dtype="Int64"), "person_id": np.nan}),
    ], ignore_index=True)
    acts = pred[pred["action_id"].notna()]
    det_frame = pd.DataFrame({
        "video_id": video_id, "timestamp": acts["second"].to_numpy(), **{c: acts[c].to_numpy() for c in _COORDS},
        "action_id": acts["action_id"].astype("int64").to_numpy(), "score": acts["score"].to_numpy(),
    })
    result = evaluate(gt_frame, det_frame, lm, legacy=False)
    names = lm.names()
    class_ap = {str(n): float(a) for n, a in zip(result.class_table["name"], result.class_table["ap"], strict=True)
                if str(n) in names.values()}

    persons = pred.drop_duplicates(["second", "person_id"])[["second", "person_id", *_COORDS]]
    ident = _identity_metrics(scored, truth_people, persons, iou_threshold)
    score = HeldoutScore(
        video_id=video_id,
        keyframes=len(scored),
        excluded_keyframes=len(seconds) - len(scored),
        frame_map=float(result.metrics[MAP_KEY]),
        class_ap=class_ap,
        lowest_action_score=float(acts["score"].min()) if len(acts) else None,
        idf1=ident["idf1"],
        idp=ident["idp"],
        idr=ident["idr"],
        id_switches=int(ident["num_switches"]),
        mota=ident["mota"],
        precision=ident["precision"],
        recall=ident["recall"],
        mean_match_iou=1.0 - ident["motp"] if not math.isnan(ident["motp"]) else float("nan"),
        true_boxes=int(ident["num_objects"]),
        predicted_boxes=int(ident["num_predictions"]),
        misses=int(ident["num_misses"]),
        false_positives=int(ident["num_false_positives"]),
        true_people=int(truth_people["person_id"].nunique()),
        predicted_ids=int(persons["person_id"].nunique()),
        iou_threshold=iou_threshold,
        truth={"actions": str(truth_csv), "boxes": str(truth_boxes or truth_csv),
               "exclusions": str(exclusions or ""), "predictions": str(actions_csv)},
    )
    if out_json is not None:
        score.write_json(out_json)
    return score


def score_synth_heldout(
    synth_dir: str | os.PathLike[str],
    actions_csv: str | os.PathLike[str],
    *,
    split: str = "val",
    video_id: str | None = None,
    out_json: str | os.PathLike[str] | None = None,
) -> HeldoutScore:
    """:func:`score_heldout` of a SynthAVA video: the truth files are found in ``synth_dir/annotations``.

    Uses ``ava_<split>_v2.2.csv`` (actions), ``coco_person_<split>.json`` (all people, ids),
    ``ava_<split>_excluded_timestamps_v2.2.csv``, the evaluation label map and the time origin recorded in
    ``synth_meta.json``.

    Example (the demo's held-out step, after ``detect-video`` wrote ``out/detect_video/synth001.actions.csv``)::

        score = score_synth_heldout(out / "heldout", out / "detect_video" / "synth001.actions.csv",
                                    out_json=out / "detect_video" / "heldout_score.json")
        print("\\n".join(score.lines()))
    """
    ann = Path(synth_dir) / "annotations"
    meta_path = ann / "synth_meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AvaFormatError(f"{meta_path}: not a complete SynthAVA folder ({exc})") from None
    return score_heldout(
        ann / f"ava_{split}_v2.2.csv",
        actions_csv,
        ann / str(meta.get("eval_label_map", "ava_action_list_synth_for_eval.pbtxt")),
        video_id=video_id,
        truth_boxes=ann / f"coco_person_{split}.json",
        exclusions=ann / f"ava_{split}_excluded_timestamps_v2.2.csv",
        time_origin=int(meta.get("time_origin_sec", 900)),
        out_json=out_json,
    )
