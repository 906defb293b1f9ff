"""Benchmark: ava_tools.evaluate on an AVA-v2.2-val-sized evaluation (not collected by pytest).

Generates (once, cached under /tmp) a ground-truth CSV of 64 videos x 897 keyframes (~340k rows) and a
PySlowFast-style detection CSV (5 boxes x 60 classes per keyframe, ~17.2M rows, ~1 GB; boxes rounded to 3 and
scores to 4 decimals as PySlowFast writes them, so tied scores occur as in real files), then runs
``python -m ava_tools.evaluate`` end to end in a child process and prints its wall time and peak RSS.
With ``--official PATH`` (a checkout's ``get_ava_performance.py``) it runs that too and compares the metrics.

    python tests/benchmarks/bench_evaluate.py              # full size
    python tests/benchmarks/bench_evaluate.py --scale 0.1  # 10% of the videos
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ava_tools.labelmap import AVA_V22_ACTIVITYNET, bundled_labelmap_path, load_bundled_labelmap

N_VIDEOS = 64
KEYFRAMES = np.arange(902, 1799)  # 897 keyframes per video
BOXES_PER_KEYFRAME = 5


def _video_ids(n: int, rng: np.random.Generator) -> list[str]:
    """YouTube-like 11-character ids."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    return ["".join(rng.choice(alphabet, 11)) for _ in range(n)]


def _random_boxes(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) boxes x1, y1, x2, y2 in [0, 1], rounded to 3 decimals."""
    w = rng.uniform(0.1, 0.4, n)
    h = rng.uniform(0.3, 0.9, n)
    x1 = rng.uniform(0.0, 1.0 - w)
    y1 = rng.uniform(0.0, 1.0 - h)
    return np.round(np.stack([x1, y1, x1 + w, y1 + h], axis=1), 3)


def _write(path: Path, columns: dict[str, pa.Array], mode: str) -> None:
    table = pa.table(columns)
    with open(path, mode + "b") as f:
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def generate(out_dir: Path, n_videos: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``gt.csv`` and ``det.csv`` for ``n_videos`` videos into ``out_dir`` (skipped if present)."""
    gt_path, det_path = out_dir / "gt.csv", out_dir / "det.csv"
    done = out_dir / "done"
    if done.exists():
        return gt_path, det_path
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    class_ids = np.array(load_bundled_labelmap(AVA_V22_ACTIVITYNET).class_ids)
    pose = class_ids[class_ids <= 14]
    other = class_ids[class_ids > 14]
    n_kf = len(KEYFRAMES)
    for v, vid in enumerate(_video_ids(n_videos, rng)):
        mode = "w" if v == 0 else "a"
        n_person = rng.integers(1, 5, n_kf)  # 1..4 people per keyframe
        kf_of_person = np.repeat(np.arange(n_kf), n_person)
        person_boxes = _random_boxes(len(kf_of_person), rng)
        # GT: one pose class plus Poisson(1.4) other classes per person (~6 rows per keyframe).
        n_other = rng.poisson(1.4, len(kf_of_person))
        labels_pose = rng.choice(pose, len(kf_of_person))
        gt_person = np.concatenate([np.arange(len(kf_of_person)), np.repeat(np.arange(len(kf_of_person)), n_other)])
        gt_label = np.concatenate([labels_pose, rng.choice(other, n_other.sum())])
        order = np.argsort(gt_person, kind="stable")
        gt_person, gt_label = gt_person[order], gt_label[order]
        first_person = np.concatenate([[0], np.cumsum(n_person)[:-1]])
        person_local_id = np.arange(len(kf_of_person)) - first_person[kf_of_person]
        kf = kf_of_person[gt_person]
        _write(
            gt_path,
            {
                "v": pa.array([vid] * len(gt_person)),
                "t": pa.array([f"{s:04d}" for s in KEYFRAMES[kf]]),
                "x1": person_boxes[gt_person, 0],
                "y1": person_boxes[gt_person, 1],
                "x2": person_boxes[gt_person, 2],
                "y2": person_boxes[gt_person, 3],
                "a": gt_label,
                "p": person_local_id[gt_person],
            },
            mode,
        )
        # Detections: 5 boxes per keyframe; the first min(people, 5) are jittered GT people.
        det_boxes = _random_boxes(n_kf * BOXES_PER_KEYFRAME, rng).reshape(n_kf, BOXES_PER_KEYFRAME, 4)
        box_person = np.full((n_kf, BOXES_PER_KEYFRAME), -1)
        for j in range(BOXES_PER_KEYFRAME):
            has = n_person > j
            box_person[has, j] = first_person[has] + j
            jitter = rng.uniform(-0.03, 0.03, (has.sum(), 4))
            det_boxes[has, j] = np.round(np.clip(person_boxes[first_person[has] + j] + jitter, 0, 1), 3)
        det_boxes[..., 2] = np.maximum(det_boxes[..., 2], det_boxes[..., 0] + 0.01)
        det_boxes[..., 3] = np.maximum(det_boxes[..., 3], det_boxes[..., 1] + 0.01)
        n_cls = len(class_ids)
        scores = rng.beta(0.6, 12.0, (n_kf, BOXES_PER_KEYFRAME, n_cls))
        positive = np.zeros((len(kf_of_person), 81), bool)
        positive[gt_person, gt_label] = True
        pos_box = box_person >= 0
        hit = positive[box_person[pos_box]][:, class_ids]
        boosted = np.where(hit, rng.beta(4.0, 2.0, hit.shape), scores[pos_box])
        scores[pos_box] = boosted
        scores = np.round(scores, 4)
        n_rows = n_kf * BOXES_PER_KEYFRAME * n_cls
        kf_rows = np.repeat(np.arange(n_kf), BOXES_PER_KEYFRAME * n_cls)
        boxes_rows = np.repeat(det_boxes.reshape(-1, 4), n_cls, axis=0)
        ts_text = pa.array([f"{s:04d}" for s in KEYFRAMES]).take(pa.array(kf_rows))
        _write(
            det_path,
            {
                "v": pa.DictionaryArray.from_arrays(np.zeros(n_rows, np.int32), [vid]).cast(pa.string()),
                "t": ts_text,
                "x1": boxes_rows[:, 0],
                "y1": boxes_rows[:, 1],
                "x2": boxes_rows[:, 2],
                "y2": boxes_rows[:, 3],
                "a": np.tile(class_ids, n_kf * BOXES_PER_KEYFRAME),
                "s": scores.reshape(-1),
            },
            mode,
        )
    done.touch()
    return gt_path, det_path


def _run(cmd: list[str], cwd: str | None = None) -> tuple[float, float, float, str]:
    """Run ``cmd`` in a fresh child; returns (wall s, CPU s (user+sys), peak RSS MiB of that child, stdout)."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "sys.stderr.write(p.stderr)\n"
        "print(f'{dt} {u.ru_utime + u.ru_stime} {u.ru_maxrss / 1024} {p.returncode}')\n"
        "print(p.stdout, end='')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True, cwd=cwd)
    head, _, stdout = out.stdout.partition("\n")
    dt, cpu, rss, rc = head.split()
    if rc != "0":
        raise RuntimeError(f"{cmd} failed ({rc}):\n{out.stderr[-3000:]}")
    return float(dt), float(cpu), float(rss), stdout


def _nan_equal(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def _parse_pprint(text: str) -> dict[str, float]:
    """The official prints its dict with pprint; NaN appears as ``nan``."""
    start = text.index("{")
    body = re.sub(r"(?<![\w'])nan(?![\w'])", "None", text[start : text.rindex("}") + 1])
    return {k: (float("nan") if v is None else float(v)) for k, v in ast.literal_eval(body).items()}


def main(args: argparse.Namespace) -> None:
    n_videos = max(1, round(N_VIDEOS * args.scale))
    out_dir = Path(args.cache_dir) / f"ava_bench_{n_videos}v"
    t0 = time.perf_counter()
    gt, det = generate(out_dir, n_videos)
    size_mb = det.stat().st_size / 2**20
    print(f"data: {n_videos} videos, {det} ({size_mb:.0f} MiB), ready in {time.perf_counter() - t0:.1f} s")
    labelmap = bundled_labelmap_path(AVA_V22_ACTIVITYNET)
    with tempfile.TemporaryDirectory() as tmp:
        ours_json = Path(tmp) / "ours.json"
        cmd = [
            sys.executable,
            "-m",
            "ava_tools.evaluate",
            "-l",
            str(labelmap),
            "-g",
            str(gt),
            "-d",
            str(det),
            "--json",
            str(ours_json),
        ]
        times = []
        for _ in range(args.repeat):
            dt, cpu, rss, _ = _run(cmd)
            times.append(dt)
            print(f"ours: {dt:.2f} s wall, {cpu:.2f} s CPU (user+sys), peak RSS {rss:.0f} MiB")
        ours = json.loads(ours_json.read_text())
    print(f"ours: mAP {ours['PascalBoxes_Precision/mAP@0.5IOU']:.6f}, best of {args.repeat}: {min(times):.2f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (timings need a quiet machine)")
    if args.official:
        official = Path(args.official).resolve()
        dt_off, cpu_off, rss_off, out = _run(
            [sys.executable, "-O", str(official), "-l", str(labelmap), "-g", str(gt), "-d", str(det)],
            cwd=str(official.parent),
        )
        official_metrics = _parse_pprint(out)
        print(f"official: {dt_off:.2f} s wall, {cpu_off:.2f} s CPU, peak RSS {rss_off:.0f} MiB")
        print(f"speed-up: {dt_off / min(times):.1f}x; metrics identical: {_nan_equal(ours, official_metrics)}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 64 videos to generate")
    parser.add_argument("--cache-dir", default=tempfile.gettempdir(), help="where the generated CSVs are cached")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of our evaluator")
    parser.add_argument("--official", help="path to ActivityNet's Evaluation/get_ava_performance.py to compare")
    return parser


if __name__ == "__main__":
    main(get_args_parser().parse_args())
