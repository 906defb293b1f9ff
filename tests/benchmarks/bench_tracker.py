"""Benchmark the person trackers' identity quality on SynthAVA held-out-like videos (IDF1, ID switches, MOTA).

Usage: ``python tests/benchmarks/bench_tracker.py [--seeds 1000 1001 ...] [--replay DEMO_OUT]``

Synthetic part (seconds on one core): for each seed, the val video of ``ava_tools.synth.generate(videos=2,
seconds=20, seed=seed)`` (as the demo's held-out video: seed + 1000, index 1) is rendered at its keyframes only
(every whole second, as ``detect-video`` samples them), with flat debug colours and with textured clothes. The
tracker gets the generator's true boxes of the visible people and the keyframe image, either exact
(``clean``) or as a detector would give them (``noisy``: edges jittered by 4 % of the box size, 10 % of the
boxes missed, a false positive on a third of the keyframes: the union of two people or a shifted part of one,
scored lower). Identity is scored with ``ava_tools.heldout``'s motmetrics code on the truth's keyframes
(0902 .. 0918, those hiding a person excluded), as the demo scores ``detect-video``.

Replay part (``--replay DEMO_OUT``, a finished ``make demo`` output folder): the boxes and detector scores that
``detect-video`` wrote for the held-out video (``DEMO_OUT/detect_video/<video>.actions.csv``) and the keyframe
images decoded from ``DEMO_OUT/heldout/videos/<video>.mp4`` the way ``detect-video`` decodes them are fed to
each tracker; its ids replace the CSV's and the result is scored by ``ava_tools.heldout.score_synth_heldout``
(the demo's own numbers; the real trained detector's boxes).

Trackers: ``iou`` (:class:`~slowfast_det.pipeline.tracking.IoUTracker`, the earlier IoU-only policy),
``motion`` (:class:`~slowfast_det.pipeline.tracking.PersonTracker` without the image: centre-distance gating
only) and ``person`` (``PersonTracker`` with image and scores, what ``detect-video`` uses). All at their
defaults (iou_threshold 0.3, max_age 3).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ava_tools.heldout import _identity_metrics, score_synth_heldout
from ava_tools.synth import FPS, TIME_ORIGIN_SEC, _annotate_keyframe, keyframe_seconds, make_scene, render_frame
from slowfast_det.pipeline.tracking import IoUTracker, PersonTracker

SECONDS = 20
_COORDS = ["x1", "y1", "x2", "y2"]


@dataclass
class Keyframe:
    second: int  # truth clock (900 + t)
    image: np.ndarray  # (H, W, 3) uint8 BGR
    pids: list[int]
    boxes: np.ndarray  # (N, 4) normalised


def synth_keyframes(seed: int, *, debug_colors: bool, index: int = 1) -> tuple[list[Keyframe], list[int]]:
    """Keyframes t = 0 .. SECONDS-1 of the held-out-like video, and the truth seconds to score."""
    scene = make_scene(index, seed=seed, seconds=SECONDS, debug_colors=debug_colors)
    scale = np.array([scene.width, scene.height] * 2, dtype=np.float64)
    out, excluded = [], set()
    for t in range(SECONDS):
        frame = render_frame(scene, t * FPS)
        boxes, ambiguous = _annotate_keyframe(scene, frame, TIME_ORIGIN_SEC + t, t * FPS)
        if ambiguous:
            excluded.add(TIME_ORIGIN_SEC + t)
        out.append(Keyframe(TIME_ORIGIN_SEC + t, np.ascontiguousarray(frame.rgb[..., ::-1]), [b.pid for b in boxes],
                            np.array([b.box for b in boxes], dtype=np.float64).reshape(-1, 4) / scale))
    scored = [s for s in keyframe_seconds(SECONDS) if s not in excluded]
    return out, scored


def detector_like(kf: Keyframe, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores as a detector would give them for ``kf`` (see the module docstring)."""
    boxes, scores = [], []
    for box in kf.boxes:
        if rng.random() < 0.1:
            continue
        size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        boxes.append(np.clip(box + rng.normal(0, 0.04, 4) * size, 0, 1))
        scores.append(rng.uniform(0.75, 1.0))
    if len(kf.boxes) and rng.random() < 1 / 3:
        if len(kf.boxes) >= 2 and rng.random() < 0.5:
            a, b = rng.choice(len(kf.boxes), 2, replace=False)
            fp = np.concatenate([np.minimum(kf.boxes[a][:2], kf.boxes[b][:2]),
                                 np.maximum(kf.boxes[a][2:], kf.boxes[b][2:])])
        else:
            box = kf.boxes[rng.integers(len(kf.boxes))]
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            fp = np.clip(box + rng.uniform(-0.5, 0.5, 4) * size, 0, 1)
            fp[2:] = np.maximum(fp[2:], fp[:2] + 0.02)
        boxes.append(fp)
        scores.append(rng.uniform(0.5, 0.8))
    order = rng.permutation(len(boxes))
    return np.array(boxes).reshape(-1, 4)[order], np.array(scores)[order]


Tracker = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def trackers() -> dict[str, Callable[[], Tracker]]:
    """Name -> factory of a fresh ``track(boxes, scores, image) -> ids`` per video."""

    def iou() -> Tracker:
        t = IoUTracker()
        return lambda boxes, scores, image: t.update(boxes)

    def motion() -> Tracker:
        t = PersonTracker()
        return lambda boxes, scores, image: t.update(boxes, scores=scores)

    def person() -> Tracker:
        t = PersonTracker()
        return lambda boxes, scores, image: t.update(boxes, scores=scores, image=image)

    return {"iou": iou, "motion": motion, "person": person}


def run_synth(seed: int, debug_colors: bool, noisy: bool, make: Callable[[], Tracker]) -> dict[str, float]:
    keyframes, scored = synth_keyframes(seed, debug_colors=debug_colors)
    rng = np.random.default_rng(seed)
    track = make()
    truth, pred = [], []
    for kf in keyframes:
        boxes, scores = detector_like(kf, rng) if noisy else (kf.boxes, np.ones(len(kf.boxes)))
        ids = track(boxes, scores, kf.image)
        truth += [(kf.second, p, *b) for p, b in zip(kf.pids, kf.boxes, strict=True)]
        pred += [(kf.second, int(i), *b) for i, b in zip(ids, boxes, strict=True)]
    cols = ["second", "person_id", *_COORDS]
    return _identity_metrics(scored, pd.DataFrame(truth, columns=cols), pd.DataFrame(pred, columns=cols), 0.5)


def run_replay(demo_out: Path, make: Callable[[], Tracker]) -> dict[str, float]:
    """Re-track ``detect-video``'s boxes of the demo's held-out video and score as the demo does."""
    from slowfast_det.video.stream import ClipStream

    csv = sorted((demo_out / "detect_video").glob("*.actions.csv"))[0]
    video = demo_out / "heldout" / "videos" / f"{csv.name.split('.')[0]}.mp4"
    table = pd.read_csv(csv, dtype={"timestamp": str})
    people = table.drop_duplicates(["timestamp", "person_id"])
    images = {float(c.time): c.keyframe for c in ClipStream(video, num_frames=1, sampling_rate=1)}
    track = make()
    new_ids: dict[tuple[str, int], int] = {}
    for ts, rows in people.groupby("timestamp", sort=False):
        ids = track(rows[_COORDS].to_numpy(np.float64), rows["detector_score"].to_numpy(np.float64),
                    images[float(ts)])
        new_ids.update({(ts, int(old)): int(new) for old, new in zip(rows["person_id"], ids, strict=True)})
    table["person_id"] = [new_ids[(ts, int(p))] for ts, p in zip(table["timestamp"], table["person_id"],
                                                                  strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / csv.name
        table.to_csv(out, index=False)
        score = score_synth_heldout(demo_out / "heldout", out)
    return {"idf1": score.idf1, "num_switches": score.id_switches, "mota": score.mota,
            "ids": score.predicted_ids, "people": score.true_people}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1008)))
    parser.add_argument("--replay", type=Path, help="a finished demo output folder (make demo's OUT)")
    args = parser.parse_args()
    makers = trackers()
    print(f"{'case':<22}" + "".join(f"{n:>26}" for n in makers))
    print(f"{'':<22}" + "".join(f"{'IDF1  IDsw   MOTA':>26}" for _ in makers))
    for debug_colors in (True, False):
        for noisy in (False, True):
            case = f"{'flat' if debug_colors else 'textured'} {'noisy' if noisy else 'clean'}"
            totals = {n: np.zeros(3) for n in makers}
            for seed in args.seeds:
                for name, make in makers.items():
                    m = run_synth(seed, debug_colors, noisy, make)
                    totals[name] += [m["idf1"], m["num_switches"], m["mota"]]
            k = len(args.seeds)
            print(f"{case:<22}" + "".join(f"{v[0] / k:>15.3f}{v[1] / k:>5.1f}{v[2] / k:>6.2f}"
                                          for v in totals.values()))
    print(f"(mean over seeds {args.seeds[0]}..{args.seeds[-1]}; IDsw = ID switches per 17 keyframes)")
    if args.replay is not None:
        for name, make in makers.items():
            m = run_replay(args.replay, make)
            print(f"replay {args.replay} {name:<8} IDF1 {m['idf1']:.3f}  ID switches {m['num_switches']}  "
                  f"MOTA {m['mota']:.3f}  ({m['ids']} ids for {m['people']} people)")


if __name__ == "__main__":
    main()
