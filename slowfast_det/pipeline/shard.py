"""Many videos over many processes and machines: ``torchrun ... -m slowfast_det.tools.detect_video``.

Under ``torchrun`` (``WORLD_SIZE`` > 1), :func:`run_sharded` splits the input videos over the ranks:

* **Deterministic assignment** (:func:`assign_shards`): videos are sorted by path, then given out longest
  first, each to the rank with the least total duration so far (the lowest rank on ties): greedy
  longest-processing-time balancing. Durations come from the container headers (nothing is decoded), read once
  by rank 0 and broadcast; a video whose duration is unknown (no header, unreadable) counts as the mean of the
  known ones. The same inputs give the same assignment on every run.
* **Each rank its own device**: ``cuda:LOCAL_RANK`` with GPUs, the CPU otherwise (gloo).
* **No rank loads the videos of another**: a rank decodes only its own shard (rank 0 reads headers only).
* **Resume**: every video goes through :func:`~slowfast_det.pipeline.detector.run_videos`, so a rerun after a
  crash skips the videos whose outputs were finished with the same settings and does only the missing ones.
* **One merged summary**: the ranks' outcomes are gathered (``torch.distributed``), rank 0 prints the summary
  and writes ``OUT/detect_video_summary.json``: done, skipped, failed (with reasons), locked, and per video its
  rank, status and seconds. Every rank exits with the same status (1 when some video failed).

Output names clash (two inputs with the same file name) are resolved as a single process does: the first in
input order keeps the name, the others fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ava_tools import atomic
from ava_tools.cli import version_string
from slowfast_det.engine.distributed import DistContext, all_gather_objects, barrier, broadcast_object
from slowfast_det.pipeline.detector import (
    OutputOptions,
    RunSummary,
    VideoActionDetector,
    output_paths,
    run_videos,
)

__all__ = ["SUMMARY_NAME", "assign_shards", "run_sharded", "video_duration"]

logger = logging.getLogger(__name__)

#: The merged summary rank 0 writes into the output folder.
SUMMARY_NAME = "detect_video_summary.json"


def video_duration(path: str | Path) -> float | None:
    """Seconds of a video from its container header (the video stream's, else the container's); None when the
    file cannot be opened or does not say. Nothing is decoded."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def assign_shards(videos: Sequence[Path], world_size: int, durations: Mapping[Path, float | None]
                  ) -> list[list[Path]]:
    """Split ``videos`` over ``world_size`` ranks: longest first to the least-loaded rank (see the module docstring).

    Returns one list per rank, each in the order its videos were given out (longest first).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    known = [d for d in durations.values() if d is not None and d > 0]
    fallback = sum(known) / len(known) if known else 1.0
    weight = {v: (durations.get(v) or fallback) for v in videos}
    order = sorted(sorted(videos, key=str), key=lambda v: -weight[v])  # stable: ties keep path order
    loads = [0.0] * world_size
    shards: list[list[Path]] = [[] for _ in range(world_size)]
    for video in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        shards[rank].append(video)
        loads[rank] += weight[video]
    return shards


def run_sharded(
    detector: Callable[[], VideoActionDetector],
    videos: Sequence[Path],
    options: OutputOptions,
    *,
    dist: DistContext,
    stride: float | str | Fraction = 1,
    start: float | str | Fraction = 0,
    end: float | str | Fraction | None = None,
    allow_truncated: bool = False,
    progress: bool = True,
    report: bool = False,
    problems: Sequence[tuple[str, str]] = (),
) -> int:
    """This rank's share of ``videos`` (see the module docstring); returns the exit status, the same on every rank.

    Args:
        detector: builds this rank's detector (called only if one of its videos needs work).
        videos: every input video, in input order (the same list on every rank).
        options: the outputs (one folder shared by all ranks, e.g. on a shared file system).
        dist: this process's place in the job.
        problems: ``(input, reason)`` of inputs that name no usable file (reported by rank 0).
    """
    # names that clash: the first in input order keeps its outputs (as run_videos does in one process)
    claimed: dict[Path, Path] = {}
    clashes: list[tuple[str, str]] = []
    unique: list[Path] = []
    for video in videos:
        table = output_paths(video, options, single=len(videos) == 1)["table"]
        if table in claimed:
            clashes.append((str(video), f"its outputs would overwrite those of {claimed[table]} (same file name)"))
        else:
            claimed[table] = video
            unique.append(video)
    plan: list[list[Path]] | None = None
    if dist.is_main:
        options.output_dir.mkdir(parents=True, exist_ok=True)  # before any rank looks at it
        plan = assign_shards(unique, dist.world_size, {v: video_duration(v) for v in unique})
    plan = broadcast_object(plan)
    assert plan is not None
    mine = plan[dist.rank]
    logger.info("rank %d of %d: %d videos", dist.rank, dist.world_size, len(mine))

    built: list[VideoActionDetector] = []

    def get_runner() -> VideoActionDetector:
        if not built:
            built.append(detector())
        return built[0]

    records: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    video_seconds = 0.0
    keyframes, wall_seconds = 0, 0.0
    for video in mine:
        tic = time.perf_counter()
        summary = run_videos(get_runner, [video], options, stride=stride, start=start, end=end,
                             allow_truncated=allow_truncated, progress=progress)
        records.append(_record(video, summary, dist.rank, time.perf_counter() - tic))
        for key, value in summary.timings.items():
            timings[key] = timings.get(key, 0.0) + value
        video_seconds += summary.video_seconds
        keyframes += summary.keyframes
        wall_seconds += summary.wall_seconds
    report_failed = False
    if report:
        from slowfast_det.report import write_detect_video_reports

        finished = [Path(r["video"]) for r in records if r["status"] in ("done", "skipped")]
        lines, report_failed = write_detect_video_reports(finished, options, stride=stride)
        print(*lines, sep="\n")
    gathered = all_gather_objects({"records": records, "timings": timings, "video_seconds": video_seconds,
                                   "keyframes": keyframes, "wall_seconds": wall_seconds,
                                   "report_failed": report_failed})
    status = 0
    if dist.is_main:
        status = _merge(gathered, [*problems, *clashes], options, dist, videos)
    status = int(broadcast_object(status))
    barrier()
    return status


def _record(video: Path, summary: RunSummary, rank: int, seconds: float) -> dict[str, Any]:
    """One video's outcome (picklable, for the gather)."""
    if summary.done:
        status, reason = "done", ""
    elif summary.skipped:
        status, reason = "skipped", ""
    elif summary.locked:
        status, reason = "locked", "locked by another run (it is processing this video now)"
    else:
        status, reason = "failed", "; ".join(r for _, r in summary.failed) or "failed"
    return {"video": str(video), "rank": rank, "status": status, "seconds": round(seconds, 3), "reason": reason,
            "warnings": [m for _, m in summary.warnings]}


def _merge(gathered: list[dict[str, Any]], problems: Sequence[tuple[str, str]], options: OutputOptions,
           dist: DistContext, videos: Sequence[Path]) -> int:
    """Rank 0: print the merged summary and write ``OUT/detect_video_summary.json``; returns the exit status."""
    order = {str(v): i for i, v in enumerate(videos)}
    records = sorted((r for g in gathered for r in g["records"]), key=lambda r: order.get(r["video"], len(order)))
    merged = RunSummary(
        done=[Path(r["video"]) for r in records if r["status"] == "done"],
        skipped=[Path(r["video"]) for r in records if r["status"] == "skipped"],
        locked=[Path(r["video"]) for r in records if r["status"] == "locked"],
        failed=[*problems, *((r["video"], r["reason"]) for r in records if r["status"] == "failed")],
        warnings=[(r["video"], w) for r in records for w in r["warnings"]],
    )
    for g in gathered:
        for key, value in g["timings"].items():
            merged.timings[key] = merged.timings.get(key, 0.0) + value
        merged.video_seconds += g["video_seconds"]
        merged.keyframes += g["keyframes"]
        merged.wall_seconds += g["wall_seconds"]
    for line in merged.lines() + merged.stage_lines():
        print(line)
    per_rank = {r: sum(x["seconds"] for x in records if x["rank"] == r) for r in range(dist.world_size)}
    print(f"{dist.world_size} processes on {dist.num_nodes} node(s); busy seconds per rank: "
          + ", ".join(f"{r}: {s:.1f}" for r, s in per_rank.items()))
    doc = {
        "format": 1,
        "tool": version_string(),
        "world_size": dist.world_size,
        "num_nodes": dist.num_nodes,
        "done": [str(p) for p in merged.done],
        "skipped": [str(p) for p in merged.skipped],
        "locked": [str(p) for p in merged.locked],
        "failed": [{"video": v, "reason": r} for v, r in merged.failed],
        "videos": records,
        "seconds_per_rank": per_rank,
        "timings": {k: round(v, 3) for k, v in merged.timings.items()},
        # stage busy seconds are "timings"; wall seconds are summed over the ranks (each its own videos)
        "keyframes": merged.keyframes,
        "wall_seconds": round(merged.wall_seconds, 3),
    }
    rate = merged.keyframes_per_second()
    doc["keyframes_per_s"] = None if rate is None else round(rate, 3)
    atomic.write_json_atomic(doc, options.output_dir / SUMMARY_NAME, indent=1, allow_nan=False)
    failed = bool(merged.failed) or any(g["report_failed"] for g in gathered)
    return 1 if failed else 0
